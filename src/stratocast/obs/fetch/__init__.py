"""Download observation and model files from public archives (standard-library HTTP only)."""

from __future__ import annotations

from stratocast.obs.fetch.http import FetchError, fetch, filename_from_url
from stratocast.obs.fetch.sources import (
    arco_era5_url,
    ecmwf_open_data_url,
    fetch_ecmwf_open_data,
    fetch_gfs,
    fetch_isd_history,
    fetch_isd_lite,
    fetch_metar,
    fetch_metar_cache,
    gfs_url,
    isd_history_url,
    isd_lite_url,
    metar_api_url,
    metar_cache_url,
    open_arco_era5,
)

__all__ = [
    "FetchError",
    "arco_era5_url",
    "ecmwf_open_data_url",
    "fetch",
    "fetch_ecmwf_open_data",
    "fetch_gfs",
    "fetch_isd_history",
    "fetch_isd_lite",
    "fetch_metar",
    "fetch_metar_cache",
    "filename_from_url",
    "gfs_url",
    "isd_history_url",
    "isd_lite_url",
    "metar_api_url",
    "metar_cache_url",
    "open_arco_era5",
]
