"""Station catalogue: where a station is, for formats (METAR) that do not say.

Lookups go through plain dicts because the METAR reader asks once per report. The catalogue is
a small picklable value, so it travels to ingest worker processes unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from stratocast.errors import StratocastError

FOOT = 0.3048  # m


class StationCatalogueError(StratocastError, ValueError):
    """A station list or catalogue that cannot be read (names the file and line), or a
    source that needs one run without it."""


class Station(NamedTuple):
    station_id: str
    lat: float
    lon: float
    elevation: float  # m above MSL, NaN when unknown
    icao: str | None = None
    wmo_id: str | None = None  # 5 digits: block * 1000 + station


def wmo_id(block: int, station: int) -> str:
    return f"{block * 1000 + station:05d}"


class StationCatalogue:
    """station_id -> location, with lookups by ICAO code and WMO block/station number."""

    def __init__(self, stations: Iterable[Station] = ()) -> None:
        self._by_id: dict[str, Station] = {}
        self._by_icao: dict[str, Station] = {}
        self._by_wmo: dict[str, Station] = {}
        for s in stations:
            self.add(s)

    def add(self, s: Station) -> None:
        if not (-90.0 <= s.lat <= 90.0) or not (-180.0 <= s.lon <= 360.0):
            raise StationCatalogueError(
                f"station {s.station_id}: location ({s.lat}, {s.lon}) out of range"
            )
        lon = s.lon - 360.0 if s.lon > 180.0 else s.lon
        s = s._replace(lon=lon)
        self._by_id[s.station_id] = s
        if s.icao:
            self._by_icao[s.icao] = s
        if s.wmo_id:
            self._by_wmo[s.wmo_id] = s

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, station_id: object) -> bool:
        return station_id in self._by_id

    def get(self, station_id: str) -> Station | None:
        return self._by_id.get(station_id)

    def by_icao(self, icao: str) -> Station | None:
        return self._by_icao.get(icao)

    def by_wmo(self, wmo: str) -> Station | None:
        return self._by_wmo.get(wmo)

    @property
    def icao_index(self) -> dict[str, Station]:
        """The ICAO lookup dict itself, for readers that bind it once per file."""
        return self._by_icao

    def merged(self, other: StationCatalogue) -> StationCatalogue:
        """A new catalogue with ``other``'s entries added (``other`` wins on conflicts)."""
        return StationCatalogue([*self._by_id.values(), *other._by_id.values()])

    @classmethod
    def from_csv(cls, path: Path | str) -> StationCatalogue:
        """Load the world's ``stations.csv`` (station_id, icao, wmo_block, wmo_station, name,
        lat, lon, elevation_m, network, role)."""
        path = Path(path)
        try:
            df = pd.read_csv(
                path,
                dtype={"station_id": str, "icao": str, "name": str},
                keep_default_na=False,
                na_values={"lat": [""], "lon": [""], "elevation_m": [""]},
            )
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
            raise StationCatalogueError(f"cannot read station catalogue {path}: {err}") from None
        missing = {"station_id", "lat", "lon"} - set(df.columns)
        if missing:
            raise StationCatalogueError(f"station catalogue {path} lacks columns {sorted(missing)}")
        stations = []
        for i, row in enumerate(df.itertuples(index=False), start=2):
            rec = row._asdict()
            wmo = None
            block, num = str(rec.get("wmo_block", "")), str(rec.get("wmo_station", ""))
            if block.strip() and num.strip():
                try:
                    wmo = wmo_id(int(float(block)), int(float(num)))
                except ValueError:
                    raise StationCatalogueError(
                        f"{path}:{i}: bad WMO block/station {block!r}/{num!r}"
                    ) from None
            elev = rec.get("elevation_m", math.nan)
            stations.append(
                Station(
                    station_id=str(rec["station_id"]),
                    lat=float(rec["lat"]),
                    lon=float(rec["lon"]),
                    elevation=float(elev) if elev != "" else math.nan,
                    icao=str(rec.get("icao") or "") or None,
                    wmo_id=wmo,
                )
            )
        return cls(stations)

    @classmethod
    def from_airportsdata(cls) -> StationCatalogue:
        """ICAO airports from the ``airportsdata`` package; station_id is the ICAO code.

        airportsdata gives elevation in feet; it is converted to metres here.
        """
        import airportsdata

        airports = airportsdata.load("ICAO")
        return cls(
            Station(
                station_id=code,
                lat=float(a["lat"]),
                lon=float(a["lon"]),
                elevation=float(a["elevation"]) * FOOT,
                icao=code,
            )
            for code, a in airports.items()
        )
