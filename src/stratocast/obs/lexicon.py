"""Per-source lexicons: native field and unit -> canonical variable, with the converter.

Conversion to SI happens here, at the edge, so nothing downstream sees knots or hPa. Each
source module declares its lexicon as a ``dict[str, LexiconEntry]``; the conformance suite
checks that every target is a canonical variable.

An entry states the field's *native unit* as the format writes it (``"kt"``, ``"0.1 degC"``,
``"inHg"``); its converter is derived from that unit by Pint (:mod:`stratocast.vocab.units`),
once, as a cached affine map. An explicit converter is still accepted (the fourth argument),
for fields whose decoding is not a unit change; its unit must still convert to the
variable's canonical unit, so a wrong unit label fails at import, naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

from stratocast.vocab.units import Affine, UnitConversionError, converter, to_canonical
from stratocast.vocab.variables import VARIABLES

# Conversion factors, worked out by Pint from its unit definitions (not typed in by hand).
# Readers use them in their decode loops, where a multiply beats any call.
KNOT = converter("kt", "m s-1").scale  # 1852/3600 m s-1, exact by the nautical mile
KMH = converter("km/h", "m s-1").scale
INHG = converter("inHg", "Pa").scale  # conventional inch of mercury, 3386.3886 Pa
HPA = converter("hPa", "Pa").scale
ZERO_C = converter("degC", "K").offset  # 273.15 K

# Kept for callers of the former hand-written converters; each is a Pint-derived Affine.
celsius_to_kelvin: Affine = converter("degC", "K")
knots_to_ms: Affine = converter("kt", "m s-1")
kmh_to_ms: Affine = converter("km/h", "m s-1")
hpa_to_pa: Affine = converter("hPa", "Pa")
inhg_to_pa: Affine = converter("inHg", "Pa")

# sample native values an explicit converter must map as the unit says (see validate_lexicon)
_PROBES = (0.0, 1.0, 250.0)


def identity(x: float) -> float:
    return x


class _Entry(NamedTuple):
    native: str  # the field as the format names it
    unit: str  # the native unit, as the format writes it (Pint syntax, UDUNITS exponents)
    variable: str  # canonical variable (stratocast.vocab.variables)
    convert: Callable[[float], float]  # native unit -> SI


class LexiconEntry(_Entry):
    """One lexicon line. ``LexiconEntry(native, unit, variable[, convert])``.

    Without ``convert`` the converter is derived from ``unit`` (Pint, cached). Either way
    the unit is checked against the variable's canonical unit here, at construction, so a
    lexicon with an unconvertible unit fails when its module is imported.
    """

    __slots__ = ()

    def __new__(
        cls,
        native: str,
        unit: str,
        variable: str,
        convert: Callable[[float], float] | None = None,
    ) -> LexiconEntry:
        try:
            derived = to_canonical(unit, variable)
        except UnitConversionError as err:
            raise UnitConversionError(
                f"lexicon entry {native!r} -> {variable!r}: native unit {unit!r} does not "
                f"convert to the canonical unit: {err}"
            ) from None
        return super().__new__(cls, native, unit, variable, derived if convert is None else convert)

    @property
    def derived(self) -> bool:
        """True when the converter is the one Pint derived from ``unit``."""
        return self.convert == to_canonical(self.unit, self.variable)


def _disagreement(entry: LexiconEntry) -> str | None:
    """Where an explicit converter contradicts its declared unit, a description; else None."""
    expected = to_canonical(entry.unit, entry.variable)
    for x in _PROBES:
        got, want = entry.convert(x), expected(x)
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9):
            return f"convert({x:g}) = {got!r} but {x:g} {entry.unit} is {want!r}"
    return None


def validate_lexicon(source: str, lexicon: Mapping[str, LexiconEntry]) -> None:
    """Check a source's lexicon: canonical targets, convertible units, honest converters.

    Raises :class:`UnitConversionError` (a ValueError) naming the source, the native key and
    both units. Sources call it at import; a registry may call it at registration.
    """
    for key, entry in lexicon.items():
        where = f"source {source!r}, lexicon key {key!r} ({entry.native})"
        if entry.variable not in VARIABLES:
            raise UnitConversionError(f"{where}: {entry.variable!r} is not a canonical variable")
        canonical = VARIABLES[entry.variable].units
        try:
            to_canonical(entry.unit, entry.variable)
        except UnitConversionError as err:
            raise UnitConversionError(
                f"{where}: native unit {entry.unit!r} does not convert to {canonical!r} "
                f"({entry.variable}): {err}"
            ) from None
        if not entry.derived:
            bad = _disagreement(entry)
            if bad is not None:
                raise UnitConversionError(
                    f"{where}: explicit converter disagrees with its unit {entry.unit!r} -> "
                    f"{canonical!r}: {bad}"
                )
