"""Native gridded-field names and units → canonical variables (``stratocast.vocab.variables``).

One table per naming convention, because the same short name means different things in
different conventions (``t`` is 2 m temperature nowhere, but is upper-air temperature in both
GRIB and ERA5 NetCDF; ``gh`` is geopotential *height* in metres, not geopotential).

An entry is either

* a :class:`Target` — one canonical variable (``t2m``, or ``t500`` for a key naming level
  500), or
* a :class:`LevelTarget` — a pressure-level *quantity* (``t``, ``z``, ``u``, ``v``, ``q``,
  ``r``, ``w``) on any of ERA5's 37 standard levels; the canonical name comes from the level
  the file gives (``level_variable("t", 500)`` = ``t500``), so no level is dropped for lack of
  a table row.

A key is ``(native name, level)`` for array stores and ``(shortName, typeOfLevel, level)``
for GRIB (a GRIB shortName alone is ambiguous: GFS ``t`` exists on a dozen level types);
``level`` is the pressure level in hPa, or ``None`` for a single-level field and for a
:class:`LevelTarget` (which applies to every level).

Units: the conversion is chosen from the *native units string* in the file (the entry's
``default_units`` only when the file carries none) and worked out by Pint
(:mod:`stratocast.vocab.units`), so ``t2m`` in degC, ``r`` in % or ``z`` in gpm all land in SI.
A unit Pint cannot convert to the canonical one keeps the field out, reported with Pint's
reason. Geopotential and height are different quantities with the same data in practice
(geopotential height in m = geopotential / g0): that one physical rule is applied on top of
Pint, both ways.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from stratocast.errors import StratocastError
from stratocast.vocab.units import Affine, UnitConversionError, converter
from stratocast.vocab.variables import (
    LEVEL_QUANTITIES,
    PRESSURE_LEVELS,
    VARIABLES,
    level_variable,
    parse_level_variable,
)

#: standard gravity (WMO), m s-2: geopotential height (gpm) → geopotential
G0 = 9.80665

#: typeOfLevel of GRIB fields on pressure levels given in hPa (the one the tables use)
ISOBARIC = "isobaricInhPa"


class LexiconError(StratocastError, ValueError):
    """A lexicon entry that cannot work: unknown quantity, or units Pint cannot convert."""


@dataclass(frozen=True)
class Target:
    canonical: str
    #: units assumed when the file carries none (GRIB always carries them via ecCodes)
    default_units: str


@dataclass(frozen=True)
class LevelTarget:
    """A pressure-level quantity on every standard level: ``t`` at 500 hPa is ``t500``."""

    quantity: str
    default_units: str

    def at(self, level: int) -> Target:
        return Target(level_variable(self.quantity, level), self.default_units)


Entry = Target | LevelTarget
GribKey = tuple[str, str, int | None]
ArrayKey = tuple[str, int | None]
# What a caller may pass: Mapping is invariant in its key, so a literal dict whose keys all
# have an int level (or all None) must be accepted as such, not only as the union key type.
GribLexicon = (
    Mapping[GribKey, Entry]
    | Mapping[tuple[str, str, int], Entry]
    | Mapping[tuple[str, str, None], Entry]
)
ArrayLexicon = (
    Mapping[ArrayKey, Entry] | Mapping[tuple[str, int], Entry] | Mapping[tuple[str, None], Entry]
)

# Meteorological spellings Pint reads otherwise: "mb" is millibarn and "C" coulomb to Pint;
# ecCodes writes "(0 - 1)" and "Proportion" for fractions.
_ALIASES: dict[str, str] = {
    "mb": "millibar",
    "C": "degC",
    "deg C": "degC",
    "Celsius": "degC",
    "(0 - 1)": "1",
    "Fraction": "1",
    "Proportion": "1",
    "0-1": "1",
}


def standard_level(level_hpa: float) -> int | None:
    """``level_hpa`` as one of the 37 standard pressure levels (hPa), or None."""
    nearest = round(level_hpa)
    if abs(level_hpa - nearest) > 1e-6 or nearest not in PRESSURE_LEVELS:
        return None
    return int(nearest)


#: level names the vocabulary already gives to a single-level variable: ``u10``/``v10`` are the
#: 10 m wind, so u and v at 10 hPa have no canonical name of their own (yet) and stay out
CLASHES = frozenset(
    name
    for name, var in VARIABLES.items()
    if (parsed := parse_level_variable(name)) is not None
    and not var.description.endswith(f"at {parsed[1]} hPa")
)


def resolve_level(entry: LevelTarget, level_hpa: float) -> tuple[Target | None, str]:
    """The target of ``entry`` at ``level_hpa``, or None and why it has none."""
    std = standard_level(level_hpa)
    if std is None:
        return None, f"{level_hpa:g} hPa is not one of the 37 standard pressure levels"
    target = entry.at(std)
    if target.canonical in CLASHES:
        return None, (
            f"{entry.quantity} at {std} hPa would be {target.canonical!r}, which the "
            f"vocabulary gives to {VARIABLES[target.canonical].description!r}"
        )
    return target, ""


def si_converter(canonical: str, native_units: str) -> Affine:
    """The native→SI converter for ``canonical`` given the file's units string.

    Raises :class:`UnitConversionError` (Pint's reason) when the units do not convert.
    """
    var = VARIABLES[canonical]
    units = _ALIASES.get(native_units.strip(), native_units)
    try:
        return converter(units, var.units)
    except UnitConversionError:
        # geopotential height (m, gpm) ↔ geopotential (m2 s-2): the same field scaled by g0
        if var.standard_name == "geopotential":
            return _scaled(converter(units, "m"), G0, native_units, var.units)
        if var.standard_name == "surface_altitude":
            return _scaled(converter(units, "m2 s-2"), 1.0 / G0, native_units, var.units)
        raise


def _scaled(conv: Affine, by: float, native: str, target: str) -> Affine:
    if conv.offset != 0.0:  # no offset unit converts to a length or a geopotential
        raise UnitConversionError(f"cannot convert {native!r} to {target!r}")
    return Affine(conv.factor * by)


def validate(lexicon: GribLexicon | ArrayLexicon) -> None:
    """Check a (user) lexicon before any file is read: every quantity known, every
    ``default_units`` convertible by Pint, every level-named target on its key's level.

    A target outside the canonical table passes (its values are kept in native units)."""
    for key, entry in lexicon.items():
        level = key[-1]
        if isinstance(entry, LevelTarget):
            if entry.quantity not in LEVEL_QUANTITIES:
                raise LexiconError(
                    f"lexicon entry {key}: unknown pressure-level quantity {entry.quantity!r} "
                    f"(known: {', '.join(LEVEL_QUANTITIES)})"
                )
            if level is not None:
                raise LexiconError(
                    f"lexicon entry {key}: a LevelTarget applies to every level; give level None"
                )
            probe = entry.at(PRESSURE_LEVELS[0])
        else:
            probe = entry
            parsed = parse_level_variable(entry.canonical)
            # a GRIB key's level is in the units of its typeOfLevel: only isobaricInhPa is hPa
            in_hpa = len(key) == 2 or key[1] == ISOBARIC
            if (
                parsed is not None
                and entry.canonical not in CLASHES
                and in_hpa
                and level is not None
                and parsed[1] != level
            ):
                raise LexiconError(
                    f"lexicon entry {key}: target {entry.canonical!r} is at {parsed[1]} hPa "
                    f"but the key says {level} hPa"
                )
        if probe.canonical not in VARIABLES:
            continue
        try:
            si_converter(probe.canonical, probe.default_units)
        except UnitConversionError as err:
            raise LexiconError(f"lexicon entry {key} → {probe.canonical}: {err}") from None


# ---- pressure-level quantities: native name → quantity and its usual native units ---------
# GRIB shortNames (ecCodes, ECMWF and NCEP alike on isobaricInhPa)
_GRIB_LEVEL: dict[str, LevelTarget] = {
    "t": LevelTarget("t", "K"),
    "z": LevelTarget("z", "m2 s-2"),
    "gh": LevelTarget("z", "gpm"),  # NCEP geopotential height
    "u": LevelTarget("u", "m s-1"),
    "v": LevelTarget("v", "m s-1"),
    "q": LevelTarget("q", "kg kg-1"),
    "r": LevelTarget("r", "%"),
    "w": LevelTarget("w", "Pa s-1"),
}
# array stores: ERA5 CDS / cfgrib short names, WeatherBench2 / ARCO-ERA5 long names, CMIP
_ARRAY_LEVEL: dict[str, LevelTarget] = {
    **_GRIB_LEVEL,
    "temperature": LevelTarget("t", "K"),
    "geopotential": LevelTarget("z", "m2 s-2"),
    "u_component_of_wind": LevelTarget("u", "m s-1"),
    "v_component_of_wind": LevelTarget("v", "m s-1"),
    "specific_humidity": LevelTarget("q", "kg kg-1"),
    # WeatherBench2's derived relative_humidity is a fraction and carries no units attribute
    # (a units attribute, where present, wins over this default)
    "relative_humidity": LevelTarget("r", "1"),
    "vertical_velocity": LevelTarget("w", "Pa s-1"),
    "ta": LevelTarget("t", "K"),
    "zg": LevelTarget("z", "m"),  # CMIP geopotential height
    "ua": LevelTarget("u", "m s-1"),
    "va": LevelTarget("v", "m s-1"),
    "hus": LevelTarget("q", "1"),
    "hur": LevelTarget("r", "%"),
    "wap": LevelTarget("w", "Pa s-1"),
}

# ---- GRIB (ecCodes shortName, typeOfLevel, level) -----------------------------------------
# ECMWF (ERA5/IFS) and NCEP (GFS) names; ecCodes gives NCEP GRIB2 the same shortName for the
# same parameter where WMO defines one, so the tables overlap heavily.

GRIB: dict[GribKey, Entry] = {
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
    ("orog", "surface", 0): Target("orography", "m"),  # NCEP: height in m
    ("z", "surface", 0): Target("orography", "m2 s-2"),  # ECMWF: surface geopotential
    **{(short, ISOBARIC, None): entry for short, entry in _GRIB_LEVEL.items()},
}

# ---- NetCDF (ERA5 CDS / grib_to_netcdf names) ----------------------------------------------
NETCDF: dict[ArrayKey, Entry] = {
    ("t2m", None): Target("t2m", "K"),
    ("d2m", None): Target("d2m", "K"),
    ("u10", None): Target("u10", "m s-1"),
    ("v10", None): Target("v10", "m s-1"),
    ("msl", None): Target("msl", "Pa"),
    ("sp", None): Target("sp", "Pa"),
}

# ---- Zarr (WeatherBench2 / ARCO-ERA5 long names) -------------------------------------------
ZARR: dict[ArrayKey, Entry] = {
    ("2m_temperature", None): Target("t2m", "K"),
    ("2m_dewpoint_temperature", None): Target("d2m", "K"),
    ("10m_u_component_of_wind", None): Target("u10", "m s-1"),
    ("10m_v_component_of_wind", None): Target("v10", "m s-1"),
    ("mean_sea_level_pressure", None): Target("msl", "Pa"),
    ("surface_pressure", None): Target("sp", "Pa"),
    # WB2 orography is surface *geopotential*: si_converter divides by g0
    ("geopotential_at_surface", None): Target("orography", "m2 s-2"),
    ("10m_wind_speed", None): Target("ws10", "m s-1"),  # WB2 derived variable
}

#: array-store names: the NetCDF, Zarr and level conventions merged (files mix them)
ARRAY_NAMES: dict[ArrayKey, Entry] = {
    **NETCDF,
    **ZARR,
    **{(name, None): entry for name, entry in _ARRAY_LEVEL.items()},
}
