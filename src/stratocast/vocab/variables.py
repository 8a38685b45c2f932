"""The canonical variable table: every stage speaks these names, in these SI units.

Source lexicons (one per source) map native names and units onto this table at the edge, so
nothing downstream ever sees knots, hPa or degrees Celsius.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from stratocast.errors import StratocastError


@dataclass(frozen=True)
class Variable:
    name: str
    standard_name: str  # CF standard name
    units: str  # SI, CF/UDUNITS spelling
    valid_min: float
    valid_max: float
    description: str


_TABLE = [
    Variable("t2m", "air_temperature", "K", 180.0, 340.0, "2 m air temperature"),
    Variable("d2m", "dew_point_temperature", "K", 170.0, 320.0, "2 m dewpoint temperature"),
    Variable("q2m", "specific_humidity", "kg kg-1", 0.0, 0.05, "2 m specific humidity"),
    Variable("rh2m", "relative_humidity", "1", 0.0, 1.05, "2 m relative humidity"),
    Variable("u10", "eastward_wind", "m s-1", -100.0, 100.0, "10 m eastward wind"),
    Variable("v10", "northward_wind", "m s-1", -100.0, 100.0, "10 m northward wind"),
    Variable("ws10", "wind_speed", "m s-1", 0.0, 100.0, "10 m wind speed"),
    Variable("wd10", "wind_from_direction", "degree", 0.0, 360.0, "10 m wind direction"),
    Variable("msl", "air_pressure_at_mean_sea_level", "Pa", 85000.0, 110000.0, "MSL pressure"),
    Variable("sp", "surface_air_pressure", "Pa", 40000.0, 110000.0, "surface pressure"),
    # The altimeter setting is station pressure reduced through the ICAO standard atmosphere,
    # not through the actual air column: it is its own variable, never stored as msl.
    Variable("qnh", "altimeter_setting", "Pa", 85000.0, 110000.0, "altimeter setting (QNH)"),
    Variable("z500", "geopotential", "m2 s-2", 40000.0, 62000.0, "geopotential at 500 hPa"),
    Variable("t850", "air_temperature", "K", 200.0, 330.0, "temperature at 850 hPa"),
    Variable("orography", "surface_altitude", "m", -500.0, 9000.0, "surface height"),
    # satellite observations (issue 3): HIRS level-1B channel brightness temperatures
    *(
        Variable(
            f"hirs_bt{c:02d}",
            "toa_brightness_temperature",
            "K",
            150.0,
            350.0,
            f"HIRS channel {c} top-of-atmosphere brightness temperature",
        )
        for c in range(1, 20)
    ),
    Variable(
        "crr",
        "convective_precipitation_flux",
        "kg m-2 s-1",
        0.0,
        0.02,  # NWC-SAF CRR saturates at 50 mm/h = 0.0139 kg m-2 s-1
        "convective rainfall rate (NWC-SAF CRR)",
    ),
    # upper-air standard levels (issue 3): radiosonde TEMP and aircraft AMDAR
    Variable("t500", "air_temperature", "K", 190.0, 300.0, "temperature at 500 hPa"),
    Variable("z850", "geopotential", "m2 s-2", 7000.0, 18000.0, "geopotential at 850 hPa"),
    Variable("u850", "eastward_wind", "m s-1", -100.0, 100.0, "eastward wind at 850 hPa"),
    Variable("v850", "northward_wind", "m s-1", -100.0, 100.0, "northward wind at 850 hPa"),
    Variable("u500", "eastward_wind", "m s-1", -150.0, 150.0, "eastward wind at 500 hPa"),
    Variable("v500", "northward_wind", "m s-1", -150.0, 150.0, "northward wind at 500 hPa"),
]

# Names of the hand-written table whose description is not "... at N hPa": single-level
# variables whose spelling a pressure-level name must not take (u10, v10).
_SINGLE_LEVEL = frozenset(v.name for v in _TABLE if not v.description.endswith(" hPa"))

# Every standard pressure level of ERA5 (37 levels, hPa); WeatherBench2's 13 are a subset.
PRESSURE_LEVELS: tuple[int, ...] = (
    *(1, 2, 3, 5, 7, 10, 20, 30, 50, 70, 100, 125, 150, 175, 200, 225, 250, 300, 350, 400),
    *(450, 500, 550, 600, 650, 700, 750, 775, 800, 825, 850, 875, 900, 925, 950, 975, 1000),
)
# Pressure-level quantities: prefix -> (CF standard name, SI unit, description).
LEVEL_QUANTITIES: dict[str, tuple[str, str, str]] = {
    "t": ("air_temperature", "K", "temperature"),
    "z": ("geopotential", "m2 s-2", "geopotential"),
    "u": ("eastward_wind", "m s-1", "eastward wind"),
    "v": ("northward_wind", "m s-1", "northward wind"),
    "q": ("specific_humidity", "kg kg-1", "specific humidity"),
    "r": ("relative_humidity", "1", "relative humidity"),
    "w": ("lagrangian_tendency_of_air_pressure", "Pa s-1", "vertical velocity (omega)"),
}
_G = 9.80665


def _isa_height(p_hpa: float) -> float:
    """Geopotential height (m) of pressure ``p_hpa`` in the ICAO standard atmosphere."""
    if p_hpa >= 226.32:  # troposphere: 6.5 K/km from 288.15 K, 1013.25 hPa
        return 288.15 / 0.0065 * (1.0 - (p_hpa / 1013.25) ** 0.190263)
    if p_hpa >= 54.7489:  # isothermal 216.65 K to 20 km
        return 11000.0 - 287.053 * 216.65 / _G * math.log(p_hpa / 226.32)
    # above 20 km, +1 K/km: enough for the physical-range check of the upper levels
    return 20000.0 + 216.65 / 0.001 * ((p_hpa / 54.7489) ** (-0.001 * 287.053 / _G) - 1.0)


def _level_range(quantity: str, level: int) -> tuple[float, float]:
    """A physically generous valid range for ``quantity`` at ``level`` hPa (for range QC).

    Geopotential: the standard-atmosphere height ± (1.5 km + 20 %): real heights of a level
    stray a few hundred metres to ~2 km from it. Winds: stratospheric jets reach 150–200 m/s.
    """
    if quantity == "z":
        h = _isa_height(float(level))
        margin = 1500.0 + 0.2 * h
        return _G * (h - margin), _G * (h + margin)
    if quantity == "t":
        return 150.0, 350.0
    if quantity in ("u", "v"):
        return (-150.0, 150.0) if level >= 100 else (-250.0, 250.0)
    if quantity == "q":
        return 0.0, 0.05
    if quantity == "r":
        return 0.0, 1.5  # supersaturation over ice is reported (ERA5 r reaches ~1.5)
    return -100.0, 100.0  # omega, Pa/s


def level_variable(quantity: str, level: int) -> str:
    """Canonical name of ``quantity`` (``t``, ``z``, ``u``, ``v``, ``q``, ``r``, ``w``) at
    ``level`` hPa: ``t500``, ``z1000``, ``u250`` ... (the WeatherBench2/GraphCast spelling).

    Where that spelling is already a single-level variable (``u10``/``v10`` are the 10 m
    wind) the level name takes an ``hpa`` suffix: u at 10 hPa is ``u10hpa``.
    """
    name = f"{quantity}{int(level)}"
    return f"{name}hpa" if name in _SINGLE_LEVEL else name


_LEVEL_NAME = re.compile(r"^([tzuvqrw])(\d{1,4})(hpa)?$")


def parse_level_variable(name: str) -> tuple[str, int] | None:
    """``("t", 500)`` for ``"t500"``, ``("u", 10)`` for ``"u10hpa"``; None for a name that is
    not a pressure-level variable (``"u10"``, the 10 m wind, among them)."""
    m = _LEVEL_NAME.match(name)
    if m is None or int(m.group(2)) not in PRESSURE_LEVELS:
        return None
    quantity, level = m.group(1), int(m.group(2))
    return (quantity, level) if level_variable(quantity, level) == name else None


def _level_table() -> list[Variable]:
    named = {v.name for v in _TABLE}  # hand-tuned entries above win
    out = []
    for q, (std, units, desc) in LEVEL_QUANTITIES.items():
        for level in PRESSURE_LEVELS:
            name = level_variable(q, level)
            if name not in named:
                lo, hi = _level_range(q, level)
                out.append(Variable(name, std, units, lo, hi, f"{desc} at {level} hPa"))
    return out


VARIABLES: dict[str, Variable] = {v.name: v for v in [*_TABLE, *_level_table()]}


class UnknownVariableError(StratocastError, KeyError):
    """A variable name (from a config or a file) that is not canonical."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0])


def get(name: str) -> Variable:
    try:
        return VARIABLES[name]
    except KeyError:
        known = ", ".join(sorted(VARIABLES))
        raise UnknownVariableError(
            f"unknown variable {name!r}; canonical variables are: {known}"
        ) from None
