"""Derived canonical variables every source shares: wind components, humidity, MSL pressure.

Deriving at decode time (per report) keeps the store uniform: a METAR and a SYNOP both carry
u10/v10 and rh2m, whatever the format reported natively. A derived value inherits a decode-time
flag of any value it was computed from, so a flagged input never leaks through a derivative.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import numpy as np

from stratocast.errors import StratocastError

# Which inputs each derived variable is computed from (used for flag propagation here and
# for quarantine propagation in QC).
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "u10": ("ws10", "wd10"),
    "v10": ("ws10", "wd10"),
    "rh2m": ("t2m", "d2m"),
    "q2m": ("d2m", "sp"),
}
# Two derivations hold only for some reports, so they are not in DERIVED_FROM (which QC applies
# to every row of a variable): msl is derived only when a report has none (reduced from
# station pressure, reduce_to_msl), and sp only where the format gives QNH instead of station
# pressure (METAR). Decode-time flags know which values were derived; QC recognises a derived
# msl by reproducing it (qc.propagate_derived), because stored rows carry no provenance and a
# *reported* msl must not be withdrawn because its report's t2m failed a check. Order
# matters: sp before msl, so a flag runs qnh -> sp -> msl.
DECODE_DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "sp": ("qnh",),
    **DERIVED_FROM,
    "msl": ("sp", "t2m"),
}

# Pressure reduction to mean sea level, the WMO formula for low stations (as given in the CIMO
# Guide, WMO-No. 8, chapter on pressure, from WMO's 1964 standardisation of reduction methods):
#     log10(p0 / p) = Kp·H / (T + a·H/2 + e·Ch)
# i.e. the hypsometric equation through a fictitious column whose mean virtual temperature is
# the station temperature warmed by the standard lapse rate over half the height.
KP = 0.0148275  # K per gpm: g / (R_d ln 10) with the geopotential metre of 9.8 J kg-1
LAPSE = 0.0065  # K per m: standard lapse rate of the fictitious column below the station
CH = 0.12  # K per hPa of vapour pressure: the column's virtual-temperature correction
# Above ~500 m the fictitious column between station and sea level dominates the error
# (0.2 hPa per K of column temperature at 500 m, growing with height) and WMO leaves the
# method to national practice; the reduction is not attempted higher up.
MSL_MAX_ELEVATION = 500.0  # m

_EPS = 0.622  # ratio of gas constants, dry air / water vapour

# ICAO standard atmosphere (ICAO Doc 7488) below 11 km: p = p0 (1 - L h / T0)^(g0 / (R L)).
P0 = 101325.0  # Pa at mean sea level
_ISA_K = 0.0065 / 288.15  # L / T0, per m
_ISA_EXP = 5.25588  # g0 / (R_d L)

# Plausibility of a station pressure against the station height. ``sp · P0 / p_std(h)`` is
# the station pressure carried to sea level through the standard atmosphere (what an
# altimeter set to it would read at sea level): at any height it moves with the weather as
# MSL pressure does. Outside [920, 1085] hPa it is no pressure a land station has measured
# (the world record high is 1084.8 hPa; below 920 hPa only in the cores of the very strongest
# tropical cyclones, whose coastal stations report MSL too, see below), so the value is a
# coding error or the station height is wrong; msl is never derived from it.
SP_SEA_LEVEL_MIN = 92000.0  # Pa
SP_SEA_LEVEL_MAX = 108500.0  # Pa
# Where the report has its own msl and the station is low enough for the reduction
# (MSL_MAX_ELEVATION), that msl is the better witness: sp carried to sea level must be within
# 5 hPa plus 1 hPa per 100 m of it (the standard atmosphere's column temperature differs from
# the actual by up to ~30 K, ~0.9 hPa per 100 m). A report that passes this check is not held
# to the absolute band, so a real cyclone with both groups stays.
SP_MSL_TOLERANCE = 500.0  # Pa at sea level
SP_MSL_TOLERANCE_PER_M = 1.0  # Pa per m of station height


def standard_pressure(elevation: float) -> float:
    """Pressure (Pa) of the ICAO standard atmosphere at ``elevation`` m (below 11 km)."""
    # stations repeat, and this runs for every report with a station pressure: memoise
    p = _STD_CACHE.get(elevation)
    if p is None:
        if len(_STD_CACHE) > 100_000:
            _STD_CACHE.clear()
        p = _STD_CACHE[elevation] = P0 * (1.0 - _ISA_K * elevation) ** _ISA_EXP
    return p


_STD_CACHE: dict[float, float] = {}


class PressureConversionError(StratocastError, ValueError):
    """A pressure conversion has no real, finite answer for its input (e.g. ``Q0000``)."""


def qnh_to_station_pressure(qnh_pa: float, elevation_m: float) -> float:
    """Invert an altimeter setting (QNH, Pa) to station pressure (Pa) at ``elevation_m``.

    The NWS altimeter-setting formula (hPa internally): QNH is station pressure carried to sea
    level through the ICAO standard atmosphere, so this is exact given the barometer height.
    Raises :class:`PressureConversionError` where the formula has no real answer (``Q0000``,
    or a QNH too low for the station height would give a complex power) or no finite one.
    """
    base = (qnh_pa / 100.0) ** 0.190263 - 8.417286e-5 * elevation_m
    if not base > 0.0:  # also NaN; a negative base gives a complex power
        raise PressureConversionError(
            f"altimeter setting {qnh_pa / 100.0:g} hPa has no station pressure at "
            f"{elevation_m:g} m (standard-atmosphere inversion undefined)"
        )
    sp = base ** (1.0 / 0.190263) * 100.0
    if not math.isfinite(sp):
        raise PressureConversionError(
            f"altimeter setting {qnh_pa / 100.0:g} hPa: station pressure {sp}"
        )
    return sp


def qnh_to_station_pressure_array(qnh: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """:func:`qnh_to_station_pressure` over arrays; NaN where it has no real answer."""
    with np.errstate(invalid="ignore"):
        base = (qnh / 100.0) ** 0.190263 - 8.417286e-5 * elevation
        return np.where(base > 0.0, np.abs(base) ** (1.0 / 0.190263) * 100.0, np.nan)


def reduce_to_msl_array(
    sp: np.ndarray, t2m: np.ndarray, elevation: np.ndarray, d2m: np.ndarray
) -> np.ndarray:
    """:func:`reduce_to_msl` over arrays (NaN d2m: no vapour term; NaN above 500 m)."""
    tc = d2m - 273.15
    e = np.where(np.isnan(d2m), 0.0, 610.94 * np.exp(17.625 * tc / (tc + 243.04)))
    column = t2m + LAPSE * elevation / 2.0 + CH * e / 100.0
    out = sp * 10.0 ** (KP * elevation / column)
    return np.where(elevation <= MSL_MAX_ELEVATION, out, np.nan)


def station_pressure_problems(sp: np.ndarray, elevation: np.ndarray, msl: np.ndarray) -> np.ndarray:
    """:func:`station_pressure_problem` over arrays: True where sp is implausible (``msl``
    NaN where the report has no msl of its own; unknown heights are never judged)."""
    known = (elevation >= -500.0) & (elevation <= 9000.0)
    h = np.where(known, elevation, 0.0)
    sea = sp * P0 / (P0 * (1.0 - _ISA_K * h) ** _ISA_EXP)
    witness = ~np.isnan(msl) & (h <= MSL_MAX_ELEVATION)
    tol = SP_MSL_TOLERANCE + SP_MSL_TOLERANCE_PER_M * h
    with np.errstate(invalid="ignore"):
        bad = np.where(
            witness,
            ~(np.abs(sea - msl) <= tol),
            ~((sea >= SP_SEA_LEVEL_MIN) & (sea <= SP_SEA_LEVEL_MAX)),
        )
    return known & bad


def station_pressure_problem(sp: float, elevation: float, msl: float | None = None) -> str | None:
    """Why ``sp`` (Pa) cannot be the station pressure of a station ``elevation`` m high; None if
    it can (or the height is unknown). ``msl``: the report's own MSL pressure, if any."""
    if not -500.0 <= elevation <= 9000.0:  # unknown (NaN) or no station height: no verdict
        return None
    std = standard_pressure(elevation)
    sea = sp * P0 / std
    if msl is not None and elevation <= MSL_MAX_ELEVATION:
        tol = SP_MSL_TOLERANCE + SP_MSL_TOLERANCE_PER_M * elevation
        if abs(sea - msl) <= tol:
            return None
        return (
            f"station pressure {sp / 100:.1f} hPa at {elevation:g} m is {sea / 100:.1f} hPa at sea "
            f"level by the standard atmosphere, {abs(sea - msl) / 100:.1f} hPa from the report's "
            f"own msl {msl / 100:.1f} hPa (tolerance {tol / 100:.1f} hPa)"
        )
    if SP_SEA_LEVEL_MIN <= sea <= SP_SEA_LEVEL_MAX:
        return None
    return (
        f"station pressure {sp / 100:.1f} hPa implausible at {elevation:g} m: the standard "
        f"atmosphere gives {std / 100:.1f} hPa there, i.e. {sea / 100:.1f} hPa at sea level, "
        f"outside [{SP_SEA_LEVEL_MIN / 100:g}, {SP_SEA_LEVEL_MAX / 100:g}] hPa"
    )


