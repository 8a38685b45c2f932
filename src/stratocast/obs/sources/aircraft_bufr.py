"""Aircraft (AMDAR/ACARS) observations in BUFR (data category 4), via ecCodes.

One subset is one observation at one point of a flight. The store has no vertical coordinate,
so an observation within ``tolerance_hpa`` (default 25 hPa) of 850 or 500 hPa becomes a report
of ``t850 u850 v850`` or ``t500 u500 v500``; any other pressure is a Rejection
``no_standard_level`` with the pressure in the reason (kept, not dropped). Assigning a value
measured up to 25 hPa off the level to the level is this source's documented approximation
(about 250 m at 850 hPa, 1.5 K of lapse at most).

Pressure: ``pressure`` when present, else ``flightLevel`` (pressure altitude, m) converted
with the ICAO standard atmosphere (:func:`pressure_from_flight_level`).
Station id: the aircraft registration/identifier (stable across flights), else the flight
number. Elevation: the flight level when given, else NaN (the aircraft has no station height).
Wind: ``u = -ws sin(dd)``, ``v = -ws cos(dd)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stratocast.obs.base import Record, Rejection, Report
from stratocast.obs.harmonise import wind_components
from stratocast.obs.lexicon import LexiconEntry, validate_lexicon
from stratocast.obs.sources.temp_bufr import (
    STANDARD_LEVELS,
    Subset,
    Values,
    read_bufr,
    subset_time,
)
from stratocast.obs.stations import StationCatalogue

# ICAO standard atmosphere (ICAO Doc 7488), troposphere and lower stratosphere
_P0, _T0, _LAPSE = 101325.0, 288.15, 0.0065  # Pa, K, K m-1
_G0, _R = 9.80665, 287.05287  # m s-2, J kg-1 K-1 (dry air, as ICAO defines it)
_H_TROPOPAUSE = 11000.0  # m
_T_TROPOPAUSE = _T0 - _LAPSE * _H_TROPOPAUSE  # 216.65 K
_P_TROPOPAUSE = _P0 * (_T_TROPOPAUSE / _T0) ** (_G0 / (_R * _LAPSE))  # 22632.06 Pa


def pressure_from_flight_level(height: float) -> float:
    """Pressure (Pa) at pressure altitude ``height`` (m) in the ICAO standard atmosphere.

    Valid to 20 km (isothermal layer above 11 km); civil aircraft fly below 15 km.
    """
    if height <= _H_TROPOPAUSE:
        return _P0 * (1.0 - _LAPSE * height / _T0) ** (_G0 / (_R * _LAPSE))
    return _P_TROPOPAUSE * math.exp(-_G0 * (height - _H_TROPOPAUSE) / (_R * _T_TROPOPAUSE))


LEXICON: dict[str, LexiconEntry] = {
    k: LexiconEntry(k, unit, f"{var}{lev}")
    for lev in STANDARD_LEVELS.values()
    for k, unit, var in [
        (f"airTemperature@{lev}hPa", "K", "t"),
        (f"windSpeed+windDirection@{lev}hPa (eastward)", "m s-1", "u"),
        (f"windSpeed+windDirection@{lev}hPa (northward)", "m s-1", "v"),
    ]
}
validate_lexicon("aircraft_bufr", LEXICON)

_ID_KEYS = ("aircraftRegistrationNumberOrOtherIdentification", "aircraftFlightNumber")


class AircraftBufrSource:
    """Source ``aircraft_bufr``: aircraft observations near 850/500 hPa, via ecCodes."""

    name = "aircraft_bufr"
    lexicon = LEXICON

    def __init__(self, tolerance_hpa: float = 25.0) -> None:
        self.tolerance = tolerance_hpa * 100.0  # Pa

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        # 4 = single level upper-air data (other than satellite)
        yield from read_bufr(path, catalogue, (4,), "aircraft", self._subset)

    def _level(self, p: float) -> str | None:
        for level, suffix in STANDARD_LEVELS.items():
            if abs(p - level) <= self.tolerance:
                return suffix
        return None

    def _subset(
        self,
        values: Values,
        sub: Subset,
        s: int,
        report_id: str,
        catalogue: StationCatalogue | None,
    ) -> Record:
        def get(key: str, string: bool = False) -> Any:
            return values.get(key, sub.first(key), s, string=string)

        raw: list[str] = []
        station_id = None
        for key in _ID_KEYS:
            ident = get(key, string=True)
            if ident:
                raw.append(f"{key}={ident}")
                station_id = station_id or ident
        if station_id is None:
            reason = "no aircraft registration or flight number"
            return Rejection(report_id, "no_station_id", reason, " ".join(raw))
        try:
            t = subset_time(values, sub, s)
        except (KeyError, ValueError) as err:
            reason = f"missing or invalid time ({err})"
            return Rejection(report_id, "bad_time", reason, " ".join(raw), station_id)
        lat, lon = get("latitude"), get("longitude")
        raw.append(f"lat={lat} lon={lon} time={t:%Y-%m-%dT%H:%M:%S}Z")
        if lat is None or lon is None:
            return Rejection(
                report_id, "no_location", "no latitude/longitude", " ".join(raw), station_id, t
            )
        flight_level = get("flightLevel")
        p = get("pressure")
        if p is None and flight_level is not None:
            p = pressure_from_flight_level(float(flight_level))
            raw.append(f"flightLevel={flight_level} pressure(ICAO)={p:.0f}")
        elif p is not None:
            raw.append(f"pressure={p}")
        if p is None:
            reason = "no pressure or flight level"
            return Rejection(report_id, "no_standard_level", reason, " ".join(raw), station_id, t)
        suffix = self._level(float(p))
        if suffix is None:
            reason = (
                f"pressure {float(p) / 100:.1f} hPa is not within "
                f"{self.tolerance / 100:g} hPa of 850 or 500 hPa"
            )
            return Rejection(report_id, "no_standard_level", reason, " ".join(raw), station_id, t)
        out: dict[str, float] = {}
        temp, ws, wd = get("airTemperature"), get("windSpeed"), get("windDirection")
        raw.append(f"airTemperature={temp} windSpeed={ws} windDirection={wd}")
        if temp is not None:
            out[f"t{suffix}"] = float(temp)
        if ws is not None and wd is not None:
            out[f"u{suffix}"], out[f"v{suffix}"] = wind_components(float(ws), float(wd))
        if not out:
            reason = "no temperature or wind"
            return Rejection(report_id, "no_data", reason, " ".join(raw), station_id, t)
        elevation = math.nan if flight_level is None else float(flight_level)
        lat, lon = round(float(lat), 6), round(float(lon), 6)  # drop BUFR scaling noise
        return Report(report_id, station_id, lat, lon, elevation, t, out, " ".join(raw))
