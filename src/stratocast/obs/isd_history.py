"""NOAA's ISD station list (``isd-history.csv``) as a :class:`StationCatalogue`.

Station ids are ``USAF-WBAN`` (``"071690-99999"``), the same id ISD and ISD-Lite file names
carry. Rows the list cannot place are skipped and counted, never fatal:

* missing or non-numeric latitude/longitude, or outside [-90, 90] x [-180, 180];
* exactly (0, 0): the list's placeholder for "location unknown" (``BOGUS ...`` and the
  ``WXPOD`` test ids sit there), not a real station in the Gulf of Guinea.

Elevation ``-999`` / ``-999.9`` is the list's missing-value code and becomes NaN.

Parsing is vectorised with pandas (the list has ~30k rows); the only Python loop is the
catalogue's own ``add``.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from stratocast.obs.stations import Station, StationCatalogue, StationCatalogueError, wmo_id

log = logging.getLogger(__name__)

COLUMNS = ("USAF", "WBAN", "STATION NAME", "CTRY", "STATE", "ICAO", "LAT", "LON", "ELEV(M)")
_ELEV_MISSING = -999.0  # -999.0 and -999.9 both occur; anything at or below is missing


class IsdHistory(NamedTuple):
    catalogue: StationCatalogue
    rows: int  # data rows in the file
    skipped: int  # rows without a usable location


def station_id(usaf: str, wban: str) -> str:
    """The ``USAF-WBAN`` id ISD uses in file names."""
    return f"{usaf}-{wban}"


def load_isd_history(path: Path | str, *, index_codes: bool = False) -> IsdHistory:
    """Load ``isd-history.csv`` into a catalogue keyed by ``USAF-WBAN``.

    ``index_codes`` also fills the ICAO and WMO (a numeric ``USAF`` ending in 0 → its first
    five digits) lookups. It is off by default because many ISD ids share one ICAO code or WMO
    number, and merged with a METAR or SYNOP catalogue these entries would take over those
    lookups and rename the other sources' stations.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=list(COLUMNS))
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise StationCatalogueError(f"cannot read ISD station list {path}: {err}") from None
    except ValueError as err:  # usecols names a column the file lacks
        raise StationCatalogueError(f"ISD station list {path}: {err}") from None

    lat = pd.to_numeric(df["LAT"], errors="coerce").to_numpy(dtype=float)
    lon = pd.to_numeric(df["LON"], errors="coerce").to_numpy(dtype=float)
    elev = pd.to_numeric(df["ELEV(M)"], errors="coerce").to_numpy(dtype=float, copy=True)
    elev[elev <= _ELEV_MISSING] = math.nan
    with np.errstate(invalid="ignore"):  # NaN compares False: exactly what "not valid" needs
        ok = (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0) & ~((lat == 0.0) & (lon == 0.0))

    usaf = df["USAF"].str.strip().to_numpy()
    icao = df["ICAO"].str.strip().to_numpy()
    ids = (df["USAF"].str.strip() + "-" + df["WBAN"].str.strip()).to_numpy()
    stations = []
    for i in np.flatnonzero(ok):
        code, wmo = None, None
        if index_codes:
            code = icao[i] or None
            u = usaf[i]
            if len(u) == 6 and u.isdigit() and u.endswith("0"):
                wmo = wmo_id(int(u[:2]), int(u[2:5]))
        stations.append(
            Station(str(ids[i]), float(lat[i]), float(lon[i]), float(elev[i]), code, wmo)
        )
    skipped = int(len(df) - ok.sum())
    if skipped:
        log.info("%s: skipped %d of %d stations without a usable location", path, skipped, len(df))
    return IsdHistory(StationCatalogue(stations), len(df), skipped)


@functools.lru_cache(maxsize=4)
def cached_isd_catalogue(path: str) -> StationCatalogue:
    """The catalogue of ``path``, loaded once per process (readers ask once per file)."""
    return load_isd_history(path).catalogue
