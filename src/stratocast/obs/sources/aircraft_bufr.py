"""Aircraft (AMDAR/ACARS) observations in BUFR (data category 4), via ecCodes.

One subset is one observation at one point of a flight. The store has no vertical coordinate,
so an observation within ``tolerance_hpa`` (default 25 hPa) of 850 or 500 hPa becomes a report
of ``t850 u850 v850`` or ``t500 u500 v500``; any other pressure is a Rejection
``no_standard_level`` with the pressure in the reason (kept, not dropped). Assigning a value
measured up to 25 hPa off the level to the level is this source's documented approximation
(about 250 m at 850 hPa, 1.5 K of lapse at most).

Pressure: ``pressure`` (007004) when present, else a pressure altitude converted with the
ICAO standard atmosphere (:func:`pressure_from_flight_level`): ``flightLevel`` (007010, TM
311010 AMDAR) or ``height`` (007002), which TM 311001 "aircraft reports" (the FM 42 AMDAR
template; ~97 % of the subsets of the global aircraft file behind issue 11) defines as the
pressure altitude in m, not a geometric height. A pressure altitude outside the standard
atmosphere's range (-2 to 32 km here) or a non-positive pressure is a Rejection
``bad_flight_level``.
Station id: the aircraft registration/identifier (stable across flights), else the flight
number. Elevation: the pressure altitude when given, else NaN (the aircraft has no station
height). Wind: ``u = -ws sin(dd)``, ``v = -ws cos(dd)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stratocast.obs.base import Record, Rejection, Report
from stratocast.obs.bufr_file import non_finite
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

# ICAO standard atmosphere (ICAO Doc 7488/3, = ISO 2533 to 32 km): geopotential height H,
# layers with a constant lapse rate L from (H_b, T_b, p_b):
#   L != 0:  p = p_b * (1 - L (H - H_b) / T_b) ** (g0 / (R L))
#   L == 0:  p = p_b * exp(-g0 (H - H_b) / (R T_b))
# with g0 = 9.80665 m s-2, R = 287.05287 J kg-1 K-1, sea level 101325 Pa, 288.15 K.
# Layers: -2..11 km L = +6.5 K/km; 11..20 km isothermal 216.65 K; 20..32 km L = -1 K/km.
# Flight levels are pressure altitudes in exactly this atmosphere, so this is their
# definition, not an approximation.
_G0, _R = 9.80665, 287.05287
_H_MIN, _H_MAX = -2000.0, 32000.0  # m: where ISO 2533 and the layers below are defined
_LAYERS: list[tuple[float, float, float, float]] = []  # (H_b, T_b, p_b, L)


def _layer_pressure(h: float, hb: float, tb: float, pb: float, lapse: float) -> float:
    if lapse == 0.0:
        return pb * math.exp(-_G0 * (h - hb) / (_R * tb))
    return pb * (1.0 - lapse * (h - hb) / tb) ** (_G0 / (_R * lapse))


def _build_layers() -> None:
    hb, tb, pb = 0.0, 288.15, 101325.0
    for top, lapse in ((11000.0, 0.0065), (20000.0, 0.0), (32000.0, -0.001)):
        _LAYERS.append((hb, tb, pb, lapse))
        pb = _layer_pressure(top, hb, tb, pb, lapse)
        tb, hb = tb - lapse * (top - hb), top


_build_layers()


def pressure_from_flight_level(height: float) -> float:
    """Pressure (Pa) at pressure altitude ``height`` (m) in the ICAO standard atmosphere.

    Defined for -2 km to 32 km (ValueError outside, and for a non-finite height); the
    lowest layer's formula is used below sea level, as ISO 2533 does.
    """
    if not _H_MIN <= height <= _H_MAX:  # also False for NaN
        raise ValueError(
            f"pressure altitude {height:g} m is outside the standard atmosphere "
            f"({_H_MIN:g} to {_H_MAX:g} m)"
        )
    for hb, tb, pb, lapse in reversed(_LAYERS):
        if height >= hb:
            return _layer_pressure(height, hb, tb, pb, lapse)
    hb, tb, pb, lapse = _LAYERS[0]
    return _layer_pressure(height, hb, tb, pb, lapse)


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
# pressure altitudes, in order of preference: 007010 (311010) and 007002, which 311001
# defines as the flight level
_ALTITUDE_KEYS = ("flightLevel", "height")


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
        p = get("pressure")
        altitude_key, flight_level = next(
            ((k, v) for k in _ALTITUDE_KEYS if (v := get(k)) is not None), ("", None)
        )
        if p is None and flight_level is not None:
            raw.append(f"{altitude_key}={flight_level}")
            try:
                p = pressure_from_flight_level(float(flight_level))
            except ValueError as err:
                return Rejection(
                    report_id, "bad_flight_level", str(err), " ".join(raw), station_id, t
                )
            raw.append(f"pressure(ICAO)={p:.0f}")
        elif p is not None:
            raw.append(f"pressure={p}")
        if p is None:
            reason = "no pressure, flight level or height (007004/007010/007002)"
            return Rejection(report_id, "no_standard_level", reason, " ".join(raw), station_id, t)
        if not float(p) > 0.0:  # also catches NaN
            reason = f"pressure {p} Pa is not positive"
            return Rejection(report_id, "bad_flight_level", reason, " ".join(raw), station_id, t)
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
        if (bad := non_finite(out)) is not None:
            return Rejection(report_id, "non_finite", bad, " ".join(raw), station_id, t)
        elevation = math.nan if flight_level is None else float(flight_level)
        lat, lon = round(float(lat), 6), round(float(lon), 6)  # drop BUFR scaling noise
        return Report(report_id, station_id, lat, lon, elevation, t, out, " ".join(raw))
