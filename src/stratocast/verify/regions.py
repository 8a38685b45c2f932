"""Stations → regions (AR6 land regions, continents, custom polygons) and scores by region.

AR6 regions are the IPCC WGI reference regions v4 (Iturbide et al. 2020, ESSD 12, 2959;
CC BY 4.0). regionmask downloads their shapefile on first use; stratocast ships the same file
(``data/IPCC-WGI-reference-regions-v4.zip``, checked against regionmask's SHA-256) and builds
the :class:`regionmask.Regions` from it, so no network is ever needed. The land set is the one
regionmask calls ``ar6.land`` (Type contains "Land", so Mediterranean, Caribbean and S.E. Asia
are in).

Continents are the AR6 regions' own "Continent" attribute: a station's continent is that of
the AR6 land region(s) it lies in. The Mediterranean region is "EUROPE-AFRICA" and counts for
both; a station outside every AR6 land polygon (open ocean) has no continent.

A station may be in several regions (a continent, an AR6 region, any number of custom
polygons): membership is a table ``station_id, kind, region``, and region scores sum the
per-station accumulators of each region's stations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import geopandas as gp
import numpy as np
import pandas as pd
import regionmask
import xarray as xr
from numpy.typing import ArrayLike

from stratocast.verify.metrics import ScoreAccumulator, mse_skill
from stratocast.verify.metrics_base import safe_ratio

AR6_FILE = Path(__file__).with_name("data") / "IPCC-WGI-reference-regions-v4.zip"
#: The hash regionmask 0.13 pins for the same file.
AR6_SHA256 = "c83881a18e74912385ad578282de721cc8e866b62cbbc75446e52e7041c81cff"
#: AR6 "Continent" attribute → continent name(s) used in scorecards.
CONTINENTS: Mapping[str, tuple[str, ...]] = {
    "AFRICA": ("Africa",),
    "ASIA": ("Asia",),
    "EUROPE": ("Europe",),
    "EUROPE-AFRICA": ("Europe", "Africa"),
    "NORTH-AMERICA": ("North America",),
    "CENTRAL-AMERICA": ("Central America",),
    "SOUTH-AMERICA": ("South America",),
    "OCEANIA": ("Oceania",),
    "POLAR": ("Polar",),
}
MEMBERSHIP_COLUMNS = ("station_id", "kind", "region")


class RegionError(ValueError):
    """A region definition or a station table that cannot be used, with what and where."""


def _ar6_frame(path: Path) -> gp.GeoDataFrame:
    if not path.is_file():
        raise RegionError(f"AR6 region file {path} is missing")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != AR6_SHA256:
        raise RegionError(f"AR6 region file {path}: SHA-256 {digest} is not {AR6_SHA256}")
    frame = gp.read_file(f"zip://{path}")
    missing = {"Continent", "Type", "Name", "Acronym"} - set(frame.columns)
    if missing:
        raise RegionError(f"AR6 region file {path} lacks columns {sorted(missing)}")
    return frame[frame["Type"].str.contains("Land")].reset_index(drop=True)


@cache
def _ar6_cached(path: Path) -> tuple[regionmask.Regions, dict[str, str]]:
    frame = _ar6_frame(path)
    regions = regionmask.from_geopandas(
        frame,
        names="Name",
        abbrevs="Acronym",
        name="AR6 reference regions (land)",
        source="Iturbide et al., 2020 (ESSD)",
        overlap=False,
    )
    return regions, dict(zip(frame["Acronym"], frame["Continent"], strict=True))


def ar6_land_regions(path: Path = AR6_FILE) -> regionmask.Regions:
    """The 46 AR6 land regions (abbrevs such as ``WCE``, ``EAU``), read offline."""
    return _ar6_cached(path)[0]


def ar6_continents(path: Path = AR6_FILE) -> dict[str, tuple[str, ...]]:
    """AR6 land region abbreviation → continent name(s)."""
    return {abbrev: CONTINENTS[c] for abbrev, c in _ar6_cached(path)[1].items()}


def custom_regions(polygons: Mapping[str, Sequence[Sequence[float]]]) -> regionmask.Regions:
    """Regions from ``name → [(lon, lat), ...]`` vertex lists (degrees; may overlap).

    The polygon closes itself (the last vertex need not repeat the first).
    """
    outlines = []
    for name, vertices in polygons.items():
        outlines.append(_outline(name, vertices))
    if not outlines:
        raise RegionError("custom regions: no polygons given")
    names = list(polygons)
    return regionmask.Regions(
        outlines, names=names, abbrevs=names, name="custom regions", overlap=True
    )


def _outline(name: str, vertices: Sequence[Sequence[float]]) -> np.ndarray:
    try:
        pts = np.asarray(vertices, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RegionError(f"custom region {name!r}: vertices are not numbers: {exc}") from exc
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 3:
        raise RegionError(f"custom region {name!r}: need ≥ 3 (lon, lat) pairs, got {pts.shape}")
    if not np.all(np.isfinite(pts)) or np.any(np.abs(pts[:, 1]) > 90):
        raise RegionError(f"custom region {name!r}: vertices must be finite, |lat| <= 90")
    return pts


def _members(
    regions: regionmask.Regions, kind: str, ids: np.ndarray, lon: np.ndarray, lat: np.ndarray
) -> pd.DataFrame:
    lon_da = xr.DataArray(lon, dims="station")
    lat_da = xr.DataArray(lat, dims="station")
    mask = regions.mask_3D(lon_da, lat_da, drop=True)
    region_idx, station_idx = np.nonzero(mask.values)
    return pd.DataFrame(
        {
            "station_id": ids[station_idx],
            "kind": kind,
            "region": mask["abbrevs"].values[region_idx].astype(str),
        }
    )


def station_regions(
    station_ids: ArrayLike,
    lon: ArrayLike,
    lat: ArrayLike,
    *,
    ar6: bool = True,
    continents: bool = True,
    custom: Mapping[str, Sequence[Sequence[float]]] | None = None,
    ar6_path: Path = AR6_FILE,
) -> pd.DataFrame:
    """Membership table ``station_id, kind, region``: one row per (station, region).

    ``kind`` is ``ar6``, ``continent`` or ``custom``. Longitudes may be -180..180 or 0..360.
    """
    ids = np.asarray(station_ids).astype(str)
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    if not (ids.shape == x.shape == y.shape) or ids.ndim != 1:
        raise RegionError(f"station ids {ids.shape}, lon {x.shape}, lat {y.shape} must be 1-D")
    bad = ~np.isfinite(x) | ~np.isfinite(y) | (np.abs(y) > 90)
    if bad.any():
        raise RegionError(f"stations with invalid coordinates: {ids[bad][:10].tolist()}")
    x = (x + 180.0) % 360.0 - 180.0  # the AR6 polygons are in -180..180
    frames = []
    if ar6 or continents:
        in_ar6 = _members(ar6_land_regions(ar6_path), "ar6", ids, x, y)
        if ar6:
            frames.append(in_ar6)
        if continents:
            frames.append(_continent_rows(in_ar6, ar6_continents(ar6_path)))
    if custom:
        frames.append(_members(custom_regions(custom), "custom", ids, x, y))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(MEMBERSHIP_COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    return table.drop_duplicates().reset_index(drop=True)


def _continent_rows(
    in_ar6: pd.DataFrame, continent_of: Mapping[str, tuple[str, ...]]
) -> pd.DataFrame:
    rows = [
        (sid, "continent", name)
        for sid, abbrev in zip(in_ar6["station_id"], in_ar6["region"], strict=True)
        for name in continent_of[abbrev]
    ]
    return pd.DataFrame(rows, columns=list(MEMBERSHIP_COLUMNS))


def region_scores(acc: ScoreAccumulator, membership: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Scores by region: each region's stations' sums added, then RMSE, MAE, bias, skill.

    One row per (kind, region, system, variable, lead_hours), on the same common mask as the
    scorecard (the accumulator's per-station sums already are).
    """
    if reference not in acc.systems:
        raise ValueError(f"skill reference {reference!r} is not one of {acc.systems}")
    missing = set(MEMBERSHIP_COLUMNS) - set(membership.columns)
    if missing:
        raise RegionError(f"membership table lacks columns {sorted(missing)}")
    index = {sid: i for i, sid in enumerate(acc.station_ids.astype(str))}
    ref = acc.systems.index(reference)
    frames = []
    for (kind, region), rows in membership.groupby(["kind", "region"], sort=True):
        cols = np.array([index[s] for s in rows["station_id"].astype(str) if s in index])
        if cols.size == 0:
            continue
        for variable in acc.variables:
            frames.append(_region_rows(acc, variable, cols, ref, str(kind), str(region)))
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).assign(reference=reference)


def _region_rows(
    acc: ScoreAccumulator, variable: str, cols: np.ndarray, ref: int, kind: str, region: str
) -> pd.DataFrame:
    sums = acc.sums[variable]
    n = sums.n[:, cols].sum(axis=1)  # [lead]
    mse = safe_ratio(sums.sum_sq[:, :, cols].sum(axis=2), n[None, :])  # [system, lead]
    mae = safe_ratio(sums.sum_abs[:, :, cols].sum(axis=2), n[None, :])
    bias = safe_ratio(sums.sum_err[:, :, cols].sum(axis=2), n[None, :])
    n_sys, n_lead = mse.shape
    return pd.DataFrame(
        {
            "kind": kind,
            "region": region,
            "system": np.repeat(acc.systems, n_lead),
            "variable": variable,
            "lead_hours": np.tile(acc.lead_hours, n_sys),
            "n": np.tile(n, n_sys),
            "n_stations": np.tile((sums.n[:, cols] > 0).sum(axis=1), n_sys),
            "rmse": np.sqrt(mse).ravel(),
            "mae": mae.ravel(),
            "bias": bias.ravel(),
            "mse_skill": mse_skill(mse, mse[ref][None, :]).ravel(),
        }
    )
