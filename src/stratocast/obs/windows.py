"""Temporal alignment: observations -> windows that end at analysis times, with explicit bounds.

An analysis at time ``t`` sees the observations of a window of width ``w`` ending at ``t``:

* ``closed="right"`` (the default): ``(t - w, t]``. An observation exactly at ``t`` belongs to
  the analysis at ``t``; one exactly at ``t - w`` belongs to the *earlier* window. This is the
  convention of synoptic practice (the 12 UTC analysis takes the 12:00 report) and of the
  shard builder's ``_obs_windows``.
* ``closed="left"``: ``[t - w, t)``, for a strict cut-off (nothing at ``t`` itself).

The bounds are written into the output (``window_start``, ``window_end``, ``closed``), so a
consumer never has to know the convention to interpret a row. Windows may overlap (analysis
times closer together than ``w``); an observation then appears once per window containing it.

Selection per (window, station, variable):

* ``"all"``: every observation in the window;
* ``"latest"``: the one with the latest time (ties: the later row of the input, e.g. a
  correction read after the original);
* ``"nearest"``: the one nearest to ``t`` (ties: the later time, then the later row). With
  windows that end at ``t`` this is the latest one; it differs for windows shifted past ``t``
  with ``offset`` (``(t + offset - w, t + offset]``, e.g. centred on ``t``).

Observations outside every window, and rows with a missing time, are simply not selected.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from stratocast.errors import StratocastError

Closed = Literal["right", "left"]
Select = Literal["all", "latest", "nearest"]

DEFAULT_WIDTH = pd.Timedelta(hours=3)
_NO_OFFSET = pd.Timedelta(0)
WINDOW_COLUMNS = ("window_start", "window_end", "closed")
_REQUIRED = ("station_id", "time", "variable")
_CLOSED = ("right", "left")
_SELECT = ("all", "latest", "nearest")


class WindowError(StratocastError, ValueError):
    """Bad arguments to :func:`assign_windows` (naive times, unknown closed side, ...)."""


def _utc_times(values: Iterable[datetime | pd.Timestamp | str] | pd.DatetimeIndex) -> pd.Series:
    idx = pd.DatetimeIndex(list(values) if not isinstance(values, pd.DatetimeIndex) else values)
    if idx.tz is None:
        raise WindowError("analysis times must be timezone-aware (UTC); got naive times")
    if idx.hasnans:
        raise WindowError("analysis times contain a missing value (NaT)")
    return pd.Series(idx.tz_convert("UTC").unique().sort_values())


def _naive_ns(times: pd.Series) -> np.ndarray:
    """UTC instants as naive datetime64[ns] (a tz-aware Series would give Timestamp objects)."""
    return times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")


def _check(obs: pd.DataFrame, closed: str, select: str, width: pd.Timedelta) -> None:
    missing = [c for c in _REQUIRED if c not in obs.columns]
    if missing:
        raise WindowError(f"observations lack column(s) {missing}; need {list(_REQUIRED)}")
    clash = [c for c in WINDOW_COLUMNS if c in obs.columns]
    if clash:
        raise WindowError(f"observations already have window column(s) {clash}")
    if closed not in _CLOSED:
        raise WindowError(f"closed must be one of {_CLOSED}, not {closed!r}")
    if select not in _SELECT:
        raise WindowError(f"select must be one of {_SELECT}, not {select!r}")
    if not width > pd.Timedelta(0):
        raise WindowError(f"window width must be positive, not {width}")
    if not isinstance(obs["time"].dtype, pd.DatetimeTZDtype):
        raise WindowError(
            f"observation column 'time' must be timezone-aware UTC; its dtype is "
            f"{obs['time'].dtype}"
        )


def assign_windows(
    obs: pd.DataFrame,
    analysis_times: Iterable[datetime | pd.Timestamp | str] | pd.DatetimeIndex,
    width: timedelta | pd.Timedelta | str = DEFAULT_WIDTH,
    closed: Closed = "right",
    select: Select = "all",
    offset: timedelta | pd.Timedelta | str = _NO_OFFSET,
) -> pd.DataFrame:
    """The observations of each window, one row per (window, observation), bounds included.

    ``obs`` is the store's long format (station_id, time as tz-aware UTC, variable, value, any
    other columns, all kept). The window of analysis time ``t`` is ``(t + offset - width,
    t + offset]`` for ``closed="right"``, ``[t + offset - width, t + offset)`` for ``"left"``;
    ``offset`` is 0 (windows end at ``t``) unless a caller wants, e.g., windows centred on ``t``
    (``offset = width / 2``). Added columns: ``analysis_time`` (``t``), ``window_start``,
    ``window_end`` (UTC) and ``closed``. Rows are ordered by analysis time, station, variable
    and time.
    """
    w, off = pd.Timedelta(width), pd.Timedelta(offset)
    _check(obs, closed, select, w)
    ts = _utc_times(analysis_times)
    ends = ts + off
    starts = ends - w

    t_ns = _naive_ns(obs["time"])
    valid = ~np.isnat(t_ns)
    # stable sort by time: ties keep input order, which "latest" relies on
    order = np.flatnonzero(valid)[np.argsort(t_ns[valid], kind="stable")]
    sorted_t = t_ns[order]
    # (start, end]: skip times <= start, keep times <= end; [start, end): the reverse
    side: Literal["left", "right"] = "right" if closed == "right" else "left"
    lo = np.searchsorted(sorted_t, _naive_ns(starts), side=side)
    hi = np.searchsorted(sorted_t, _naive_ns(ends), side=side)
    counts = np.maximum(hi - lo, 0)
    win = np.repeat(np.arange(len(ts)), counts)
    # positions lo[k] .. hi[k]-1 of every window k, in one vectorised expression
    pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + lo[win]
    rows = order[pos]

    out = obs.iloc[rows].reset_index(drop=True)
    out["analysis_time"] = ts.to_numpy()[win]
    out["window_start"] = starts.to_numpy()[win]
    out["window_end"] = ends.to_numpy()[win]
    out["closed"] = closed
    for col in ("analysis_time", "window_start", "window_end"):
        out[col] = pd.to_datetime(out[col], utc=True)
    out["_row"] = rows  # input order, for tie-breaking
    if select != "all":
        out = _select(out, select)
    out = out.sort_values(
        ["analysis_time", "station_id", "variable", "time", "_row"], kind="stable"
    )
    return out.drop(columns="_row").reset_index(drop=True)


def _select(df: pd.DataFrame, select: str) -> pd.DataFrame:
    """One row per (window, station, variable): the latest, or the one nearest to ``t``."""
    keys = ["analysis_time", "station_id", "variable"]
    if select == "latest":
        ranked = df.sort_values(["time", "_row"], kind="stable")
    else:
        # the last row after sorting by (-distance, time, row) is the nearest, later on ties
        dist = (df["time"] - df["analysis_time"]).abs()
        ranked = df.assign(_d=-dist).sort_values(["_d", "time", "_row"], kind="stable")
        ranked = ranked.drop(columns="_d")
    return ranked.drop_duplicates(keys, keep="last")
