"""Spatial buddy check: a value far from what its neighbours say at the same time is suspect.

For each time step (times rounded to ``time_bin``, so METARs at :50 and :56 meet SYNOPs at :00)
and each checked variable, every station is compared with its *buddies*: other stations within
``radius_km``. Temperatures are first reduced to sea level with ``lapse_rate`` (6.5 K/km) using
station elevation, so a mountain station is not flagged for being cold. The buddy estimate is
the median of the buddies and the spread 1.4826 x their median absolute deviation (the normal-
consistent MAD): both robust, so one gross error among the buddies neither drags the estimate
nor inflates the spread, and its neighbours are not flagged in its stead; this is why one pass
suffices where mean/std checks (titanlib) iterate. A value is flagged when

    |value - median| > threshold * max(spread, std_floor[variable])

and at least ``min_buddies`` buddies exist; a station with fewer is not judged (no evidence).
The floor keeps a very uniform neighbourhood from flagging ordinary noise.

Neighbours come from a KD-tree on unit vectors (chord distance <-> great-circle distance is
monotonic, so a ball query is exact on the sphere, with no trouble at the dateline or poles).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.spatial import cKDTree

from stratocast.config import ComponentConfig

EARTH_RADIUS_KM = 6371.0
_MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation


class BuddyConfig(ComponentConfig):
    variables: list[str] = Field(default_factory=lambda: ["t2m", "msl"])
    radius_km: float = Field(default=200.0, gt=0.0)
    min_buddies: int = Field(default=5, ge=1)
    threshold: float = Field(default=4.0, gt=0.0, description="multiples of the buddy spread")
    std_floor: dict[str, float] = Field(
        default_factory=lambda: {"t2m": 1.5, "msl": 150.0},
        description="smallest spread used, in the variable's units (K, Pa)",
    )
    lapse_rate: float = Field(default=0.0065, description="K/m, for reducing t2m to sea level")
    time_bin: str = Field(default="1h", description="pandas frequency times are rounded to")


def unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _pairs(lat: np.ndarray, lon: np.ndarray, radius_km: float) -> tuple[np.ndarray, np.ndarray]:
    """Both directions of every station pair closer than ``radius_km`` (great circle)."""
    chord = 2.0 * np.sin(min(radius_km / EARTH_RADIUS_KM, np.pi) / 2.0)
    pairs = cKDTree(unit_vectors(lat, lon)).query_pairs(chord, output_type="ndarray")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return i, j


def _judge(g: pd.DataFrame, variable: str, cfg: BuddyConfig) -> pd.Series:
    """Reasons for the flagged rows of one (time, variable) group."""
    v = g["_v"].to_numpy()
    i, j = _pairs(g["lat"].to_numpy(), g["lon"].to_numpy(), cfg.radius_km)
    station = g["station_id"].to_numpy()
    other = station[i] != station[j]  # a station's second report is not its own buddy
    i, j = i[other], j[other]
    if len(i) == 0:
        return pd.Series(dtype=object)
    grouped = pd.Series(v[j]).groupby(i)
    n = grouped.size()
    centre = grouped.median()
    spread = pd.Series(np.abs(v[j] - centre.reindex(i).to_numpy())).groupby(i).median()
    spread *= _MAD_TO_STD
    idx = n.index.to_numpy()
    floor = cfg.std_floor.get(variable, 0.0)
    limit = cfg.threshold * np.maximum(spread.to_numpy(), floor)
    diff = v[idx] - centre.to_numpy()
    bad = (n.to_numpy() >= cfg.min_buddies) & (np.abs(diff) > limit)
    if not bad.any():
        return pd.Series(dtype=object)
    rows = g.iloc[idx[bad]]
    what = "sea-level-reduced " if variable == "t2m" else ""
    reasons = [
        f"{variable} {val:.6g} ({what}{x:.6g}) differs by {d:+.4g} from the median {c:.6g} "
        f"of {k} buddies within {cfg.radius_km:g} km (threshold {lim:.4g} = "
        f"{cfg.threshold:g} x max(spread {s:.3g}, floor {floor:g}))"
        for val, x, d, c, k, lim, s in zip(
            rows["value"],
            v[idx[bad]],
            diff[bad],
            centre.to_numpy()[bad],
            n.to_numpy()[bad],
            limit[bad],
            spread.to_numpy()[bad],
            strict=True,
        )
    ]
    return pd.Series(reasons, index=rows.index, dtype=object)


def buddy_check(df: pd.DataFrame, cfg: BuddyConfig) -> pd.Series:
    """Reason text for every row of ``df`` that fails the buddy check, indexed like ``df``.

    Only rows still unflagged (``check`` null, when the column exists), of a checked variable
    and with finite position and value take part, as judged rows and as buddies; t2m also
    needs an elevation.
    """
    live = df["variable"].isin(cfg.variables) & np.isfinite(df["value"])
    live &= np.isfinite(df["lat"]) & np.isfinite(df["lon"])
    if "check" in df:
        live &= df["check"].isna()
    live &= (df["variable"] != "t2m") | np.isfinite(df["elevation"])
    rows = df.loc[live, ["station_id", "lat", "lon", "elevation", "time", "variable", "value"]]
    if rows.empty:
        return pd.Series(dtype=object)
    reduce = np.where(rows["variable"] == "t2m", cfg.lapse_rate * rows["elevation"], 0.0)
    rows = rows.assign(_v=rows["value"] + reduce, _t=rows["time"].dt.round(cfg.time_bin))
    found = [
        _judge(g, str(var), cfg)
        for (_, var), g in rows.groupby(["_t", "variable"], sort=False)
        if len(g) > cfg.min_buddies  # fewer rows: nobody can have enough buddies
    ]
    found = [f for f in found if len(f)]
    return pd.concat(found) if found else pd.Series(dtype=object)
