"""Observations (long format) to padded dense windows: one code path for shards and cycles.

The training shards and an operational cycle must give the model the same numbers for the same
observations, so both build their windows here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def obs_windows(
    obs: pd.DataFrame,
    station_ids: Sequence[str],
    variables: Sequence[str],
    first: np.datetime64,
    step_hours: int,
    n: int,
) -> np.ndarray:
    """(n, S, V) float32, NaN where nothing was reported: window i (analysis time
    ``first + i * step``) holds the latest report per station and variable in
    (t_i - step, t_i]."""
    dense = np.full((n, len(station_ids), len(variables)), np.nan, dtype=np.float32)
    if n == 0 or obs.empty:
        return dense
    start = np.asarray(first).astype("datetime64[ns]")
    step = np.timedelta64(step_hours, "h")
    t = obs["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    # Window i holds (t_i - step, t_i]: ceil of the offset in steps.
    win = np.ceil((t - start) / step).astype(np.int64)
    slot_of = {s: i for i, s in enumerate(station_ids)}
    var_of = {v: i for i, v in enumerate(variables)}
    slot = obs["station_id"].map(slot_of)
    var = obs["variable"].map(var_of)
    keep = (win >= 0) & (win < n) & slot.notna().to_numpy() & var.notna().to_numpy()
    sel = pd.DataFrame(
        {
            "w": win[keep],
            "s": slot[keep].astype(np.int64),
            "v": var[keep].astype(np.int64),
            "t": t[keep],
            "x": obs["value"].to_numpy()[keep],
        }
    )
    # Several reports in one window: the latest one is closest to the analysis time. Ties in
    # time are broken by value, so the choice never depends on the order rows were read in
    # (a cycle reads a few hours of the store, a shard build all of it).
    sel = sel.sort_values(["t", "x"], kind="stable").drop_duplicates(["w", "s", "v"], keep="last")
    dense[sel["w"].to_numpy(), sel["s"].to_numpy(), sel["v"].to_numpy()] = sel["x"].to_numpy()
    return dense
