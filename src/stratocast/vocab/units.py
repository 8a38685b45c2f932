"""Unit conversion to the canonical SI units, computed once by Pint and applied as an affine map.

Every conversion a weather source needs (knots, km/h, inHg, hPa, °C, °F, tenths of a unit,
geopotential metres) is affine: ``si = native * scale + offset``. Pint works out ``scale``
and ``offset`` once per (source unit, target unit) pair, from its own unit definitions, in
exact rational arithmetic, and the result is cached; decoding then costs one multiply-add
per value or per array (~0.14 µs a call) and never calls Pint, whose Quantity conversion
costs ~40 µs a value, against readers that decode >100k reports/s.

Unit strings are written as the sources write them, plus two conveniences Pint lacks:

* UDUNITS/CF exponents (``m s-1``, ``kg m-2 s-1``, ``m2 s-2``), the spelling of the canonical
  table (:mod:`stratocast.vocab.variables`);
* a leading scale factor for formats that store integers in tenths: ``"0.1 degC"``,
  ``"1/10 hPa"``, ``"0.1 m s-1"`` (ISD-Lite, SYNOP). The factor applies to the *value*, so
  ``"0.1 degC"`` maps 215 to 21.5 °C = 294.65 K (Pint's own ``0.1 degC`` would be ambiguous
  for an offset unit).

``gpm`` (geopotential metre, WMO: 1 gpm = 9.80665 m2 s-2) is added to Pint's registry.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, overload

import numpy as np
import numpy.typing as npt

from stratocast.errors import StratocastError
from stratocast.vocab.variables import VARIABLES

if TYPE_CHECKING:
    import pint

FloatArray = npt.NDArray[np.float64]

# a UDUNITS exponent glued to a unit symbol: "s-1", "m2" (but not a bare number like "1")
_EXPONENT = re.compile(r"(?<![\w.])([A-Za-z_]+)(-?\d+)(?![\w.])")
# a leading scale factor separated from the unit by blanks: "0.1 degC", "1/10 hPa", "10 m"
_FACTOR = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?:/\d+)?)\s+(\S.*)$")
_DEFINITIONS = (
    "geopotential_metre = 9.80665 * m ** 2 / s ** 2 = gpm",
    "@alias knot = kts",
)


class UnitConversionError(StratocastError, ValueError):
    """A unit string Pint cannot parse, or one not convertible to the requested unit."""


@dataclass(frozen=True, slots=True)
class Affine:
    """``si = x * scale / divisor + offset``: a converter for floats and numpy arrays alike.

    ``divisor`` is used when the exact scale is 1/n (tenths, per cent): dividing by 10 gives
    the correctly rounded tenth (-35 -> -3.5) where multiplying by the inexact 0.1 may not.
    """

    scale: float
    offset: float = 0.0
    divisor: float = 1.0

    @overload
    def __call__(self, x: float) -> float: ...

    @overload
    def __call__(self, x: FloatArray) -> FloatArray: ...

    def __call__(self, x: float | FloatArray) -> float | FloatArray:
        return x * self.scale / self.divisor + self.offset

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.divisor == 1.0 and self.offset == 0.0

    @property
    def factor(self) -> float:
        """The multiplicative part as one number (``scale / divisor``)."""
        return self.scale / self.divisor


def _udunits_to_pint(unit: str) -> str:
    return _EXPONENT.sub(r"\1**\2", unit)


@functools.cache
def registry() -> pint.UnitRegistry:
    """The shared Pint registry (built on first use: building costs ~0.2 s)."""
    import pint  # deferred: only unit conversion set-up needs it, not the decode loops

    # exact rational arithmetic: scales come out as fractions (463/900 for knots), so a 1/n
    # scale is recognised as such and every float is rounded once, at the end
    ureg: pint.UnitRegistry = pint.UnitRegistry(
        preprocessors=[_udunits_to_pint], non_int_type=Fraction
    )
    for definition in _DEFINITIONS:
        ureg.define(definition)
    return ureg


def split_factor(unit: str) -> tuple[Fraction, str]:
    """(scale factor, bare unit) of a unit string: ``"0.1 degC"`` -> (1/10, ``"degC"``)."""
    m = _FACTOR.match(unit)
    if m is None:
        return Fraction(1), unit.strip()
    num, _, den = m.group(1).partition("/")
    factor = Fraction(num) / Fraction(den or 1)
    if factor == 0:
        raise UnitConversionError(f"unit {unit!r} has a zero scale factor")
    return factor, m.group(2).strip()


def _dimensions(dims: object) -> str:
    """``[length] [time]^-1``; Pint's own formatter fails on the Fraction exponents we use."""
    items = dims.items() if isinstance(dims, Mapping) else ()
    text = " ".join(k if v == 1 else f"{k}^{v}" for k, v in items)
    return text or "dimensionless"


@functools.cache
def converter(source_unit: str, target_unit: str) -> Affine:
    """The cached affine map from ``source_unit`` to ``target_unit``, worked out by Pint.

    Raises :class:`UnitConversionError` naming both units when a unit is unknown or the two
    have different dimensions.
    """
    import pint

    factor, bare = split_factor(source_unit)
    ureg = registry()
    try:
        zero = ureg.Quantity(Fraction(0), bare)
        one = ureg.Quantity(Fraction(1), bare)
        target_zero = ureg.Quantity(Fraction(0), target_unit)
        # offset (°C -> K: 273.15) from converting 0; scale from converting a *difference*
        # (a delta unit for °C/°F), so an offset never leaks into the scale.
        target_delta = (ureg.Quantity(Fraction(1), target_unit) - target_zero).units
        offset = Fraction(zero.to(target_unit).magnitude)
        scale = Fraction((one - zero).to(target_delta).magnitude)
    except pint.errors.DimensionalityError as err:
        raise UnitConversionError(
            f"cannot convert {source_unit!r} to {target_unit!r}: different dimensions "
            f"({_dimensions(err.dim1)} vs {_dimensions(err.dim2)})"
        ) from None
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError) as err:
        raise UnitConversionError(
            f"cannot convert {source_unit!r} to {target_unit!r}: unknown unit ({err})"
        ) from None
    except (AssertionError, AttributeError, TypeError, ValueError) as err:
        # Pint's parser raises these (even AssertionError) for malformed strings like "m s-"
        raise UnitConversionError(
            f"cannot convert {source_unit!r} to {target_unit!r}: unparsable unit ({err})"
        ) from None
    scale *= factor  # exact: "0.1 hPa" -> Pa is 10, not 0.1 * 100 rounded twice
    if scale.numerator == 1 and scale.denominator > 1:
        return Affine(1.0, float(offset), float(scale.denominator))
    return Affine(float(scale), float(offset))


def to_canonical(source_unit: str, variable: str) -> Affine:
    """The converter from ``source_unit`` to the canonical SI unit of ``variable``."""
    try:
        target = VARIABLES[variable].units
    except KeyError:
        raise UnitConversionError(
            f"unknown canonical variable {variable!r} (see stratocast.vocab.variables)"
        ) from None
    return converter(source_unit, target)
