"""Native gridded-field names and units → canonical variables (``stratocast.vocab.variables``).

One table per naming convention, because the same short name means different things in
different conventions (``t`` is 2 m temperature nowhere, but is upper-air temperature in both
GRIB and ERA5 NetCDF; ``gh`` is geopotential *height* in metres, not geopotential).

A key is ``(native name, level)``: ``level`` is the pressure level in hPa for upper-air fields
and ``None`` for single-level ones. GRIB keys use ``(shortName, typeOfLevel, level)`` because
a GRIB shortName alone is ambiguous (GFS ``t`` exists on a dozen level types).

Units: the conversion is chosen from the *native units string* in the file, not assumed from
the name, so a file that stores ``t2m`` in degC (or ``z`` as geopotential height in m) still
lands in SI. An entry lists the native units it accepts; anything else is kept out with a
logged note rather than converted wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass

#: standard gravity (WMO), m s-2: geopotential height (gpm) → geopotential
G0 = 9.80665


@dataclass(frozen=True)
class Linear:
    """``si = native * factor + offset``; kept as numbers so it applies lazily to dask arrays."""

    factor: float
    offset: float = 0.0


def _scale(factor: float, offset: float = 0.0) -> Linear:
    return Linear(factor, offset)


def _norm_units(units: str) -> str:
    """Collapse the many spellings of one unit (``m s**-1``, ``m s-1``, ``m/s``)."""
    u = units.strip().replace("**", "").replace("^", "")
    return " ".join(u.split())


#: canonical variable → {normalised native units → converter to the canonical SI unit}
_UNITS: dict[str, dict[str, Linear]] = {
    "temperature": {
        "K": _scale(1.0),
        "kelvin": _scale(1.0),
        "degC": _scale(1.0, 273.15),
        "C": _scale(1.0, 273.15),
        "deg C": _scale(1.0, 273.15),
        "Celsius": _scale(1.0, 273.15),
    },
    "wind": {"m s-1": _scale(1.0), "m/s": _scale(1.0), "ms-1": _scale(1.0)},
    "pressure": {"Pa": _scale(1.0), "hPa": _scale(100.0), "mb": _scale(100.0)},
    "geopotential": {
        "m2 s-2": _scale(1.0),
        "m2/s2": _scale(1.0),
        "gpm": _scale(G0),  # geopotential height → geopotential
        "m": _scale(G0),
    },
    "height": {"m": _scale(1.0), "gpm": _scale(1.0)},
}

_KIND: dict[str, str] = {
    "t2m": "temperature",
    "d2m": "temperature",
    "t850": "temperature",
    "u10": "wind",
    "v10": "wind",
    "msl": "pressure",
    "sp": "pressure",
    "z500": "geopotential",
    "orography": "height",
}


def converter(canonical: str, native_units: str) -> Linear | None:
    """The native→SI converter for ``canonical`` given the file's units, or None if unknown."""
    kind = _KIND.get(canonical)
    if kind is None:
        return None
    return _UNITS[kind].get(_norm_units(native_units))


@dataclass(frozen=True)
class Target:
    canonical: str
    #: units assumed when the file carries none (GRIB always carries them via ecCodes)
    default_units: str


# ---- GRIB (ecCodes shortName, typeOfLevel, level) -----------------------------------------
# ECMWF (ERA5/IFS) and NCEP (GFS) names; ecCodes gives NCEP GRIB2 the same shortName for the
# same parameter where WMO defines one, so the tables overlap heavily.

GRIB: dict[tuple[str, str, int | None], Target] = {
    ("2t", "surface", 0): Target("t2m", "K"),  # ECMWF encodes 2 m as "surface"
    ("2t", "heightAboveGround", 2): Target("t2m", "K"),  # NCEP/GRIB2
    ("2d", "surface", 0): Target("d2m", "K"),
    ("2d", "heightAboveGround", 2): Target("d2m", "K"),
    ("10u", "surface", 0): Target("u10", "m s-1"),
    ("10u", "heightAboveGround", 10): Target("u10", "m s-1"),
    ("10v", "surface", 0): Target("v10", "m s-1"),
    ("10v", "heightAboveGround", 10): Target("v10", "m s-1"),
    ("msl", "surface", 0): Target("msl", "Pa"),
    ("msl", "meanSea", 0): Target("msl", "Pa"),
    ("prmsl", "meanSea", 0): Target("msl", "Pa"),  # NCEP "pressure reduced to MSL"
    ("sp", "surface", 0): Target("sp", "Pa"),
    ("z", "isobaricInhPa", 500): Target("z500", "m2 s-2"),
    ("gh", "isobaricInhPa", 500): Target("z500", "gpm"),  # NCEP geopotential height
    ("t", "isobaricInhPa", 850): Target("t850", "K"),
    ("orog", "surface", 0): Target("orography", "m"),  # NCEP: height in m
    ("z", "surface", 0): Target("orography", "m2 s-2"),  # ECMWF: surface geopotential
}

# ---- NetCDF (ERA5 CDS / grib_to_netcdf names; level in hPa or None) ------------------------
NETCDF: dict[tuple[str, int | None], Target] = {
    ("t2m", None): Target("t2m", "K"),
    ("d2m", None): Target("d2m", "K"),
    ("u10", None): Target("u10", "m s-1"),
    ("v10", None): Target("v10", "m s-1"),
    ("msl", None): Target("msl", "Pa"),
    ("sp", None): Target("sp", "Pa"),
    ("z", 500): Target("z500", "m2 s-2"),
    ("t", 850): Target("t850", "K"),
}

# ---- Zarr (WeatherBench2 / ARCO-ERA5 long names) -------------------------------------------
ZARR: dict[tuple[str, int | None], Target] = {
    ("2m_temperature", None): Target("t2m", "K"),
    ("2m_dewpoint_temperature", None): Target("d2m", "K"),
    ("10m_u_component_of_wind", None): Target("u10", "m s-1"),
    ("10m_v_component_of_wind", None): Target("v10", "m s-1"),
    ("mean_sea_level_pressure", None): Target("msl", "Pa"),
    ("surface_pressure", None): Target("sp", "Pa"),
    ("geopotential", 500): Target("z500", "m2 s-2"),
    ("temperature", 850): Target("t850", "K"),
    ("geopotential_at_surface", None): Target("orography", "m2 s-2"),
}
# orography in WB2 is surface *geopotential*; it needs ÷g, not ×g.
_UNITS["height"]["m2 s-2"] = _scale(1.0 / G0)

#: array-store names: the NetCDF and Zarr conventions merged (files mix them in practice)
ARRAY_NAMES: dict[tuple[str, int | None], Target] = {**NETCDF, **ZARR}

#: native names that carry upper-air fields on a level dimension
LEVELLED_NAMES = frozenset(name for name, level in ARRAY_NAMES if level is not None)
