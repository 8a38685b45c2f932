"""SYNOP TAC (FM-12) reader against the BUFR encodings that accompany a bulletin (read with
ecCodes directly), against reports decoded by hand, and on corrections and bad reports."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import eccodes
import pytest

from stratocast.obs.base import Rejection, Report, TextTally, Unparsed, text_chars
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


def _read_all(
    source: SynopTacSource, path: Path, catalogue: StationCatalogue | None
) -> list[Report | Rejection | Unparsed]:
    """The reader's records of ``path`` without its closing TextTally, whose identity holds."""
    *records, tally = source.read(path, catalogue)
    assert isinstance(tally, TextTally) and tally.path == str(path)
    out: list[Report | Rejection | Unparsed] = []
    for r in records:
        assert isinstance(r, Report | Rejection | Unparsed), r
        out.append(r)
    held = sum(text_chars(r.text if isinstance(r, Unparsed) else r.raw) for r in out)
    assert tally.chars_total == held + tally.chars_framing
    return out


def _records(
    source: SynopTacSource, path: Path, catalogue: StationCatalogue | None
) -> list[Report | Rejection]:
    """:func:`_read_all` where every character is in a report or the framing."""
    out: list[Report | Rejection] = []
    for r in _read_all(source, path, catalogue):
        assert not isinstance(r, Unparsed), r
        out.append(r)
    return out


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
    records = list(_records(SynopTacSource(), ROMANIA, catalogue))
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
    recs = {r.report_id: r for r in _records(SynopTacSource("2023-01-31T06:00"), WX, _cuba())}
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
    records = list(_records(SynopTacSource("2023-01-31T06:00"), WX, _cuba()))
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
    recs = list(_records(SynopTacSource(), path, catalogue))
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
    # raw is the report's own text; heading and AAXX line are framing (the text identity)
    assert r4.raw == "01004 11560 80110 10000 21003 3//// 4////"


@needs_data
def test_wis2box_corrections_recognised() -> None:
    catalogue = catalogue_from_wmo_csv(TAC / "wis2box_data" / "station_list.csv")
    files = sorted((TAC / "wis2box_data").glob("*.txt"))
    seen: dict[str, int] = {}
    for path in files:
        letter = "CCB" if "CCB_" in path.name else "CCA" if "CCA_" in path.name else None
        for r in _records(SynopTacSource(), path, catalogue):
            assert bbb_of(r.report_id) == letter, r.report_id
            assert is_correction(r.report_id) == (letter is not None)
            assert isinstance(r, Report) and r.raw.startswith(r.station_id + " ")
            seen[letter or ""] = seen.get(letter or "", 0) + 1
    assert seen == {"CCA": 3, "CCB": 2, "": 8 * 23}  # every report decodes
    # SMRO01 YRBK 171200 CCA / AAXX 17121 / 15108 01/92 92514 11028 21028 37901 48315 ...
    path = TAC / "wis2box_data" / "A_SMRO01YRBK171200CCA_C_EDZW_20230117174401_51649529.txt"
    (r,) = _records(SynopTacSource(), path, catalogue)
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
        for o in _records(SynopTacSource(), original, catalogue)
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
        list(_records(SynopTacSource(), path, None))
    from stratocast.obs.base import SourceFileError

    with pytest.raises(SourceFileError, match="reference_time"):
        list(_records(SynopTacSource(), path, StationCatalogue()))
    not_synop = tmp_path / "x_20240101000000_.txt"
    not_synop.write_text("METAR KJFK 011200Z 00000KT=\n")
    with pytest.raises(SourceFileError, match="not a SYNOP"):
        list(_records(SynopTacSource(), not_synop, StationCatalogue()))


def test_missing_terminator_is_not_silently_merged(tmp_path: Path) -> None:
    catalogue = StationCatalogue([Station("01004", 60.0, 10.0, 5.0, wmo_id="01004")])
    path = tmp_path / "A_SMNO01ENMI051200_C_ENMI_20240305120300_1.txt"
    # 01004's "=" was lost: 01005's groups must not be read as part of 01004's report
    path.write_text("AAXX 05121\n01004 11560 80110 10000 40156\n01005 11560 80110 10000=\n")
    (rec,) = _records(SynopTacSource(), path, catalogue)
    assert isinstance(rec, Rejection) and rec.check == "malformed_group"
    assert "'01005'" in rec.reason and rec.station_id == "01004"


# --- one-line reports, text accounting, per-report isolation (issues 11 and 12) -----------

_END_OR_HEADING = re.compile(r"ZCZC.*|NNNN|[A-Z]{4}\d\d [A-Z]{4} \d{6}( [A-Z]{3})?")


def _one_line(text: str, every: bool) -> str:
    """Rewrite a bulletin in the one-line form: the report on its ``AAXX YYGGi`` line.

    ``every``: each report gets its own ``AAXX YYGGi`` prefix (archive style); otherwise only
    the first report after each AAXX line joins it and the rest stay multi-line.
    """
    out: list[str] = []
    aaxx: str | None = None
    parts: list[str] = []
    for line in text.splitlines():
        s = " ".join(line.split())
        if not s:
            continue
        if _END_OR_HEADING.fullmatch(s.upper()):
            out.append(s)
            continue
        if s.startswith("AAXX"):
            aaxx = s
            continue
        parts.append(s)
        if s.endswith("="):
            report = " ".join(parts)
            parts = []
            if aaxx is not None:
                out.append(f"{aaxx} {report}")
                aaxx = None if not every else aaxx
            else:
                out.append(report)
            if not every:
                aaxx = None
    assert not parts and out
    return "\n".join(out) + "\n"


