"""Derived canonical variables every source shares: wind components and humidity.

Deriving at decode time (per report) keeps the store uniform: a METAR and a SYNOP both carry
u10/v10 and rh2m, whatever the format reported natively. A derived value inherits a decode-time
flag of any value it was computed from, so a flagged input never leaks through a derivative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Which inputs each derived variable is computed from (used for flag propagation here and
# for quarantine propagation in QC).
DERIVED_FROM: dict[str, tuple[str, ...]] = {
    "u10": ("ws10", "wd10"),
    "v10": ("ws10", "wd10"),
    "rh2m": ("t2m", "d2m"),
    "q2m": ("d2m", "sp"),
}

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


def derive(
    values: dict[str, float], flags: dict[str, tuple[str, str]] | None = None
) -> dict[str, float]:
    """Add u10/v10 (from ws10, wd10), rh2m (t2m, d2m) and q2m (d2m, sp) to ``values`` in place.

    Direction is meteorological (where the wind blows from, degrees clockwise from north), so
    u = -ws·sin(wd), v = -ws·cos(wd). A calm (0 m/s) gives u = v = 0.
    """
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
    if flags:
        propagate_flags(values, flags)
    return values


def propagate_flags(values: Mapping[str, float], flags: dict[str, tuple[str, str]]) -> None:
    for derived, inputs in DERIVED_FROM.items():
        if derived in values and derived not in flags:
            for name in inputs:
                if name in flags:
                    flags[derived] = ("derived", f"derived from flagged {name}: {flags[name][1]}")
                    break
