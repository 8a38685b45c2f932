"""Which stations feed the model and which are kept back to verify it.

The station list comes from the observation store itself (every station with a report of an
input variable in the shards' period), never from a side file of the built-in world. Each gets
one role, written to ``<shards>/stations.csv`` so verification scores exactly the stations the
model never saw:

* ``outside``: its position lies outside the target grid's domain (left out, counted);
* ``verify``: held out — by a given list, or by rule (``fraction`` of the in-domain stations,
  spread over the domain: stations are ordered along a Hilbert curve over the domain and every
  k-th is taken from a seeded offset, so the held-out set covers the domain evenly instead of
  clustering where stations are dense);
* ``input``: the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stratocast.config import ComponentConfig
from stratocast.shards.layout import ShardError

STATIONS_CSV = "stations.csv"
ROLES = ("input", "verify", "outside")
_HILBERT_ORDER = 16  # 65536 cells a side: finer than any two stations' separation matters


class HeldOutConfig(ComponentConfig):
    """Held-out verification stations: a ``fraction`` chosen by rule, or a list of ids."""

    fraction: float = Field(default=0.15, ge=0.0, lt=1.0)
    seed: int = 0
    stations: list[str] | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _one(self) -> HeldOutConfig:
        if self.stations is not None and "fraction" in self.model_fields_set:
            raise ValueError("give held_out.stations or held_out.fraction, not both")
        return self


def _hilbert(x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    """Hilbert-curve index of integer cells (x, y) in [0, 2**order): near cells, near index."""
    x, y = x.astype(np.int64).copy(), y.astype(np.int64).copy()
    d = np.zeros_like(x)
    last = (1 << order) - 1
    s = 1 << (order - 1)
    while s > 0:
        rx = ((x & s) > 0).astype(np.int64)
        ry = ((y & s) > 0).astype(np.int64)
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so the curve stays continuous
        flip = ry == 0
        swap_x = np.where(flip & (rx == 1), last - x, x)
        swap_y = np.where(flip & (rx == 1), last - y, y)
        x = np.where(flip, swap_y, swap_x)
        y = np.where(flip, swap_x, swap_y)
        s >>= 1
    return d


def spread_sample(lat: np.ndarray, lon: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of ``round(fraction × n)`` points spread evenly over their extent."""
    n = lat.size
    k = round(fraction * n)
    if k == 0 or n == 0:
        return np.zeros(n, dtype=bool)
    cells = (1 << _HILBERT_ORDER) - 1

    def scaled(v: np.ndarray) -> np.ndarray:
        span = float(v.max() - v.min())
        return np.zeros(v.size) if span == 0.0 else (v - v.min()) / span * cells

    order = np.argsort(_hilbert(scaled(lon), scaled(lat), _HILBERT_ORDER), kind="stable")
    # k evenly spaced positions along the curve from a seeded phase in [0, n/k).
    phase = np.random.default_rng(seed).uniform(0.0, n / k)
    picks = np.minimum((phase + np.arange(k) * (n / k)).astype(np.int64), n - 1)
    mask = np.zeros(n, dtype=bool)
    mask[order[picks]] = True
    return mask


def assign_roles(
    stations: pd.DataFrame,
    inside: np.ndarray,
    held_out: HeldOutConfig | None,
    given_verify: set[str] | None,
) -> pd.DataFrame:
    """``stations`` (station_id, lat, lon, elevation) with a ``role`` column.

    ``held_out`` (the run's rule) wins; without one, ``given_verify`` (the world's own
    held-out list) is used; without either, the default rule."""
    out = stations.reset_index(drop=True).copy()
    role = np.where(inside, "input", "outside").astype(object)
    ids = out["station_id"].astype(str).to_numpy()
    if held_out is not None and held_out.stations is not None:
        unknown = sorted(set(held_out.stations) - set(ids))
        if unknown:
            raise ShardError(
                f"shards.held_out.stations: {len(unknown)} station(s) have no observations in "
                f"the store for this period: {unknown[:10]}"
            )
        verify = np.isin(ids, held_out.stations)
    elif held_out is None and given_verify is not None:
        verify = np.isin(ids, sorted(given_verify))
    else:
        rule = held_out or HeldOutConfig()
        verify = np.zeros(len(out), dtype=bool)
        idx = np.nonzero(inside)[0]
        lat = out["lat"].to_numpy(dtype=float)[idx]
        lon = out["lon"].to_numpy(dtype=float)[idx]
        verify[idx] = spread_sample(lat, lon, rule.fraction, rule.seed)
    role[verify & inside] = "verify"
    out["role"] = role
    return out


def write_roles(roles: pd.DataFrame, root: Path) -> Path:
    path = root / STATIONS_CSV
    tmp = path.with_suffix(".csv.tmp")
    roles.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def station_table(obs: pd.DataFrame) -> pd.DataFrame:
    """One row per station of ``obs``: its id, last reported position and report count.

    The newest position wins: a station that moved reports from where it is now."""
    ordered = obs.sort_values("time", kind="stable")
    last = ordered.drop_duplicates("station_id", keep="last")
    table = last[["station_id", "lat", "lon", "elevation"]].copy()
    table["station_id"] = table["station_id"].astype(str)
    counts = obs["station_id"].astype(str).value_counts()
    table["n_obs"] = table["station_id"].map(counts).astype(np.int64)
    return table.sort_values("station_id").reset_index(drop=True)


def in_domain(table: pd.DataFrame, grid_lat: np.ndarray, grid_lon: np.ndarray) -> np.ndarray:
    """Stations the grid covers, by the rule the observation operator and verification use
    (:func:`stratocast.grid.interp.bilinear_weights`: periodic global grids, clamped polar
    caps, NaN outside a regional box)."""
    from stratocast.grid.interp import bilinear_weights

    w = bilinear_weights(
        grid_lat, grid_lon, table["lat"].to_numpy(float), table["lon"].to_numpy(float)
    )
    return np.asarray(w.inside, dtype=bool)


def split_observations(
    obs: pd.DataFrame,
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    held_out: HeldOutConfig | None,
    given_verify: set[str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the model's input observations, every station with its role)."""
    table = station_table(obs)
    lat = np.asarray(grid_lat, dtype=np.float64)
    lon = np.asarray(grid_lon, dtype=np.float64)
    if lat[0] > lat[-1]:  # the interpolation contract is ascending; a descending grid is fine
        lat = lat[::-1]
    roles = assign_roles(table, in_domain(table, lat, lon), held_out, given_verify)
    inputs = set(roles.loc[roles["role"] == "input", "station_id"])
    return obs[obs["station_id"].astype(str).isin(inputs)], roles