def saturation_vapour_pressure(t_kelvin: float) -> float:
    """Saturation vapour pressure over water in Pa (Magnus form, Alduchov & Eskridge 1996)."""
    # reported temperatures are quantised (0.1 K or 1 K), so a memo hits almost always
    e = _SVP_CACHE.get(t_kelvin)
    if e is None:
        if len(_SVP_CACHE) > 100_000:
            _SVP_CACHE.clear()
        tc = t_kelvin - 273.15
        e = _SVP_CACHE[t_kelvin] = 610.94 * math.exp(17.625 * tc / (tc + 243.04))
    return e


_SVP_CACHE: dict[float, float] = {}


def wind_components(speed: float, direction: float) -> tuple[float, float]:
    """(u, v) in m s-1 from a speed and the meteorological direction (blowing from, degrees).

    ``+ 0.0`` turns -0.0 (from a southerly or a calm) into 0.0 for tidy output.
    """
    rad = math.radians(direction)
    return -speed * math.sin(rad) + 0.0, -speed * math.cos(rad) + 0.0


def reduce_to_msl(
    sp: float, t2m: float, elevation: float, d2m: float | None = None
) -> float | None:
    """Mean-sea-level pressure (Pa) from station pressure ``sp`` (Pa) at ``elevation`` (m).

    The WMO reduction through a fictitious air column from the station down to sea level,
    whose mean temperature is the station temperature ``t2m`` (K) warmed at 0.0065 K/m over
    half the height, plus a virtual-temperature term from the dewpoint's vapour pressure
    when ``d2m`` is known::

        log10(msl / sp) = 0.0148275 · H / (T + 0.0065 · H / 2 + 0.12 · e[hPa])

    Limits: only for stations at most ``MSL_MAX_ELEVATION`` (500 m) high, else None; it uses
    the current temperature where some services use a 12-hour mean, so a strong diurnal
    cycle or an inversion at a 500 m station can shift it by ~1 hPa. Elevation is taken as
    the barometer height in (geopotential) metres; the difference is below 0.1 % here.
    """
    if not elevation <= MSL_MAX_ELEVATION:  # also rejects NaN
        return None
    return _reduce(sp, t2m, elevation, None if d2m is None else saturation_vapour_pressure(d2m))


