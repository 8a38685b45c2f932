"""The ICAO METAR station list of Debian's ``weather-util-data`` (``stations`` INI file).

METAR reports name their station by ICAO code only; this list (~5,900 stations, generated from
NOAA's ``nsd_cccc.txt``, OurAirports and the US gazetteers) says where each code is. One INI
section per station, lower-case ICAO code as the section name::

    [aggh]
    description = Honiara / Henderson, Solomon Islands
    location = (-0.1643518, 2.7933995)
    metar = https://tgftp.nws.noaa.gov/data/observations/metar/decoded/AGGH.TXT

``location`` is (latitude, longitude) in **radians** (the trap of this file: read as degrees,
every station lands within 3.2° of (0, 0)), or ``None`` when unknown. The list carries no
elevation, so elevations are NaN; merge with a list that has them (``isd_history``) when a
lapse-rate or pressure reduction needs one.

Entries the list cannot place (``location = None``, a malformed tuple, out of range) are
skipped and counted with their reason, never fatal; a file that is not this INI format at all
raises :class:`~stratocast.obs.base.SourceFileError` naming the file and line.
"""

from __future__ import annotations

import configparser
import gzip
import math
from pathlib import Path
from typing import NamedTuple

from stratocast.obs.base import SourceFileError
from stratocast.obs.stations import Station, StationCatalogue


class IcaoStations(NamedTuple):
    catalogue: StationCatalogue
    sections: int  # station sections in the file
    skipped: dict[str, str]  # ICAO code -> why it could not be placed


def _location(raw: str | None) -> tuple[float, float] | str:
    """(lat, lon) in degrees from the ``location`` value, or the reason it is unusable."""
    if raw is None:
        return "no location key"
    text = raw.strip()
    if text == "None":
        return "location unknown (None)"
    parts = text.strip("()").split(",")
    if len(parts) != 2:
        return f"malformed location {text!r}"
    try:
        lat, lon = (math.degrees(float(p)) for p in parts)
    except ValueError:
        return f"malformed location {text!r}"
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return f"location ({lat:.3f}, {lon:.3f}) degrees out of range"
    return lat, lon


def load_icao_stations(path: Path | str) -> IcaoStations:
    """Read the (optionally gzipped) INI station list into a catalogue keyed by ICAO code."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            parser.read_file(fh, source=str(path))
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise SourceFileError(f"cannot read ICAO station list {path}: {err}") from None
    except configparser.Error as err:  # the message carries the file and line
        detail = " ".join(str(err).split())  # configparser's message spans lines
        raise SourceFileError(f"{path} is not an INI station list: {detail}") from None
    stations: list[Station] = []
    skipped: dict[str, str] = {}
    for section in parser.sections():
        code = section.strip().upper()
        found = _location(parser[section].get("location"))
        if isinstance(found, str):
            skipped[code] = found
            continue
        lat, lon = found
        stations.append(Station(code, lat, lon, math.nan, icao=code))
    if not parser.sections():
        raise SourceFileError(f"{path}: no station sections found")
    return IcaoStations(StationCatalogue(stations), len(parser.sections()), skipped)
