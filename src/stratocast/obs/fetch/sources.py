"""URL builders and fetchers for the public observation and model-data archives.

Every builder takes ``base_url`` (defaults are the real public endpoints) so tests and
mirrors can point it elsewhere; nothing here reads environment variables. Fetchers are thin:
build the URL, then :func:`stratocast.obs.fetch.http.fetch` it.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratocast.obs.fetch.http import FetchRequestError, fetch

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "ARCO_ERA5_GCS",
    "ARCO_ERA5_HTTPS",
    "AWC_API_BASE",
    "AWC_CACHE_BASE",
    "ECMWF_OPEN_DATA_BASE",
    "GFS_AWS_BASE",
    "GFS_NOMADS_BASE",
    "ISD_BASE",
    "ISD_LITE_BASE",
    "arco_era5_url",
    "ecmwf_open_data_url",
    "fetch_ecmwf_open_data",
    "fetch_gfs",
    "fetch_isd_history",
    "fetch_isd_lite",
    "fetch_metar",
    "fetch_metar_cache",
    "gfs_url",
    "isd_history_url",
    "isd_lite_url",
    "metar_api_url",
    "metar_cache_url",
    "open_arco_era5",
]

ISD_BASE = "https://www.ncei.noaa.gov/pub/data/noaa"
ISD_LITE_BASE = f"{ISD_BASE}/isd-lite"
AWC_API_BASE = "https://aviationweather.gov/api/data"
AWC_CACHE_BASE = "https://aviationweather.gov/data/cache"
ECMWF_OPEN_DATA_BASE = "https://data.ecmwf.int/forecasts"
GFS_AWS_BASE = "https://noaa-gfs-bdp-pds.s3.amazonaws.com"
GFS_NOMADS_BASE = "https://nomads.ncep.noaa.gov/pub/data/nccf/com/gfs/prod"
ARCO_ERA5_STORE = "ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
ARCO_ERA5_GCS = "gs://gcp-public-data-arco-era5"
# the same public bucket over plain HTTPS: needs no gcsfs, only fsspec's HTTP filesystem
ARCO_ERA5_HTTPS = "https://storage.googleapis.com/gcp-public-data-arco-era5"

Opener = urllib.request.OpenerDirector


def _join(base_url: str, *parts: str) -> str:
    return "/".join([base_url.rstrip("/"), *(p.strip("/") for p in parts)])


def _utc_run(run: datetime, url_kind: str) -> datetime:
    """``run`` in UTC at a whole hour; model cycles are named by their UTC hour."""
    if run.tzinfo is None:
        raise FetchRequestError(f"{url_kind}: run time {run.isoformat()} must be timezone-aware")
    run = run.astimezone(UTC)
    if (run.minute, run.second, run.microsecond) != (0, 0, 0):
        raise FetchRequestError(f"{url_kind}: run time {run.isoformat()} is not on a whole hour")
    return run


# --- NOAA ISD -------------------------------------------------------------------------------


def isd_lite_url(usaf: str, wban: str, year: int, *, base_url: str = ISD_LITE_BASE) -> str:
    """ISD-Lite yearly file of one station, e.g. ``.../isd-lite/2017/071690-99999-2017.gz``."""
    if not (len(usaf) == 6 and len(wban) == 5 and (usaf + wban).isalnum()):
        raise FetchRequestError(
            f"ISD-Lite station USAF={usaf!r} WBAN={wban!r}: want 6 + 5 characters"
        )
    return _join(base_url, str(int(year)), f"{usaf}-{wban}-{int(year)}.gz")


def isd_history_url(*, base_url: str = ISD_BASE) -> str:
    """The ISD station history CSV (ids, names, locations, periods of record)."""
    return _join(base_url, "isd-history.csv")


def fetch_isd_lite(
    usaf: str,
    wban: str,
    year: int,
    dest_dir: str | Path,
    *,
    base_url: str = ISD_LITE_BASE,
    timeout: float = 60.0,
    retries: int = 3,
    session: Opener | None = None,
) -> Path:
    url = isd_lite_url(usaf, wban, year, base_url=base_url)
    return fetch(url, dest_dir, timeout=timeout, retries=retries, session=session)


def fetch_isd_history(
    dest_dir: str | Path,
    *,
    base_url: str = ISD_BASE,
    timeout: float = 60.0,
    retries: int = 3,
    session: Opener | None = None,
) -> Path:
    url = isd_history_url(base_url=base_url)
    return fetch(url, dest_dir, timeout=timeout, retries=retries, session=session)


# --- aviationweather.gov METAR --------------------------------------------------------------


def metar_api_url(
    ids: Iterable[str], *, hours: float = 2.0, fmt: str = "raw", base_url: str = AWC_API_BASE
) -> str:
    """aviationweather.gov data API query for recent METARs of some ICAO stations."""
    stations = [s.strip().upper() for s in ids]
    if not stations or not all(len(s) == 4 and s.isalnum() for s in stations):
        raise FetchRequestError(f"METAR station ids {stations!r}: want 4-character ICAO ids")
    query = urllib.parse.urlencode({"ids": ",".join(stations), "format": fmt, "hours": hours})
    return f"{_join(base_url, 'metar')}?{query}"


def metar_cache_url(*, fmt: str = "csv", base_url: str = AWC_CACHE_BASE) -> str:
    """aviationweather.gov cache file holding every current METAR (``csv`` or ``xml``)."""
    if fmt not in {"csv", "xml"}:
        raise FetchRequestError(f"METAR cache format {fmt!r}: want 'csv' or 'xml'")
    return _join(base_url, f"metars.cache.{fmt}.gz")


def fetch_metar(
    ids: Iterable[str],
    dest_dir: str | Path,
    *,
    hours: float = 2.0,
    base_url: str = AWC_API_BASE,
    now: datetime | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    session: Opener | None = None,
) -> Path:
    """Raw METAR text for ``ids``, saved as ``metar_<ids>_<UTC request time>.txt``.

    The API answers with whatever is current, so the file is named by request time and
    always downloaded (no size/ETag reuse).
    """
    stations = [s.strip().upper() for s in ids]
    url = metar_api_url(stations, hours=hours, fmt="raw", base_url=base_url)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"metar_{'-'.join(stations)}_{stamp}.txt"
    return fetch(
        url, dest_dir, timeout=timeout, retries=retries, session=session, filename=name, force=True
    )


def fetch_metar_cache(
    dest_dir: str | Path,
    *,
    fmt: str = "csv",
    base_url: str = AWC_CACHE_BASE,
    timeout: float = 60.0,
    retries: int = 3,
    session: Opener | None = None,
) -> Path:
    url = metar_cache_url(fmt=fmt, base_url=base_url)
    return fetch(url, dest_dir, timeout=timeout, retries=retries, session=session)


# --- model GRIB: ECMWF open data, NOAA GFS ---------------------------------------------------


def ecmwf_open_data_url(
    run: datetime,
    step: int,
    *,
    model: str = "ifs",
    resolution: str = "0p25",
    stream: str | None = None,
    kind: str = "fc",
    suffix: str = "grib2",
    base_url: str = ECMWF_OPEN_DATA_BASE,
) -> str:
    """ECMWF open-data file of one run and step, e.g.
    ``.../20240101/00z/ifs/0p25/oper/20240101000000-6h-oper-fc.grib2``.

    ``stream`` defaults to ``oper`` for 00/12 UTC runs and ``scda`` for 06/18 UTC (the short
    cut-off runs); ``suffix="index"`` gives the JSON index for byte-range downloads.
    """
    run = _utc_run(run, "ECMWF open data")
    if step < 0:
        raise FetchRequestError(f"ECMWF open data: step {step} h must be >= 0")
    stream = stream or ("oper" if run.hour in (0, 12) else "scda")
    day, hh = run.strftime("%Y%m%d"), f"{run.hour:02d}"
    name = f"{day}{hh}0000-{step}h-{stream}-{kind}.{suffix}"
    return _join(base_url, day, f"{hh}z", model, resolution, stream, name)


def gfs_url(
    run: datetime, step: int, *, resolution: str = "0p25", base_url: str = GFS_AWS_BASE
) -> str:
    """GFS pressure-level GRIB2 of one cycle and forecast hour (AWS or NOMADS layout)."""
    run = _utc_run(run, "GFS")
    if run.hour % 6:
        raise FetchRequestError(f"GFS: cycle {run.isoformat()} is not 00/06/12/18 UTC")
    if not 0 <= step <= 999:
        raise FetchRequestError(f"GFS: forecast hour {step} outside 0..999")
    hh = f"{run.hour:02d}"
    return _join(
        base_url,
        f"gfs.{run:%Y%m%d}",
        hh,
        "atmos",
        f"gfs.t{hh}z.pgrb2.{resolution}.f{step:03d}",
    )


def fetch_ecmwf_open_data(
    run: datetime,
    step: int,
    dest_dir: str | Path,
    *,
    stream: str | None = None,
    base_url: str = ECMWF_OPEN_DATA_BASE,
    timeout: float = 120.0,
    retries: int = 3,
    session: Opener | None = None,
) -> Path:
    url = ecmwf_open_data_url(run, step, stream=stream, base_url=base_url)
    return fetch(url, dest_dir, timeout=timeout, retries=retries, session=session)


def fetch_gfs(
    run: datetime,
    step: int,
    dest_dir: str | Path,
    *,
    base_url: str = GFS_AWS_BASE,
    timeout: float = 120.0,
    retries: int = 3,
    session: Opener | None = None,
) -> Path:
    url = gfs_url(run, step, base_url=base_url)
    return fetch(url, dest_dir, timeout=timeout, retries=retries, session=session)


# --- ARCO-ERA5 Zarr -------------------------------------------------------------------------


def arco_era5_url(*, base_url: str = ARCO_ERA5_HTTPS, store: str = ARCO_ERA5_STORE) -> str:
    """URL of the ARCO-ERA5 Zarr store (HTTPS by default; ``ARCO_ERA5_GCS`` for gcsfs)."""
    return _join(base_url, store)


def open_arco_era5(
    url: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    consolidated: bool | None = None,
) -> xr.Dataset:
    """Open a Zarr store lazily (metadata only; data is read when indexed).

    HTTP(S) URLs go through fsspec's HTTP filesystem, which needs ``aiohttp``; ``gs://``
    needs ``gcsfs``. ``consolidated=None`` tries the store's consolidated metadata (one
    request) and falls back to per-array metadata. Nothing is loaded here: slice first,
    then ``.load()``.
    """
    import xarray as xr  # heavy; only needed by callers that open Zarr

    target = url or arco_era5_url()
    opts = dict(storage_options or {})
    return xr.open_zarr(
        target, chunks=None, consolidated=consolidated, storage_options=opts or None
    )
