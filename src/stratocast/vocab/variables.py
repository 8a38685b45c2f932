"""The canonical variable table: every stage speaks these names, in these SI units.

Source lexicons (one per source) map native names and units onto this table at the edge, so
nothing downstream ever sees knots, hPa or degrees Celsius.
"""

from __future__ import annotations

from dataclasses import dataclass


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

VARIABLES: dict[str, Variable] = {v.name: v for v in _TABLE}


def get(name: str) -> Variable:
    try:
        return VARIABLES[name]
    except KeyError:
        known = ", ".join(sorted(VARIABLES))
        raise KeyError(f"unknown variable {name!r}; canonical variables are: {known}") from None
