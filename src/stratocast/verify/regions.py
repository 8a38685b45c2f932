"""Stations → regions (AR6 land regions, continents, custom polygons) and scores by region.

AR6 regions are the IPCC WGI reference regions v4 (Iturbide et al. 2020, ESSD 12, 2959;
CC BY 4.0). stratocast does not ship their shapefile (data we did not write stays out of the
repository); :func:`resolve_ar6_file` finds it, local copies before any network:

1. an explicit path (config ``ar6_regions_path``) or ``$STRATOCAST_AR6_REGIONS``;
2. regionmask's own pooch cache (filled by ``regionmask.defined_regions.ar6`` once online);
3. stratocast's cache (``~/.cache/stratocast/regionmask-<version>/``, or ``$XDG_CACHE_HOME``);
4. regionmask's download (GitHub, into its pooch cache): what a user online gets;
5. :func:`fetch_ar6_from_pypi`: the same zip from regionmask's source distribution on PyPI
   (reachable where GitHub is not, e.g. CI), into stratocast's cache.

Every route checks the SHA-256 regionmask pins. The land set is the one regionmask calls
``ar6.land`` (Type contains "Land", so Mediterranean, Caribbean and S.E. Asia are in).

Continents are the AR6 regions' own "Continent" attribute: a station's continent is that of
the AR6 land region(s) it lies in. The Mediterranean region is "EUROPE-AFRICA" and counts for
both; a station outside every AR6 land polygon (open ocean) has no continent.

A station may be in several regions (a continent, an AR6 region, any number of custom
polygons): membership is a table ``station_id, kind, region``, and region scores sum the
per-station accumulators of each region's stations.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path

import geopandas as gp
import numpy as np
import pandas as pd
import pooch
import regionmask
import requests
import xarray as xr
from numpy.typing import ArrayLike

from stratocast.cache import default_cache_dir
from stratocast.errors import StratocastError
from stratocast.verify.metrics import ScoreAccumulator, mse_skill
from stratocast.verify.metrics_base import safe_ratio

AR6_NAME = "IPCC-WGI-reference-regions-v4.zip"
#: Environment variable naming a local copy of the AR6 shapefile zip.
AR6_ENV = "STRATOCAST_AR6_REGIONS"
#: The hash regionmask (0.9 … 0.13 at least) pins for the file.
AR6_SHA256 = "c83881a18e74912385ad578282de721cc8e866b62cbbc75446e52e7041c81cff"
#: Seconds any one download may take before that route counts as failed.
DOWNLOAD_TIMEOUT_S = 60
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
REGION_SCORE_COLUMNS = (
    "kind",
    "region",
    "system",
    "variable",
    "lead_hours",
    "n",
    "n_stations",
    "rmse",
    "mae",
    "bias",
    "mse_skill",
)


log = logging.getLogger(__name__)


class RegionError(StratocastError, ValueError):
    """A region definition or a station table that cannot be used, with what and where."""


# --------------------------------------------------------------------------- AR6 file


def _check_ar6(path: Path) -> Path:
    if not path.is_file():
        raise RegionError(f"AR6 region file {path} is missing")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != AR6_SHA256:
        raise RegionError(f"AR6 region file {path}: SHA-256 {digest} is not {AR6_SHA256}")
    return path


def _stratocast_copy(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"regionmask-{regionmask.__version__}" / AR6_NAME


def _regionmask_cache_dir() -> Path:
    # regionmask's own rule (defined_regions/_ressources.py): its option, else pooch's cache.
    configured = regionmask.get_options().get("cache_dir")
    return Path(configured or pooch.os_cache("regionmask")).expanduser()


def _regionmask_cached() -> Path:
    return _regionmask_cache_dir() / f"v{regionmask.__version__}" / AR6_NAME


def fetch_ar6_via_regionmask() -> Path:
    """regionmask's download (GitHub, into its pooch cache), with a timeout."""
    remote = pooch.create(
        path=_regionmask_cache_dir(),
        base_url="https://github.com/regionmask/regionmask/raw/{version}/data/",
        registry={AR6_NAME: AR6_SHA256},
        version=f"v{regionmask.__version__}",
        version_dev="main",
    )
    downloader = pooch.HTTPDownloader(
        headers={"User-Agent": "regionmask"}, timeout=DOWNLOAD_TIMEOUT_S, progressbar=False
    )
    return Path(remote.fetch(AR6_NAME, downloader=downloader))


