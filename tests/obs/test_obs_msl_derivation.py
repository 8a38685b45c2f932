"""Issue 11 item 4: msl derived only from a station pressure that fits the station height,
and the source value's QC carried into the derived msl.

Built from the real Romanian SYNOP bulletin (synop_tac/example_with_bufr, 2022-03-21 12 UTC)
and the real DWD SYNOP BUFR file: 15260 SIBIU (450 m) reports ``39831 40376`` (983.1 hPa
station, 1037.6 hPa MSL). Mutated to the issue's case, ``38616`` and no 4PPPP group, the
reader used to reduce 861.6 hPa to a stored msl of 909.6 hPa.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from stratocast.obs.base import Report
from stratocast.obs.harmonise import (
    SP_SEA_LEVEL_MIN,
    reduce_to_msl,
    standard_pressure,
    station_pressure_problem,
)
from stratocast.obs.qc import QCConfig, derived_pressure, run_qc
from stratocast.obs.sources.synop_tac import SynopTacSource, catalogue_from_wmo_csv
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.table import collect

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
TAC = DATA / "synop_tac" / "example_with_bufr"
BULLETIN = TAC / "A_SMRO01YRBK211200_C_EDZW_20220321120500_12524785.txt"
pytestmark = pytest.mark.skipif(
    not BULLETIN.is_file(), reason=f"real sample data not found at {TAC} (../shared/data)"
)
REF = datetime(2022, 3, 21, 12, tzinfo=UTC)


def _catalogue() -> StationCatalogue:
    return catalogue_from_wmo_csv(TAC / "station_list.csv")


def _mutated(tmp_path: Path, old: str, new: str) -> Path:
    text = BULLETIN.read_bytes().decode("latin-1")
    assert text.count(old) == 1, old
    path = tmp_path / BULLETIN.name
    path.write_bytes(text.replace(old, new).encode("latin-1"))
    return path


def _sibiu(path: Path) -> Report:
    recs = [r for r in SynopTacSource(reference_time=REF).read(path, _catalogue())]
    (rec,) = [r for r in recs if isinstance(r, Report) and r.station_id.endswith("15260")]
    return rec


def test_real_sibiu_report_is_consistent() -> None:
    rec = _sibiu(BULLETIN)
    assert rec.elevation == 450.0
    assert rec.values["sp"] == 98310.0 and rec.values["msl"] == 103760.0
    assert station_pressure_problem(98310.0, 450.0, 103760.0) is None


def test_implausible_sp_gives_no_msl_and_is_quarantined(tmp_path: Path) -> None:
    path = _mutated(tmp_path, "39831 40376", "38616")
    rec = _sibiu(path)
    assert rec.values["sp"] == 86160.0
    # what the reader stored before: the WMO reduction of 861.6 hPa at 450 m and 8.3 degC,
    # 909.6 hPa (the 907.7 hPa: the same case at 457 m, another temperature)
    old = reduce_to_msl(86160.0, rec.values["t2m"], 450.0, rec.values["d2m"])
    assert old is not None and old / 100 == pytest.approx(909.6, abs=0.1)
    assert "msl" not in rec.values
    # 861.6 hPa at 450 m is 909 hPa carried to sea level by the standard atmosphere
    assert 86160.0 * 101325.0 / standard_pressure(450.0) < SP_SEA_LEVEL_MIN
    out = run_qc(collect([rec], "synop_tac").values, QCConfig())
    sp = out[out["variable"] == "sp"].iloc[0]
    assert sp["check"] == "consistency"
    assert "861.6 hPa implausible at 450 m" in sp["reason"]
    # q2m is computed from the bad sp: it goes with it
    assert out.loc[out["variable"] == "q2m", "check"].eq("derived").all()
    assert out.loc[out["variable"] == "t2m", "check"].isna().all()


def test_sp_disagreeing_with_own_msl_is_quarantined(tmp_path: Path) -> None:
    path = _mutated(tmp_path, "39831 40376", "38616 40376")
    rec = _sibiu(path)
    assert rec.values["msl"] == 103760.0  # reported: kept
    out = run_qc(collect([rec], "synop_tac").values, QCConfig())
    by_var = out.set_index("variable")
    assert by_var.loc["sp", "check"] == "consistency"
    assert "from the report's own msl 1037.6 hPa" in by_var.loc["sp", "reason"]
    assert pd.isna(by_var.loc["msl", "check"])  # a reported msl is not withdrawn


def test_derived_msl_goes_with_quarantined_temperature(tmp_path: Path) -> None:
    # Sibiu with an impossible temperature (1snTTT 10999: 99.9 degC, QC range), once without
    # its 4PPPP group (msl reduced with that temperature) and once as reported
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    derived = _sibiu(_mutated(tmp_path / "a", "10083 21093 39831 40376", "10999 21093 39831"))
    reported = _sibiu(
        _mutated(tmp_path / "b", "10083 21093 39831 40376", "10999 21093 39831 40376")
    )
    assert "msl" in derived.values and reported.values["msl"] == 103760.0
    table = collect([derived], "synop_tac").values
    both = pd.concat([table, collect([reported], "synop_tac", key_offset=1).values])
    both = both.reset_index(drop=True)
    is_derived = derived_pressure(both)
    assert both.loc[is_derived, ["variable", "report_key"]].values.tolist() == [["msl", 0]]
    out = run_qc(both, QCConfig())
    assert out.loc[out["variable"] == "t2m", "check"].eq("range").all()
    msl = out[out["variable"] == "msl"].set_index("report_key")
    assert msl.loc[0, "check"] == "derived"  # reduced with the bad temperature
    assert msl.loc[0, "reason"] == "derived from quarantined t2m"
    assert pd.isna(msl.loc[1, "check"])  # the reported 4PPPP does not depend on it


def test_no_false_alarm_on_real_synops() -> None:
    """Every real SYNOP with a station pressure in the shared data (TAC bulletins of Romania
    and Cuba, the BUFR files): none is judged inconsistent with its station height."""
    from stratocast.obs.sources.synop_bufr import SynopBufrSource

    reports: list[Report] = []
    for folder, ref in (
        ("example_with_bufr", REF),
        ("wis2box_data", datetime(2023, 1, 18, 12, tzinfo=UTC)),
        ("gts_data", datetime(2023, 1, 31, 12, tzinfo=UTC)),
    ):
        cat = catalogue_from_wmo_csv(DATA / "synop_tac" / folder / "station_list.csv")
        for f in sorted((DATA / "synop_tac" / folder).iterdir()):
            if f.is_file() and f.suffix != ".csv":
                src = SynopTacSource(reference_time=ref)
                reports += [r for r in src.read(f, cat) if isinstance(r, Report)]
    for f in sorted((DATA / "bufr").glob("*.bufr")):
        if "temp" not in f.name and "aircraft" not in f.name:
            reports += [r for r in SynopBufrSource().read(f) if isinstance(r, Report)]
    with_sp = [r for r in reports if "sp" in r.values]
    assert len(with_sp) > 500
    for r in with_sp:
        assert station_pressure_problem(r.values["sp"], r.elevation, r.values.get("msl")) is None
    out = run_qc(collect(with_sp, "synop").values, QCConfig())
    assert not out.loc[out["variable"] == "sp", "check"].eq("consistency").any()


def test_qc_catches_a_stored_bad_derivation_from_real_bufr() -> None:
    """A reader that still derived msl from a bad sp (or rows stored before this check): QC
    quarantines the sp and the msl reproduced from it. A real DWD BUFR report of a station
    between 300 and 500 m, its pressure replaced by the issue's 861.6 hPa."""
    from stratocast.obs.sources.synop_bufr import SynopBufrSource

    bufr = DATA / "bufr" / "dwd_synop_20210516T12.bufr"
    recs = [r for r in SynopBufrSource().read(bufr) if isinstance(r, Report)]
    rec = next(
        r for r in recs if 300.0 <= r.elevation <= 500.0 and "sp" in r.values and "t2m" in r.values
    )
    values = {k: v for k, v in rec.values.items() if k != "msl"}
    values["sp"] = 86160.0
    bad_msl = reduce_to_msl(86160.0, values["t2m"], rec.elevation, values.get("d2m"))
    assert bad_msl is not None
    values["msl"] = bad_msl
    assert 85000.0 < bad_msl < 110000.0  # inside msl's valid range: range QC passes it
    table = collect([rec._replace(values=values)], "synop_bufr").values
    out = run_qc(table, QCConfig()).set_index("variable")
    assert out.loc["sp", "check"] == "consistency"
    assert out.loc["msl", "check"] == "derived"
    assert out.loc["msl", "reason"] == "derived from quarantined sp"


