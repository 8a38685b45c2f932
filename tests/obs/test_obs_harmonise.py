"""Station pressure -> MSL reduction in stratocast.obs.harmonise, and derive() around it.

References: (1) the hypsometric equation written out here with textbook constants
(g = 9.80665 m s-2, R_d = 287.05 J kg-1 K-1, lapse 0.0065 K m-1 over half the height, virtual
temperature term 0.12 K hPa-1 of vapour pressure), independent of the module's log10 WMO form
and its Kp constant; (2) real Romanian SYNOPs that report both station pressure (3PoPoPoPo)
and MSL pressure (4PPPP), decoded by hand below.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratocast.obs.base import Report
from stratocast.obs.harmonise import (
    DECODE_DERIVED_FROM,
    DERIVED_FROM,
    MSL_MAX_ELEVATION,
    derive,
    reduce_to_msl,
)
from stratocast.obs.sources.synop_tac import SynopTacSource, catalogue_from_wmo_csv

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
TAC = DATA / "synop_tac" / "example_with_bufr"
needs_data = pytest.mark.skipif(not TAC.is_dir(), reason=f"real sample data not found at {TAC}")

G, RD = 9.80665, 287.05


def _textbook(sp: float, t: float, h: float, e_hpa: float = 0.0) -> float:
    return sp * math.exp(G * h / (RD * (t + 0.0065 * h / 2 + 0.12 * e_hpa)))


def _e_hpa(td: float) -> float:  # Magnus over water, hPa (Alduchov & Eskridge)
    c = td - 273.15
    return 6.1094 * math.exp(17.625 * c / (c + 243.04))


@pytest.mark.parametrize(
    ("h", "t"), [(0.0, 288.15), (100.0, 300.0), (300.0, 270.0), (500.0, 283.15)]
)
def test_reduction_matches_textbook_hypsometric(h: float, t: float) -> None:
    sp = 101325.0 * (1 - 0.0065 * h / 288.15) ** 5.255
    # the WMO log10 form with Kp = 0.0148275 K/gpm agrees with exp(g h / R Tm) to 0.1 hPa
    assert reduce_to_msl(sp, t, h) == pytest.approx(_textbook(sp, t, h), abs=10.0)
    assert reduce_to_msl(sp, t, h, 285.0) == pytest.approx(
        _textbook(sp, t, h, _e_hpa(285.0)), abs=10.0
    )


def test_worked_example_by_hand() -> None:
    # 950 hPa at 500 m, 10 °C, dry: Tm = 283.15 + 1.625 = 284.775 K;
    # exp(9.80665 * 500 / (287.05 * 284.775)) = exp(0.0599843) = 1.0618200 -> 1008.73 hPa
    assert reduce_to_msl(95000.0, 283.15, 500.0) == pytest.approx(100873.0, abs=10.0)


def test_no_reduction_above_limit_or_without_elevation() -> None:
    assert MSL_MAX_ELEVATION == 500.0
    assert reduce_to_msl(90000.0, 280.0, 500.1) is None
    assert reduce_to_msl(90000.0, 280.0, float("nan")) is None
    v = {"sp": 90000.0, "t2m": 280.0}
    assert "msl" not in derive(dict(v))  # elevation unknown
    assert "msl" not in derive(dict(v), elevation=float("nan"))
    assert "msl" not in derive(dict(v), elevation=1200.0)
    assert "msl" not in derive({"sp": 90000.0}, elevation=100.0)  # no temperature


def test_derive_adds_msl_only_when_absent() -> None:
    v = derive({"sp": 99000.0, "t2m": 290.0, "d2m": 280.0}, elevation=120.0)
    assert v["msl"] == pytest.approx(_textbook(99000.0, 290.0, 120.0, _e_hpa(280.0)), abs=5.0)
    reported = derive({"sp": 99000.0, "t2m": 290.0, "msl": 100500.0}, elevation=120.0)
    assert reported["msl"] == 100500.0


def test_msl_is_registered_as_derived_and_flags_propagate() -> None:
    assert DECODE_DERIVED_FROM["msl"] == ("sp", "t2m")
    # msl is derived only for some reports: QC recognises those by reproduction (qc.py)
    assert "msl" not in DERIVED_FROM
    flags = {"t2m": ("range", "t2m 400 K out of range")}
    derive({"sp": 99000.0, "t2m": 400.0}, flags, elevation=50.0)
    assert flags["msl"][0] == "derived" and "t2m" in flags["msl"][1]
    # a reported msl does not depend on the temperature: it keeps no flag
    flags = {"t2m": ("range", "t2m 400 K out of range")}
    derive({"sp": 99000.0, "t2m": 400.0, "msl": 100000.0}, flags, elevation=50.0)
    assert "msl" not in flags


# Hand-decoded from A_SMRO01YRBK211200_..._12524785.txt (2022-03-21 12 UTC); elevations from
# its station_list.csv. (station, elevation m, 1snTTT, 2snTdTdTd, 3PoPoPoPo, 4PPPP)
ROMANIAN = [
    ("15020 BOTOSANI", 161.0, 13.0, -7.5, 1017.7, 1037.7),
    ("15120 CLUJ-NAPOCA", 410.0, 10.1, -8.9, 987.4, 1037.6),
    ("15480 CONSTANTA", 12.8, 6.1, -3.9, 1033.1, 1034.9),
]


@pytest.mark.parametrize(("station", "h", "t", "td", "sp", "msl"), ROMANIAN)
def test_reduction_against_reported_msl(
    station: str, h: float, t: float, td: float, sp: float, msl: float
) -> None:
    """Within 1 hPa of the station's own MSL. Over the 233 reports below 500 m with both
    groups in the sample bulletins (Cuba, Romania) the mean difference is -0.27 hPa, ~-0.6 hPa
    at 400-450 m (national methods differ, e.g. a 12-hour mean temperature); the few beyond
    0.7 hPa (up to 4.8) are stations whose listed elevation is not their barometer height."""
    got = reduce_to_msl(sp * 100, t + 273.15, h, td + 273.15)
    assert got is not None
    assert got / 100 == pytest.approx(msl, abs=1.0), station


@needs_data
def test_synop_tac_derives_msl_when_4pppp_is_missing(tmp_path: Path) -> None:
    """Cluj's report with its 4PPPP group (40376 = 1037.6 hPa) removed: the reader reduces
    3PoPoPoPo (39874) itself, to within 1 hPa of the removed value."""
    text = (
        "SMRO01 YRBK 211200\n\nAAXX 21121\n\n"
        "15120 02998 00202 10101 21089 39874 57019 60001 333 55310 01465\n\n"
        "22742\n\n30284 60007 91005 91105=\n"
    )
    path = tmp_path / "cluj.txt"
    path.write_text(text)
    cat = catalogue_from_wmo_csv(TAC / "station_list.csv")
    src = SynopTacSource(reference_time=datetime(2022, 3, 21, 12, tzinfo=UTC))
    (rec,) = [r for r in src.read(path, cat) if isinstance(r, Report)]
    assert isinstance(rec, Report)
    assert rec.values["sp"] == 98740.0
    assert rec.values["msl"] / 100 == pytest.approx(1037.6, abs=1.0)


def test_qnh_inversion_refuses_what_has_no_answer() -> None:
    from stratocast.obs.harmonise import PressureConversionError, qnh_to_station_pressure

    with pytest.raises(PressureConversionError, match="0 hPa"):
        qnh_to_station_pressure(0.0, 300.0)  # Q0000: a complex power before
    with pytest.raises(PressureConversionError):
        qnh_to_station_pressure(float("nan"), 300.0)
    with pytest.raises(PressureConversionError):
        qnh_to_station_pressure(10000.0, 40000.0)  # no station pressure that high


def test_station_pressure_check_bounds() -> None:
    from stratocast.obs.harmonise import (
        SP_SEA_LEVEL_MAX,
        SP_SEA_LEVEL_MIN,
        standard_pressure,
        station_pressure_problem,
    )

    assert standard_pressure(0.0) == 101325.0
    assert standard_pressure(1500.0) == pytest.approx(84556.0, rel=1e-3)  # ICAO table
    for h in (0.0, 450.0, 1500.0, 3000.0):
        std = standard_pressure(h)
        inside = std * 0.5 * (SP_SEA_LEVEL_MIN + SP_SEA_LEVEL_MAX) / 101325.0
        assert station_pressure_problem(inside, h) is None
        assert station_pressure_problem(std * (SP_SEA_LEVEL_MIN - 100) / 101325.0, h)
        assert station_pressure_problem(std * (SP_SEA_LEVEL_MAX + 100) / 101325.0, h)
    assert station_pressure_problem(50000.0, float("nan")) is None  # unknown height: no verdict
    # with the report's own msl as witness (low stations): 5 hPa + 1 hPa per 100 m
    assert station_pressure_problem(98310.0, 450.0, 103760.0) is None
    assert "from the report's own msl" in str(station_pressure_problem(98310.0, 450.0, 101000.0))
    # a deep cyclone with both groups agreeing passes although below the absolute band
    assert station_pressure_problem(90500.0, 5.0, 90560.0) is None
    assert station_pressure_problem(90500.0, 5.0) is not None


def test_derive_skips_msl_from_implausible_sp_and_flags_it() -> None:
    flags: dict[str, tuple[str, str]] = {}
    v = derive({"sp": 86160.0, "t2m": 281.45}, flags, elevation=450.0)
    assert "msl" not in v
    assert flags["sp"][0] == "consistency" and "861.6 hPa implausible at 450 m" in flags["sp"][1]
    # without a flags dict the value stays unflagged here (QC applies the same rule) but no
    # msl is derived from it either
    assert "msl" not in derive({"sp": 86160.0, "t2m": 281.45}, elevation=450.0)
