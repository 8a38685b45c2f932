"""Unit conversion via Pint (stratocast.vocab.units) and the lexicons built on it.

Reference factors are written out from their definitions (nautical mile 1852 m; inch of
mercury = 25.4 mm of mercury at 13595.1 kg m-3 under standard gravity; 0 °C = 273.15 K),
not taken from Pint or from the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from stratocast.obs.base import Report
from stratocast.obs.lexicon import LexiconEntry, identity, validate_lexicon
from stratocast.obs.sources import (
    aircraft_bufr,
    hirs_bufr,
    isd_lite,
    metar,
    synop_bufr,
    synop_tac,
    temp_bufr,
)
from stratocast.obs.stations import StationCatalogue
from stratocast.vocab.units import Affine, UnitConversionError, converter, to_canonical

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()

KNOT = 1852.0 / 3600.0
INHG = 0.0254 * 13595.1 * 9.80665  # 3386.38864 Pa


@pytest.mark.parametrize(
    ("unit", "target", "native", "si"),
    [
        ("kt", "m s-1", 10.0, 10 * KNOT),
        ("knot", "m s-1", 49.0, 49 * KNOT),
        ("km/h", "m s-1", 36.0, 10.0),
        ("m/s", "m s-1", 7.5, 7.5),
        ("inHg", "Pa", 30.03, 30.03 * INHG),
        ("0.01 inHg", "Pa", 3003.0, 30.03 * INHG),
        ("hPa", "Pa", 1013.25, 101325.0),
        ("1/10 hPa", "Pa", 10132.0, 101320.0),
        ("0.1 hPa", "Pa", 10132.0, 101320.0),
        ("degC", "K", -3.5, 269.65),
        ("0.1 degC", "K", 215.0, 294.65),
        ("degF", "K", 32.0, 273.15),
        ("degF", "K", -40.0, 233.15),
        ("%", "1", 57.0, 0.57),
        ("gpm", "m2 s-2", 1500.0, 1500.0 * 9.80665),
        ("10 degree", "degree", 27.0, 270.0),
        ("g/kg", "kg kg-1", 12.0, 0.012),
        ("m s-1", "m s-1", 3.0, 3.0),
    ],
)
def test_converter_matches_definitions(unit: str, target: str, native: float, si: float) -> None:
    assert converter(unit, target)(native) == pytest.approx(si, rel=1e-12, abs=1e-9)


def test_tenths_are_exact_divisions() -> None:
    # -35 tenths of °C is -3.5 °C exactly: a division by 10, not a multiply by inexact 0.1
    assert converter("0.1 degC", "K")(-35.0) == -3.5 + 273.15
    assert converter("%", "1")(57.0) == 57 / 100
    assert converter("0.1 hPa", "Pa") == Affine(10.0)


def test_converter_is_affine_cached_and_vectorised() -> None:
    c = converter("degC", "K")
    assert c is converter("degC", "K")  # Pint ran once for this pair
    assert (c.scale, c.offset) == (1.0, 273.15)
    x = np.array([-40.0, 0.0, 21.5])
    np.testing.assert_allclose(c(x), x + 273.15, rtol=0, atol=1e-12)
    assert to_canonical("kt", "ws10") == converter("kt", "m s-1")


@pytest.mark.parametrize(
    ("unit", "target", "words"),
    [
        ("kt", "K", ["'kt'", "'K'", "different dimensions", "[length]", "[temperature]"]),
        ("bogons", "m s-1", ["unknown unit", "bogons"]),
        ("m s-", "m s-1", ["'m s-'"]),
        ("0 hPa", "Pa", ["zero scale"]),
    ],
)
def test_bad_units_raise_clearly(unit: str, target: str, words: list[str]) -> None:
    with pytest.raises(UnitConversionError) as err:
        converter(unit, target)
    for w in words:
        assert w in str(err.value)


def test_to_canonical_unknown_variable() -> None:
    with pytest.raises(UnitConversionError, match="unknown canonical variable 'snow'"):
        to_canonical("m", "snow")


def test_lexicon_entry_derives_converter_from_unit() -> None:
    e = LexiconEntry("ff", "kt", "ws10")
    assert e.derived
    assert e.convert(10.0) == pytest.approx(10 * KNOT)
    native, unit, variable, convert = e  # still a 4-tuple
    assert (native, unit, variable) == ("ff", "kt", "ws10") and convert is e.convert


def test_lexicon_entry_keeps_explicit_converter() -> None:
    # the four-argument form synop_bufr uses: unit already SI, explicit identity
    e = LexiconEntry("airTemperature", "K", "t2m", identity)
    assert e.convert is identity
    assert e.derived is False
    validate_lexicon("test", {"airTemperature": e})


def test_lexicon_entry_rejects_unconvertible_unit_at_construction() -> None:
    with pytest.raises(UnitConversionError) as err:
        LexiconEntry("ff (wind speed)", "hPa", "ws10")
    msg = str(err.value)
    assert "'ff (wind speed)'" in msg and "'hPa'" in msg and "ws10" in msg


def test_validate_lexicon_names_source_and_key() -> None:
    lying = LexiconEntry("TT", "degC", "t2m", identity)  # says °C, converts nothing
    with pytest.raises(UnitConversionError) as err:
        validate_lexicon("mysource", {"TT": lying})
    msg = str(err.value)
    assert "'mysource'" in msg and "'TT'" in msg and "'degC'" in msg and "'K'" in msg
    bad_var = LexiconEntry("x", "K", "t2m")._replace(variable="t2metre")
    with pytest.raises(UnitConversionError, match="'t2metre' is not a canonical variable"):
        validate_lexicon("mysource", {"x": bad_var})


@pytest.mark.parametrize(
    "module", [metar, synop_tac, isd_lite, temp_bufr, aircraft_bufr, hirs_bufr, synop_bufr]
)
def test_every_reader_lexicon_validates(module: object) -> None:
    validate_lexicon(module.__name__, module.LEXICON)  # type: ignore[attr-defined]


def test_readers_state_native_units() -> None:
    assert synop_tac.LEXICON["1snTTT"].unit == "0.1 degC"
    assert synop_tac.LEXICON["dd"].unit == "10 degree"
    assert isd_lite.LEXICON["sea level pressure"].unit == "0.1 hPa"
    assert metar.LEXICON["QNH_A"].unit == "0.01 inHg"
    assert temp_bufr.LEXICON["nonCoordinateGeopotentialHeight@500hPa"].convert(5500.0) == (
        pytest.approx(5500.0 * 9.80665)
    )


@pytest.mark.skipif(not (DATA / "metar").is_dir(), reason=f"no sample data at {DATA}")
def test_metar_altimeter_inhg_against_hand_value(airports: StationCatalogue) -> None:
    """KMIA ... 23/19 A3003: 30.03 inHg of mercury, converted with the definition above."""
    src = metar.MetarSource(reference_time=datetime(2024, 9, 8, 14, tzinfo=UTC))
    recs = [r for r in src.read(DATA / "metar" / "collective.txt", airports)]
    kmia = [r for r in recs if isinstance(r, Report) and r.station_id.endswith("KMIA")]
    assert kmia, "KMIA not decoded from collective.txt"
    assert kmia[0].values["qnh"] == pytest.approx(30.03 * INHG, rel=1e-12)