METAR = DATA / "metar"


@pytest.mark.skipif(not METAR.is_dir(), reason=f"real METAR samples not found at {METAR}")
def test_metar_quarantine_flows_qnh_to_sp_to_msl(airports: StationCatalogue) -> None:
    """KMIA (2.8 m) in collective.txt has A3003 and no SLP: sp is the QNH's inversion and msl
    its reduction. A quarantined qnh (here a flag set before QC, as a reader's decode-time
    flag is) takes both with it; a quarantined t2m takes the msl."""
    from stratocast.obs.sources.metar import MetarSource

    src = MetarSource(reference_time=datetime(2024, 9, 8, 14, tzinfo=UTC))
    recs = [r for r in src.read(METAR / "collective.txt", airports) if isinstance(r, Report)]
    kmia = next(r for r in recs if r.report_id == "collective.txt:7")
    assert {"qnh", "sp", "msl"} <= set(kmia.values)
    table = collect([kmia], "metar").values
    assert set(table.loc[derived_pressure(table), "variable"]) == {"sp", "msl"}
    for bad in ("qnh", "t2m"):
        t = table.copy()
        row = t["variable"] == bad
        t.loc[row, "check"], t.loc[row, "reason"] = "range", f"{bad} flagged for the test"
        out = run_qc(t, QCConfig()).set_index("variable")
        assert out.loc["msl", "check"] == "derived"
        if bad == "qnh":
            assert out.loc["sp", "reason"] == "derived from quarantined qnh"
            assert out.loc["msl", "reason"] == "derived from quarantined sp"
        else:
            assert pd.isna(out.loc["sp", "check"])
            assert out.loc["msl", "reason"] == "derived from quarantined t2m"


