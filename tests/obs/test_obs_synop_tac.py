"""SYNOP TAC (FM-12) reader against the BUFR encodings that accompany a bulletin (read with
ecCodes directly), against reports decoded by hand, and on corrections and bad reports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import eccodes
import pytest

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.synop_tac import (
    SynopTacSource,
    bbb_of,
    catalogue_from_wmo_csv,
    is_correction,
)
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.testing.sources import SourceTests

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
TAC = DATA / "synop_tac"
needs_data = pytest.mark.skipif(
    not TAC.is_dir(), reason=f"real sample data not found at {TAC} (../shared/data)"
)
ROMANIA = TAC / "example_with_bufr" / "A_SMRO01YRBK211200_C_EDZW_20220321120500_12524785.txt"
WX = TAC / "gts_data" / "WX.00"


def _cuba() -> StationCatalogue:
    return catalogue_from_wmo_csv(TAC / "gts_data" / "station_list.csv", west_positive=True)


@needs_data
class TestSynopTacConformance(SourceTests):
    @pytest.fixture
    def source(self) -> SynopTacSource:
        return SynopTacSource()

    @pytest.fixture
    def sample_file(self) -> Path:
        return ROMANIA

    @pytest.fixture
    def catalogue(self) -> StationCatalogue:
        return catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")


@needs_data
class TestSynopTacConformanceGts(TestSynopTacConformance):
    """The Cuban GTS file: NIL and malformed reports, no date in its name."""

    @pytest.fixture
    def source(self) -> SynopTacSource:
        return SynopTacSource(reference_time="2023-01-31T06:00")

    @pytest.fixture
    def sample_file(self) -> Path:
        return WX

    @pytest.fixture
    def catalogue(self) -> StationCatalogue:
        return _cuba()


def _bufr_reference(path: Path) -> dict[str, float | None]:
    keys = {
        "airTemperature": "t2m",
        "dewpointTemperature": "d2m",
        "pressureReducedToMeanSeaLevel": "msl",
        "nonCoordinatePressure": "sp",
        "windSpeed": "ws10",
        "windDirection": "wd10",
    }
    with open(path, "rb") as f:
        h = eccodes.codes_bufr_new_from_file(f)
        try:
            eccodes.codes_set(h, "unpack", 1)
            out: dict[str, float | None] = {}
            for key, var in keys.items():
                v = float(eccodes.codes_get_array(h, key)[0])
                missing = v <= -1e99 or v == eccodes.CODES_MISSING_LONG
                out[var] = None if missing else v
            block = eccodes.codes_get(h, "blockNumber")
            number = eccodes.codes_get(h, "stationNumber")
            out["wmo"] = block * 1000 + number
            y, m, d, hh = (int(eccodes.codes_get(h, k)) for k in ("year", "month", "day", "hour"))
            out["time"] = datetime(y, m, d, hh, tzinfo=UTC).timestamp()
        finally:
            eccodes.codes_release(h)
    return out


@needs_data
def test_romanian_bulletin_matches_reference_bufr() -> None:
    catalogue = catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")
    records = list(SynopTacSource().read(ROMANIA, catalogue))
    reports = {r.station_id: r for r in records if isinstance(r, Report)}
    assert not [r for r in records if isinstance(r, Rejection)]
    bufr_files = sorted((TAC / "example_with_bufr" / "reference_bufr").glob("*.bin"))
    assert len(bufr_files) == len(reports) == 23
    tolerance = {"t2m": 0.1, "d2m": 0.1, "msl": 10.0, "sp": 10.0, "ws10": 1.0, "wd10": 0.0}
    compared = 0
    for path in bufr_files:
        ref = _bufr_reference(path)
        r = reports[f"{int(ref['wmo'] or 0):05d}"]
        assert r.time.timestamp() == ref["time"]
        for var, tol in tolerance.items():
            want = ref[var]
            if want is None:
                assert var not in r.values, (path.name, var)
                continue
            if var == "wd10" and ref["ws10"] == 0.0:
                want = 0.0  # BUFR says calm as direction 0 too
            assert r.values[var] == pytest.approx(want, abs=tol + 1e-9), (path.name, var)
            compared += 1
    assert compared > 120  # nearly every station carries all six


@needs_data
def test_gts_reports_decoded_by_hand() -> None:
    recs = {r.report_id: r for r in SynopTacSource("2023-01-31T06:00").read(WX, _cuba())}
    # AAXX 31001: day 31, 00 UTC, iw=1 (m/s)
    # 78310 01470 70303 10250 20214 30094 40104 ...
    #   70303: N=7 dd=03 (30 deg) ff=03 m/s; 10250: +25.0 C; 20214: +21.4 C;
    #   30094: 1009.4 hPa; 40104: 1010.4 hPa
    r = recs["WX.00:4"]
    assert isinstance(r, Report) and r.station_id == "78310"
    assert r.time == datetime(2023, 1, 31, 0, tzinfo=UTC)
    assert r.values["wd10"] == 30.0 and r.values["ws10"] == 3.0
    assert r.values["t2m"] == pytest.approx(298.15)
    assert r.values["d2m"] == pytest.approx(294.55)
    assert r.values["sp"] == pytest.approx(100940.0)
    assert r.values["msl"] == pytest.approx(101040.0)
    # the station list stores western longitudes as positive: Cabo San Antonio is at -84.95
    assert (r.lat, r.lon) == pytest.approx((21.86666667, -84.95))
    # 78349 11/58 81801 10270 20234 39995 40105: dd=18 (180 deg) ff=01, +27.0 C, +23.4 C,
    #   999.5 hPa (no leading 0), 1010.5 hPa; a southerly: v = +1, u = 0
    r = recs["WX.00:30"]
    assert isinstance(r, Report) and r.station_id == "78349"
    assert (r.values["wd10"], r.values["ws10"]) == (180.0, 1.0)
    assert r.values["t2m"] == pytest.approx(300.15)
    assert r.values["d2m"] == pytest.approx(296.55)
    assert r.values["sp"] == pytest.approx(99950.0)
    assert r.values["msl"] == pytest.approx(101050.0)
    assert r.values["v10"] == pytest.approx(1.0) and r.values["u10"] == pytest.approx(0.0)
    # 78342 11362 70000 10218 20208 39268 48448: calm, +21.8 C, +20.8 C, 926.8 hPa;
    #   48448 is 4a3hhh (850 hPa at 1448 gpm), not MSL pressure
    r = recs["WX.00:116"]
    assert isinstance(r, Report) and r.station_id == "78342"
    assert (r.values["ws10"], r.values["wd10"], r.values["u10"]) == (0.0, 0.0, 0.0)
    assert r.values["t2m"] == pytest.approx(294.95)
    assert r.values["d2m"] == pytest.approx(293.95)
    assert r.values["sp"] == pytest.approx(92680.0)
    assert "msl" not in r.values


@needs_data
def test_gts_nil_and_malformed_rejected_rest_lands() -> None:
    records = list(SynopTacSource("2023-01-31T06:00").read(WX, _cuba()))
    rejected = {r.report_id: r for r in records if isinstance(r, Rejection)}
    assert rejected["WX.00:20"].check == "nil" and rejected["WX.00:20"].station_id == "78328"
    assert rejected["WX.00:98"].check == "nil"
    # "78370 78370 11540 ...": the station number sent twice
    bad = rejected["WX.00:148"]
    assert bad.check == "malformed_group" and "'78370'" in bad.reason
    assert "78370 78370 11540" in bad.raw
    assert sum(isinstance(r, Report) for r in records) == len(records) - len(rejected)
    assert len(rejected) == 3 and len(records) > 60


def test_synthetic_bulletin_errors_and_units(tmp_path: Path) -> None:
    catalogue = StationCatalogue(
        [Station(f"0100{i}", 60.0, 10.0 + i, 100.0, wmo_id=f"0100{i}") for i in range(1, 6)]
    )
    text = (
        "ZCZC 001\r\n"
        "SMNO01 ENMI 051200 RRA\r\n"
        "AAXX 05124\r\n"
        "01001 11560 82010 1A025 20012 30123 40156=\r\n"  # 1A025: sign is not a digit
        "01002 NIL=\r\n"
        "01003 11560 83099 00120 11025 29085 30123 40156=\r\n"  # ff=99 -> 00fff: 120 kt
        "01004 11560 80110\r\n 10000 21003 3//// 4////=\r\n"
        "99999 11560 80110 10000=\r\n"  # not in the catalogue
        "NNNN\r\n"
    )
    path = tmp_path / "A_SMNO01ENMI051200RRA_C_ENMI_20240305120300_1.txt"
    path.write_text(text)
    recs = list(SynopTacSource().read(path, catalogue))
    assert len(recs) == 5
    bad, nil, r3, r4, unknown = recs
    assert isinstance(bad, Rejection) and isinstance(nil, Rejection)
    assert isinstance(unknown, Rejection)
    assert bad.check == "malformed_group" and "1A025" in bad.reason
    assert nil.check == "nil" and nil.station_id == "01002"
    assert unknown.check == "unknown_station" and unknown.station_id == "99999"
    assert isinstance(r3, Report) and isinstance(r4, Report)
    assert r3.time == datetime(2024, 3, 5, 12, tzinfo=UTC)
    # iw=4: knots; 83099 00120 -> 300 deg, 120 kt; 11025 -> -2.5 C; 29085 -> RH 85 %
    assert r3.values["ws10"] == pytest.approx(120 * 1852 / 3600)
    assert r3.values["wd10"] == 300.0
    assert r3.values["t2m"] == pytest.approx(270.65)
    assert r3.values["rh2m"] == pytest.approx(0.85) and "d2m" not in r3.values
    # 80110 -> 10 deg, 10 kt; 10000 -> 0.0 C; 21003 -> -0.3 C; pressures missing
    assert r4.values["t2m"] == pytest.approx(273.15) and r4.values["d2m"] == pytest.approx(272.85)
    assert "sp" not in r4.values and "msl" not in r4.values
    assert r4.report_id == f"{path.name}:7:RRA" and bbb_of(r4.report_id) == "RRA"
    assert not is_correction(r4.report_id)  # RRx is a delayed report, not a correction
    assert r4.raw.startswith("SMNO01 ENMI 051200 RRA | AAXX 05124 | 01004 11560 80110 10000")


@needs_data
def test_wis2box_corrections_recognised() -> None:
    catalogue = catalogue_from_wmo_csv(TAC / "wis2box_data" / "station_list.csv")
    files = sorted((TAC / "wis2box_data").glob("*.txt"))
    seen: dict[str, int] = {}
    for path in files:
        letter = "CCB" if "CCB_" in path.name else "CCA" if "CCA_" in path.name else None
        for r in SynopTacSource().read(path, catalogue):
            assert bbb_of(r.report_id) == letter, r.report_id
            assert is_correction(r.report_id) == (letter is not None)
            if letter:
                assert f" {letter} | AAXX" in r.raw
            seen[letter or ""] = seen.get(letter or "", 0) + 1
    assert seen == {"CCA": 3, "CCB": 2, "": 8 * 23}  # every report decodes
    # SMRO01 YRBK 171200 CCA / AAXX 17121 / 15108 01/92 92514 11028 21028 37901 48315 ...
    path = TAC / "wis2box_data" / "A_SMRO01YRBK171200CCA_C_EDZW_20230117174401_51649529.txt"
    (r,) = SynopTacSource().read(path, catalogue)
    assert isinstance(r, Report) and r.station_id == "15108"
    assert r.time == datetime(2023, 1, 17, 12, tzinfo=UTC)
    # 92514: dd=25 (250 deg) ff=14 m/s; 11028: -2.8 C; 21028: -2.8 C; 37901: 790.1 hPa;
    # 48315: 850 hPa geopotential, not MSL
    assert (r.values["wd10"], r.values["ws10"]) == (250.0, 14.0)
    assert r.values["t2m"] == pytest.approx(270.35) and r.values["d2m"] == pytest.approx(270.35)
    assert r.values["sp"] == pytest.approx(79010.0) and "msl" not in r.values
    # the report it corrects: same station and time in the plain 171200 bulletin
    original = TAC / "wis2box_data" / "A_SMRO01YRBK171200_C_EDZW_20230117120502_51362175.txt"
    same = [
        o
        for o in SynopTacSource().read(original, catalogue)
        if o.station_id == "15108" and o.time == r.time
    ]
    assert len(same) == 1 and not is_correction(same[0].report_id)


@needs_data
def test_west_positive_catalogue() -> None:
    as_stored = catalogue_from_wmo_csv(TAC / "gts_data" / "station_list.csv")
    cuba = _cuba()
    havana = cuba.by_wmo("78325")
    assert havana is not None and havana.lon < -80.0 and 20.0 < havana.lat < 24.0
    stored = as_stored.by_wmo("78325")
    assert stored is not None and stored.lon == -havana.lon


def test_needs_catalogue_and_date(tmp_path: Path) -> None:
    path = tmp_path / "bulletin.txt"
    path.write_text("AAXX 05121\n01001 11560 82010 10025=\n")
    with pytest.raises(ValueError, match="StationCatalogue"):
        list(SynopTacSource().read(path, None))
    from stratocast.obs.base import SourceFileError

    with pytest.raises(SourceFileError, match="reference_time"):
        list(SynopTacSource().read(path, StationCatalogue()))
    not_synop = tmp_path / "x_20240101000000_.txt"
    not_synop.write_text("METAR KJFK 011200Z 00000KT=\n")
    with pytest.raises(SourceFileError, match="not a SYNOP"):
        list(SynopTacSource().read(not_synop, StationCatalogue()))


def test_missing_terminator_is_not_silently_merged(tmp_path: Path) -> None:
    catalogue = StationCatalogue([Station("01004", 60.0, 10.0, 5.0, wmo_id="01004")])
    path = tmp_path / "A_SMNO01ENMI051200_C_ENMI_20240305120300_1.txt"
    # 01004's "=" was lost: 01005's groups must not be read as part of 01004's report
    path.write_text("AAXX 05121\n01004 11560 80110 10000 40156\n01005 11560 80110 10000=\n")
    (rec,) = SynopTacSource().read(path, catalogue)
    assert isinstance(rec, Rejection) and rec.check == "malformed_group"
    assert "'01005'" in rec.reason and rec.station_id == "01004"