def _sdist_via_pip(version: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "-q", "--timeout", str(DOWNLOAD_TIMEOUT_S)]
    cmd += ["--retries", "1", "-d", str(into), f"regionmask=={version}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=4 * DOWNLOAD_TIMEOUT_S)
    found = sorted(into.glob(f"regionmask-{version}.tar.gz"))
    if done.returncode != 0 or not found:
        raise RegionError(f"pip download regionmask=={version}: {done.stderr.strip()[-300:]}")
    return found[0]


def _sdist_via_json_api(version: str, into: Path) -> Path:
    url = f"https://pypi.org/pypi/regionmask/{version}/json"
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
        meta = json.load(resp)
    sdists = [u for u in meta["urls"] if u["packagetype"] == "sdist"]
    if not sdists:
        raise RegionError(f"{url}: no source distribution listed")
    with urllib.request.urlopen(sdists[0]["url"], timeout=DOWNLOAD_TIMEOUT_S) as resp:
        blob = resp.read()
    if hashlib.sha256(blob).hexdigest() != sdists[0]["digests"]["sha256"]:
        raise RegionError(f"{sdists[0]['url']}: SHA-256 differs from the one PyPI lists")
    target = into / sdists[0]["filename"]
    target.write_bytes(blob)
    return target


def fetch_ar6_from_pypi(cache_dir: Path | None = None) -> Path:
    """The AR6 zip from regionmask's source distribution on PyPI, cached in ``cache_dir``.

    The sdist of the installed regionmask carries ``data/IPCC-WGI-reference-regions-v4.zip``;
    it is fetched with ``pip download`` (the PyPI JSON API as a fallback), the member
    extracted and checked against :data:`AR6_SHA256`. A valid cached copy is returned as is.
    """
    target = _stratocast_copy(cache_dir or default_cache_dir())
    if target.is_file():
        return _check_ar6(target)
    version = regionmask.__version__
    with tempfile.TemporaryDirectory(prefix="stratocast-regionmask-") as tmp:
        errors = []
        sdist = None
        for fetch in (_sdist_via_pip, _sdist_via_json_api):
            try:
                sdist = fetch(version, Path(tmp))
                break
            except (RegionError, OSError, subprocess.SubprocessError, KeyError, ValueError) as e:
                errors.append(f"{fetch.__name__}: {e}")
        if sdist is None:
            raise RegionError(f"regionmask {version} sdist not fetched: {'; '.join(errors)}")
        member = f"regionmask-{version}/data/{AR6_NAME}"
        with tarfile.open(sdist) as tar:
            try:
                data = tar.extractfile(member)
            except KeyError:
                data = None
            if data is None:
                raise RegionError(f"{sdist.name} has no member {member}")
            blob = data.read()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != AR6_SHA256:
        raise RegionError(f"{member} in the regionmask sdist: SHA-256 {digest} != {AR6_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(blob)
    partial.replace(target)  # atomic: a concurrent reader never sees half a file
    return target


def resolve_ar6_file(
    path: Path | str | None = None, *, cache_dir: Path | None = None, download: bool = True
) -> Path:
    """The AR6 shapefile zip by the first route that works (module docstring), checked.

    An explicit ``path`` (or ``$STRATOCAST_AR6_REGIONS``) that is missing or wrong is an error
    by itself: the user asked for that file. Otherwise every route's failure is listed.
    """
    explicit = path or os.environ.get(AR6_ENV)
    if explicit:
        return _check_ar6(Path(explicit).expanduser())
    cache_dir = cache_dir or default_cache_dir()
    local = [_regionmask_cached(), _stratocast_copy(cache_dir)]
    for candidate in local:
        if candidate.is_file():
            return _check_ar6(candidate)
    failures = [f"no copy at {p}" for p in local]
    if download:
        routes: list[tuple[str, Callable[[], Path]]] = [
            ("regionmask download", fetch_ar6_via_regionmask),
            ("PyPI sdist", lambda: fetch_ar6_from_pypi(cache_dir)),
        ]
        for name, route in routes:
            try:
                return _check_ar6(route())
            except (RegionError, OSError, ValueError, requests.RequestException) as e:
                failures.append(f"{name}: {e}")
    raise RegionError(
        f"AR6 regions not found (set {AR6_ENV} to a copy of {AR6_NAME}): " + "; ".join(failures)
    )


def _ar6_frame(path: Path) -> gp.GeoDataFrame:
    _check_ar6(path)
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


def ar6_land_regions(path: Path | None = None) -> regionmask.Regions:
    """The 46 AR6 land regions (abbrevs such as ``WCE``, ``EAU``) from ``path`` (default:
    :func:`resolve_ar6_file`); loading a local file needs no network."""
    return _ar6_cached(Path(path) if path else resolve_ar6_file())[0]


def ar6_continents(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """AR6 land region abbreviation → continent name(s)."""
    cached = _ar6_cached(Path(path) if path else resolve_ar6_file())[1]
    return {abbrev: CONTINENTS[c] for abbrev, c in cached.items()}


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
    ar6_path: Path | None = None,
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
        ar6_path = ar6_path or resolve_ar6_file()
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
        raise RegionError(f"skill reference {reference!r} is not one of {acc.systems}")
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
        return pd.DataFrame(columns=[*REGION_SCORE_COLUMNS, "reference"])
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


def region_outlines(
    ar6_path: Path | None, custom: Mapping[str, Sequence[Sequence[float]]] | None
) -> gp.GeoDataFrame:
    """Polygons to draw (kind, region, geometry): AR6 land regions when ``ar6_path`` is given,
    then the custom ones; longitudes in -180..180."""
    frames = []
    if ar6_path is not None:
        ar6 = ar6_land_regions(ar6_path)
        frames.append(
            gp.GeoDataFrame(
                {"kind": "ar6", "region": list(ar6.abbrevs)}, geometry=list(ar6.polygons)
            )
        )
    if custom:
        mine = custom_regions(custom)
        frames.append(
            gp.GeoDataFrame(
                {"kind": "custom", "region": list(mine.abbrevs)}, geometry=list(mine.polygons)
            )
        )
    if not frames:
        return gp.GeoDataFrame({"kind": [], "region": []}, geometry=[])
    return gp.GeoDataFrame(pd.concat(frames, ignore_index=True))
