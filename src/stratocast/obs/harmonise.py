"""Derived canonical variables every source shares: wind components, humidity, MSL pressure.

Deriving at decode time (per report) keeps the store uniform: a METAR and a SYNOP both carry
u10/v10 and rh2m, whatever the format reported natively. A derived value inherits a decode-time
flag of any value it was computed from, so a flagged input never leaks through a derivative.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

# Which inputs each derived variable is computed from (used for flag propagation here and
# for quarantine propagation in QC).
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "u10": ("ws10", "wd10"),
    "v10": ("ws10", "wd10"),
    "rh2m": ("t2m", "d2m"),
    "q2m": ("d2m", "sp"),
}
# msl is derived only when a report has none (reduced from station pressure, reduce_to_msl).
# Decode-time flags know which msl was derived and propagate to it; QC does not, because
# stored rows carry no provenance and a *reported* msl must not be withdrawn because its
# report's t2m failed a check. A derived msl still faces QC's own msl range/step checks.
DECODE_DERIVED_FROM: dict[str, tuple[str, ...]] = {**DERIVED_FROM, "msl": ("sp", "t2m")}

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
    column = t2m + LAPSE * elevation / 2.0
    if d2m is not None:
        column += CH * saturation_vapour_pressure(d2m) / 100.0
    return sp * 10.0 ** (KP * elevation / column)


def derive(
    values: dict[str, float],
    flags: dict[str, tuple[str, str]] | None = None,
    elevation: float | None = None,
) -> dict[str, float]:
    """Add derived variables to ``values`` in place; ``flags`` gains those of their inputs.

    u10/v10 from ws10 and wd10; rh2m from t2m and d2m; q2m from d2m and sp; and msl from sp
    and t2m (:func:`reduce_to_msl`) when the report has no msl and ``elevation`` (station
    height, m; None or NaN when unknown) is given.

    Direction is meteorological (where the wind blows from, degrees clockwise from north), so
    u = -ws·sin(wd), v = -ws·cos(wd). A calm (0 m/s) gives u = v = 0.
    """
    reported_msl = "msl" in values
    ws = values.get("ws10")
    wd = values.get("wd10")
    if ws is not None and wd is not None:
        values["u10"], values["v10"] = wind_components(ws, wd)
    t = values.get("t2m")
    td = values.get("d2m")
    if t is not None and td is not None:
        values["rh2m"] = saturation_vapour_pressure(td) / saturation_vapour_pressure(t)
    sp = values.get("sp")
    if td is not None and sp is not None:
        e = saturation_vapour_pressure(td)
        values["q2m"] = _EPS * e / (sp - (1.0 - _EPS) * e)
    if not reported_msl and elevation is not None and sp is not None and t is not None:
        msl = reduce_to_msl(sp, t, elevation, td)
        if msl is not None:
            values["msl"] = msl
    if flags:
        skip = ("msl",) if reported_msl else ()
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
