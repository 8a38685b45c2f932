"""Per-source lexicons: native field and unit -> canonical variable, with the converter.

Conversion to SI happens here, at the edge, so nothing downstream sees knots or hPa. Each
source module declares its lexicon as a ``dict[str, LexiconEntry]``; the conformance suite
checks that every target is a canonical variable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

KNOT = 1852.0 / 3600.0  # m s-1, exact by definition of the nautical mile
KMH = 1.0 / 3.6
INHG = 3386.389  # Pa per inch of mercury (at 0 °C, standard gravity)
HPA = 100.0
ZERO_C = 273.15


def identity(x: float) -> float:
    return x


def celsius_to_kelvin(x: float) -> float:
    return x + ZERO_C


def knots_to_ms(x: float) -> float:
    return x * KNOT


def kmh_to_ms(x: float) -> float:
    return x * KMH


def hpa_to_pa(x: float) -> float:
    return x * HPA


def inhg_to_pa(x: float) -> float:
    return x * INHG


class LexiconEntry(NamedTuple):
    native: str  # the field as the format names it
    unit: str  # the native unit
    variable: str  # canonical variable (stratocast.vocab.variables)
    convert: Callable[[float], float]  # native unit -> SI