def _by_station_time(
    records: list[Report | Rejection],
) -> dict[tuple[str | None, datetime | None], tuple[str, dict[str, float]]]:
    out: dict[tuple[str | None, datetime | None], tuple[str, dict[str, float]]] = {}
    for r in records:
        key = (r.station_id, r.time)
        out[key] = ("report", dict(r.values)) if isinstance(r, Report) else (r.check, {})
    return out


def _tac_samples() -> list[tuple[Path, StationCatalogue, SynopTacSource]]:
    ex = catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")
    wis = catalogue_from_wmo_csv(TAC / "wis2box_data" / "station_list.csv")
    out = [(WX, _cuba(), SynopTacSource("2023-01-31T06:00")), (ROMANIA, ex, SynopTacSource())]
    out += [(p, wis, SynopTacSource()) for p in sorted((TAC / "wis2box_data").glob("*.txt"))]
    return out


@needs_data
@pytest.mark.parametrize("every", [True, False], ids=["aaxx-per-report", "first-report-only"])
def test_one_line_reports_decode_like_multi_line(tmp_path: Path, every: bool) -> None:
    n_reports = 0
    for path, catalogue, source in _tac_samples():
        multi = _records(source, path, catalogue)
        one = tmp_path / path.name
        one.write_text(_one_line(path.read_text(encoding="latin-1"), every), encoding="latin-1")
        single = _records(source, one, catalogue)
        assert _by_station_time(single) == _by_station_time(multi), path.name
        # the same report text, only the layout differs
        assert sorted(r.raw for r in single) == sorted(r.raw for r in multi)
        n_reports += sum(isinstance(r, Report) for r in single)
    assert n_reports == 65 + 23 + 8 * 23 + 5


def test_one_line_report_of_the_issue(tmp_path: Path) -> None:
    # the form of issue 11: AAXX 01004 (day 1, 00 UTC, iw=4: knots) and the report after it
    catalogue = StationCatalogue([Station("88889", -51.8, -58.45, 73.0, wmo_id="88889")])
    path = tmp_path / "A_SMFK01EGYP010000_C_EGRR_20240101000500_1.txt"
    path.write_text("AAXX 01004 88889 12782 61506 10094 20061 30036 40166 57006=\n")
    (r,) = _records(SynopTacSource(), path, catalogue)
    assert isinstance(r, Report) and r.report_id == f"{path.name}:1"
    assert r.time == datetime(2024, 1, 1, 0, tzinfo=UTC)
    # 61506: dd=15 (150 deg) ff=06 kt; 10094: +9.4 C; 20061: +6.1 C; 30036: 1003.6 hPa
    assert r.values["wd10"] == 150.0 and r.values["ws10"] == pytest.approx(6 * 1852 / 3600)
    assert r.values["t2m"] == pytest.approx(282.55) and r.values["d2m"] == pytest.approx(279.25)
    assert r.values["sp"] == pytest.approx(100360.0) and r.values["msl"] == pytest.approx(101660.0)


@needs_data
def test_text_identity_on_every_shared_file() -> None:
    # _records checks the identity; here, that framing is what it should be on a real file
    for path, catalogue, source in _tac_samples():
        *records, tally = source.read(path, catalogue)
        assert isinstance(tally, TextTally)
        held = sum(text_chars(r.raw) for r in records if isinstance(r, Report | Rejection))
        assert tally.chars_framing > 0 and held > 0, path.name
        assert tally.chars_total == held + tally.chars_framing, path.name  # nothing unparsed
    # WX.00: every ZCZC, heading, NNNN and AAXX line and every "=" is framing, nothing else
    text = WX.read_text("latin-1")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    marks = [s for s in lines if _END_OR_HEADING.fullmatch(s.upper()) or s.startswith("AAXX")]
    *_, tally = SynopTacSource("2023-01-31T06:00").read(WX, _cuba())
    assert isinstance(tally, TextTally)
    assert len(marks) == 2 * 4  # two bulletins
    assert tally.chars_framing == sum(text_chars(s) for s in marks) + text.count("=")


@needs_data
def test_text_in_no_report_is_unparsed_with_its_place(tmp_path: Path) -> None:
    text = ROMANIA.read_text(encoding="latin-1").replace(
        "SMRO01 YRBK 211200\n", "SMRO01 YRBK 211200\nTEST BULLETIN PLEASE IGNORE\n", 1
    )
    path = tmp_path / ROMANIA.name
    path.write_text(text, encoding="latin-1")
    catalogue = catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")
    records = _read_all(SynopTacSource(), path, catalogue)
    (u,) = [r for r in records if isinstance(r, Unparsed)]
    assert u.location == f"{path.name}:2" and u.text == "TEST BULLETIN PLEASE IGNORE"
    assert sum(isinstance(r, Report) for r in records) == 23  # the bulletin still lands


@needs_data
def test_one_report_raising_is_rejected_rest_lands(monkeypatch: pytest.MonkeyPatch) -> None:
    import stratocast.obs.sources.synop_tac as tac

    real = tac.derive

    def derive(values: dict[str, float], elevation: float) -> None:
        if values.get("t2m") == pytest.approx(283.45):  # 15015's 10103: +10.3 C
            raise ZeroDivisionError("injected")
        real(values, elevation=elevation)

    monkeypatch.setattr(tac, "derive", derive)
    catalogue = catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")
    records = _records(SynopTacSource(), ROMANIA, catalogue)
    (bad,) = [r for r in records if isinstance(r, Rejection)]
    assert bad.check == "decode_error" and "ZeroDivisionError: injected" in bad.reason
    assert bad.report_id == f"{ROMANIA.name}:5" and bad.raw.startswith("15015 02999")
    assert sum(isinstance(r, Report) for r in records) == 22