def test_real_bufr_station_at_459_m_reporting_861_hpa(tmp_path: Path) -> None:
    """The issue's case through the SYNOP BUFR reader: DWD station 10743 (459.1 m; real
    948.9 hPa station, 1005.0 hPa MSL) with its station pressure set to 861.6 hPa and its MSL
    missing, written back by ecCodes. Before, the reader stored the reduction, 910.0 hPa."""
    from stratocast.obs.sources.synop_bufr import SynopBufrSource

    eccodes = pytest.importorskip("eccodes")  # after the reader: its import order matters
    src = DATA / "bufr" / "dwd_synop_20210516T12.bufr"
    with open(src, "rb") as f:
        h = eccodes.codes_bufr_new_from_file(f)
    try:
        eccodes.codes_set(h, "unpack", 1)
        assert eccodes.codes_get_array(h, "stationNumber")[18] == 743
        eccodes.codes_set(h, "#19#nonCoordinatePressure", 86160.0)
        eccodes.codes_set(h, "#19#pressureReducedToMeanSeaLevel", eccodes.CODES_MISSING_DOUBLE)
        eccodes.codes_set(h, "pack", 1)
        path = tmp_path / "mutated.bufr"
        with open(path, "wb") as g:
            eccodes.codes_write(h, g)
    finally:
        eccodes.codes_release(h)
    recs = [r for r in SynopBufrSource().read(path) if isinstance(r, Report)]
    (rec,) = [r for r in recs if r.station_id == "10743"]
    assert rec.elevation == pytest.approx(459.1) and rec.values["sp"] == 86160.0
    old = reduce_to_msl(86160.0, rec.values["t2m"], rec.elevation, rec.values.get("d2m"))
    assert old is not None and old / 100 == pytest.approx(910.0, abs=0.1)
    assert "msl" not in rec.values
    check, reason = rec.flags["sp"]
    assert check == "consistency" and "861.6 hPa implausible at 459.1 m" in reason
    out = run_qc(collect(recs, "synop_bufr").values, QCConfig())
    bad = out[out["report_id"] == rec.report_id].set_index("variable")
    assert bad.loc["sp", "check"] == "consistency"
    # the other 24 stations of the message keep their pressures
    others = out[(out["report_id"] != rec.report_id) & out["variable"].isin(["sp", "msl"])]
    assert len(others) > 40 and others["check"].isna().all()
