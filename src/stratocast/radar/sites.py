"""Radar site locations for volumes that do not carry their own (NEXRAD message type 1).

Legacy NEXRAD Level II volumes (message type 1, the format before 2008) hold radials but no
site coordinates; xradar then reports the site at 0 N 0 E, altitude 0, and a grid built
there would be silently wrong by thousands of km. The site is taken, in this order, from the
volume itself, from the caller (``site=``), or from the NOAA NEXRAD site table shipped with
the package (``nexrad_sites.yaml``: NCEI HOMR, public domain; its header says where it came
from and how to refresh it), keyed by the ICAO id in the volume header.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

_FEET = 0.3048  # m per international foot


@dataclass(frozen=True)
class RadarSite:
    """Where a radar antenna is: degrees north/east (WGS84), metres above MSL."""

    latitude: float
    longitude: float
    altitude: float
    name: str = ""

    def __post_init__(self) -> None:
        if not (-90.0 <= self.latitude <= 90.0 and -180.0 <= self.longitude <= 180.0):
            raise ValueError(
                f"radar site {self.name or '?'}: latitude/longitude "
                f"({self.latitude}, {self.longitude}) out of range"
            )


@cache
def nexrad_sites() -> dict[str, RadarSite]:
    """ICAO id -> site, from the shipped NCEI HOMR table (elevations feet -> metres)."""
    text = resources.files("stratocast.radar").joinpath("nexrad_sites.yaml").read_text()
    table = yaml.safe_load(text)  # safe_load: plain data only, nothing executes
    if table.get("elevation_unit") != "ft":
        raise ValueError("nexrad_sites.yaml: elevation_unit must be ft (as HOMR publishes)")
    return {
        str(icao): RadarSite(float(lat), float(lon), float(elev_ft) * _FEET, str(icao))
        for icao, (lat, lon, elev_ft, _name) in table["sites"].items()
    }


def nexrad_site(icao: str) -> RadarSite | None:
    """The NEXRAD site with this ICAO id (case-insensitive), or None if the table lacks it."""
    return nexrad_sites().get(icao.strip().upper())
