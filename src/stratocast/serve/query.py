"""Position / area / cube extraction from one opened run.

A position is interpolated by the points writer's own code
(:func:`stratocast.infer.writers.points_writer.interpolate`: bilinear, t2m moved from the
model orography to ``height`` by the verification stage's lapse-rate code), so an API answer
equals the exported point series. Ensembles are reduced over ``member`` on request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from stratocast.infer.writers.points_writer import DEFAULT_LAPSE_RATE, interpolate
from stratocast.serve.catalog import BadRequest, NotFound, TooLarge, leads, variables
from stratocast.verify.matching import Stations

STATISTICS = ("mean", "spread", "quantile", "exceedance")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_POINT = re.compile(rf"^\s*POINT\s*\(\s*({_NUM})\s+({_NUM})\s*\)\s*$", re.I)
_POLY = re.compile(r"^\s*POLYGON\s*\(\s*\((.*)\)\s*\)\s*$", re.I)


@dataclass(frozen=True)
class Selection:
    names: list[str]
    leads: list[int]
    statistic: str | None = None
    q: float | None = None
    threshold: float | None = None


def parse_point(coords: str) -> tuple[float, float]:
    m = _POINT.match(coords or "")
    if m is None:
        raise BadRequest(f"coords {coords!r} is not WKT POINT(lon lat)")
    lon, lat = float(m.group(1)), float(m.group(2))
    check_lonlat(lon, lat)
    return lon, lat


def check_lonlat(lon: float, lat: float) -> None:
    if not (np.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise BadRequest(f"latitude {lat} is outside [-90, 90]")
    if not (np.isfinite(lon) and -180.0 <= lon <= 360.0):
        raise BadRequest(f"longitude {lon} is outside [-180, 360]")


def parse_polygon(coords: str) -> np.ndarray:
    """WKT POLYGON((lon lat, ...)) as an (n, 2) array; one outer ring, closed or not."""
    m = _POLY.match(coords or "")
    if m is None:
        raise BadRequest(f"coords {coords[:80]!r} is not WKT POLYGON((lon lat, ...))")
    pts = []
    for pair in m.group(1).split(","):
        parts = pair.split()
        if len(parts) != 2 or not all(re.fullmatch(_NUM, p) for p in parts):
            raise BadRequest(f"polygon vertex {pair.strip()!r} is not 'lon lat'")
        lon, lat = float(parts[0]), float(parts[1])
        check_lonlat(lon, lat)
        pts.append((lon, lat))
    if len(pts) < 3:
        raise BadRequest("a polygon needs at least 3 vertices")
    return np.asarray(pts)


def parse_bbox(bbox: str) -> tuple[float, float, float, float]:
    parts = (bbox or "").split(",")
    try:
        w, s, e, n = (float(p) for p in parts)
    except ValueError:
        raise BadRequest(f"bbox {bbox!r} is not 'west,south,east,north'") from None
    check_lonlat(w, s)
    check_lonlat(e, n)
    if w > e or s > n:
        raise BadRequest(f"bbox {bbox!r}: west > east or south > north")
    return w, s, e, n


def select(
    ds: xr.Dataset,
    names: str | None,
    lead: str | None,
    statistic: str | None = None,
    q: float | None = None,
    threshold: float | None = None,
) -> Selection:
    have = variables(ds)
    want = have if not names else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in want if n not in have]
    if unknown or not want:
        raise NotFound(f"unknown parameter(s) {unknown}; this run has {have}")
    all_leads = leads(ds)
    if lead:
        try:
            got = [int(x) for x in lead.split(",")]
        except ValueError:
            raise BadRequest(f"leads {lead!r} is not a list of whole hours") from None
        missing = [x for x in got if x not in all_leads]
        if missing:
            raise NotFound(f"lead(s) {missing} h not in this run; it has {all_leads}")
    else:
        got = all_leads
    if statistic is not None:
        if statistic not in STATISTICS:
            raise BadRequest(f"statistic {statistic!r} is not one of {list(STATISTICS)}")
        if "member" not in ds.dims:
            raise BadRequest(f"statistic {statistic!r} needs an ensemble product")
        if statistic == "quantile" and (q is None or not 0.0 <= q <= 1.0):
            raise BadRequest("statistic=quantile needs q in [0, 1]")
        if statistic == "exceedance" and (threshold is None or not np.isfinite(threshold)):
            raise BadRequest("statistic=exceedance needs a finite threshold")
    return Selection(want, got, statistic, q, threshold)


def reduce(cube: np.ndarray, sel: Selection, member_axis: int | None) -> np.ndarray:
    """Apply the ensemble statistic over ``member_axis`` (none asked: the cube as is)."""
    if sel.statistic is None or member_axis is None:
        return cube
    if sel.statistic == "mean":
        return np.mean(cube, axis=member_axis)
    if sel.statistic == "spread":
        return np.std(cube, axis=member_axis, ddof=1) if cube.shape[member_axis] > 1 else cube
    if sel.statistic == "quantile":
        return np.quantile(cube, float(sel.q or 0.0), axis=member_axis)
    return np.mean(cube > float(sel.threshold or 0.0), axis=member_axis)


def position(
    ds: xr.Dataset, lon: float, lat: float, height: float | None, sel: Selection
) -> dict[str, np.ndarray]:
    """Each selected variable at the point: (lead,) or (member, lead) arrays."""
    sub = ds[[*sel.names, *(["orography"] if "orography" in ds else [])]]
    sub = sub.sel(lead_time=sel.leads)
    site = Stations(
        np.asarray(["q"]),
        np.asarray([lat]),
        np.asarray([lon % 360.0 if float(ds["lon"].max()) > 180.0 else lon]),
        np.asarray([np.nan if height is None else float(height)]),
    )
    lapse = DEFAULT_LAPSE_RATE if height is not None else 0.0
    vals = interpolate(sub, site, lapse, Path("query"))
    out = {}
    for name in sel.names:
        v = vals[name][0, ..., 0]  # (member, lead) or (lead,)
        if "member" not in ds.dims:
            v = v.reshape(-1, v.shape[-1])[0]
        if not np.isfinite(v).any() and np.isnan(v).all():
            raise BadRequest(f"point ({lon}, {lat}) is outside the product's domain")
        out[name] = reduce(v, sel, 0 if "member" in ds.dims else None)
    return out


def area(
    ds: xr.Dataset,
    sel: Selection,
    max_cells: int,
    bbox: tuple[float, float, float, float] | None = None,
    polygon: np.ndarray | None = None,
) -> xr.Dataset:
    """The grid cells inside a bbox or polygon (cells outside a polygon: NaN)."""
    if polygon is not None:
        w, s = polygon.min(axis=0)
        e, n = polygon.max(axis=0)
    elif bbox is not None:
        w, s, e, n = bbox
    else:
        raise BadRequest("an area needs coords=POLYGON((...)) or bbox=w,s,e,n")
    lat = np.asarray(ds["lat"].values)
    lon = np.asarray(ds["lon"].values)
    wrap = float(lon.max()) > 180.0
    lon_q = (lon + 180.0) % 360.0 - 180.0 if wrap and w < 0 else lon
    ilat = np.nonzero((lat >= s) & (lat <= n))[0]
    ilon = np.nonzero((lon_q >= w) & (lon_q <= e))[0]
    if ilat.size == 0 or ilon.size == 0:
        raise BadRequest(f"no grid cell in the area [{w}, {s}, {e}, {n}]")
    members = ds.sizes.get("member", 1) if sel.statistic is None else 1
    cells = ilat.size * ilon.size * len(sel.leads) * len(sel.names) * members
    if cells > max_cells:
        raise TooLarge(
            f"the area holds {cells} values (cells x leads x parameters x members), over the "
            f"limit of {max_cells}: ask for a smaller area, fewer leads or parameters"
        )
    sub = ds[sel.names].isel(lat=ilat, lon=ilon).sel(lead_time=sel.leads)
    if polygon is not None:
        from matplotlib.path import Path as MplPath

        glon, glat = np.meshgrid(lon_q[ilon], lat[ilat])
        inside = MplPath(polygon).contains_points(np.c_[glon.ravel(), glat.ravel()])
        mask = xr.DataArray(inside.reshape(glon.shape), dims=("lat", "lon"))
        sub = sub.where(mask)
    if sel.statistic is not None and "member" in sub.dims:
        out = xr.Dataset(coords={k: v for k, v in sub.coords.items() if k != "member"})
        for name in sel.names:
            da = sub[name]
            ax = da.dims.index("member")
            vals = reduce(np.asarray(da.values, dtype=np.float64), sel, ax)
            dims = tuple(d for d in da.dims if d != "member")
            out[name] = xr.DataArray(vals, dims=dims, attrs=da.attrs)
        sub = out
    return sub