def _reduce(sp: float, t2m: float, elevation: float, e: float | None) -> float:
    # reduce_to_msl given the vapour pressure e (Pa), which derive() has already computed
    column = t2m + LAPSE * elevation / 2.0
    if e is not None:
        column += CH * e / 100.0
    return sp * 10.0 ** (KP * elevation / column)


def derive(
    values: dict[str, float],
    flags: dict[str, tuple[str, str]] | None = None,
    elevation: float | None = None,
) -> dict[str, float]:
    """Add derived variables to ``values`` in place; ``flags`` gains those of their inputs.

    u10/v10 from ws10 and wd10; rh2m from t2m and d2m; q2m from d2m and sp; and msl from sp
    and t2m (:func:`reduce_to_msl`) when the report has no msl and ``elevation`` (station
    height, m; None or NaN when unknown) is given. msl is derived only from a station pressure
    consistent with the station height (:func:`station_pressure_problem`); an inconsistent sp
    is flagged ``consistency`` with the reason in ``flags`` (when given; QC applies the same
    rule to every stored sp, so a caller without flags still gets it quarantined).

    Direction is meteorological (where the wind blows from, degrees clockwise from north), so
    u = -ws·sin(wd), v = -ws·cos(wd). A calm (0 m/s) gives u = v = 0.
    """
    reported_msl = values.get("msl")
    ws = values.get("ws10")
    wd = values.get("wd10")
    if ws is not None and wd is not None:
        values["u10"], values["v10"] = wind_components(ws, wd)
    t = values.get("t2m")
    td = values.get("d2m")
    e = None if td is None else saturation_vapour_pressure(td)  # vapour pressure, Pa
    if t is not None and e is not None:
        values["rh2m"] = e / saturation_vapour_pressure(t)
    sp = values.get("sp")
    if e is not None and sp is not None:
        values["q2m"] = _EPS * e / (sp - (1.0 - _EPS) * e)
    # a known, possible station height (not NaN: QC's position check judges the others)
    if sp is not None and elevation is not None and -500.0 <= elevation <= 9000.0:
        # fast path of station_pressure_problem (the common, plausible case), per report
        std = _STD_CACHE.get(elevation) or standard_pressure(elevation)
        sea = sp * P0 / std
        problem = None
        if not (
            SP_SEA_LEVEL_MIN <= sea <= SP_SEA_LEVEL_MAX
            if reported_msl is None or elevation > MSL_MAX_ELEVATION
            else abs(sea - reported_msl) <= SP_MSL_TOLERANCE + SP_MSL_TOLERANCE_PER_M * elevation
        ):
            problem = station_pressure_problem(sp, elevation, reported_msl)
        if problem is not None:
            if flags is not None and "sp" not in flags:
                flags["sp"] = ("consistency", problem)
        elif reported_msl is None and t is not None and elevation <= MSL_MAX_ELEVATION:
            values["msl"] = _reduce(sp, t, elevation, e)
    if flags:
        skip = ("msl",) if reported_msl is not None else ()
        propagate_flags(values, flags, skip)
    return values


def propagate_flags(
    values: Mapping[str, float],
    flags: dict[str, tuple[str, str]],
    reported: Collection[str] = (),
) -> None:
    """Flag each derived variable in ``values`` whose input is flagged.

    ``reported``: variables that are present but were reported, not derived (a SYNOP's own
    4PPPP msl), which a flagged t2m must not take down.
    """
    for derived, inputs in DECODE_DERIVED_FROM.items():
        if derived in values and derived not in flags and derived not in reported:
            for name in inputs:
                if name in flags:
                    flags[derived] = ("derived", f"derived from flagged {name}: {flags[name][1]}")
                    break
