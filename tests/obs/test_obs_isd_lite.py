"""ISD-Lite reader and isd-history loader, against values decoded by hand from the real files.

Expected SI values below were worked out by hand from the raw line quoted above each case
(ISD-Lite: T/Td in 0.1 °C, SLP in 0.1 hPa, wind speed in 0.1 m/s, direction 0 = calm).
"""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratocast.obs.base import Record, Rejection, Report, SourceFileError, TextTally, text_chars
from stratocast.obs.isd_history import load_isd_history
from stratocast.obs.sources.isd_lite import IsdLiteSource
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.testing.sources import SourceTests

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
ISD = DATA / "isd_lite"
HISTORY = DATA / "stations" / "isd-history.csv"
needs_data = pytest.mark.skipif(
    not (ISD.is_dir() and HISTORY.is_file()),
    reason=f"real ISD sample data not found under {DATA} (../shared/data)",
)


@pytest.fixture(scope="module")
def history() -> StationCatalogue:
    return load_isd_history(HISTORY).catalogue


def _read(
    source: IsdLiteSource, path: Path, catalogue: StationCatalogue | None = None
) -> list[Report | Rejection]:
    """The file's records, checking its closing TextTally: every character is in a record."""
    *records, tally = source.read(path, catalogue)
    assert isinstance(tally, TextTally) and tally.chars_framing == 0
    out = [r for r in records if isinstance(r, Report | Rejection)]
    assert len(out) == len(records)
    assert tally.chars_total == sum(text_chars(r.raw) for r in out)
    return out


def _by_id(path: Path, catalogue: StationCatalogue | None) -> dict[str, Record]:
    return {r.report_id: r for r in _read(IsdLiteSource(), path, catalogue)}


def _report(recs: dict[str, Record], rid: str) -> Report:
    r = recs[rid]
    assert isinstance(r, Report), r
    return r


@needs_data
class TestIsdLiteConformance(SourceTests):
    @pytest.fixture
    def source(self) -> IsdLiteSource:
        return IsdLiteSource()

    @pytest.fixture(params=["071690-99999-2017.gz", "317540-99999-2016.gz"])
    def sample_file(self, request: pytest.FixtureRequest) -> Path:
        return ISD / request.param

    @pytest.fixture
    def catalogue(self, history: StationCatalogue) -> StationCatalogue:
        return history


@needs_data
def test_hand_decoded_french_lines(history: StationCatalogue) -> None:
    recs = _by_id(ISD / "071690-99999-2017.gz", history)
    # line 1: "2017 01 01 00   -35   -42 10296   190    10     9 -9999     0"
    r = _report(recs, "071690-99999-2017.gz:1")
    assert r.station_id == "071690-99999"
    assert r.time == datetime(2017, 1, 1, 0, tzinfo=UTC)
    # isd-history: ROBINSON +48.636 +004.899 +0139.6
    assert (r.lat, r.lon, r.elevation) == pytest.approx((48.636, 4.899, 139.6))
    assert r.values["t2m"] == pytest.approx(-3.5 + 273.15)
    assert r.values["d2m"] == pytest.approx(-4.2 + 273.15)
    assert r.values["msl"] == pytest.approx(102960.0)
    assert r.values["wd10"] == 190.0
    assert r.values["ws10"] == pytest.approx(1.0)
    # wind from 190°: u = -1.0 * sin(190°) = +0.173648, v = -1.0 * cos(190°) = +0.984808
    assert r.values["u10"] == pytest.approx(0.173648, abs=1e-6)
    assert r.values["v10"] == pytest.approx(0.984808, abs=1e-6)
    assert r.raw == "2017 01 01 00   -35   -42 10296   190    10     9 -9999     0"
    assert not r.flags

    # line 3: "2017 01 01 02   -32   -37 10280     0     0     9     0 -9999" -> calm
    r = _report(recs, "071690-99999-2017.gz:3")
    assert r.time == datetime(2017, 1, 1, 2, tzinfo=UTC)
    assert r.values["t2m"] == pytest.approx(269.95)
    assert r.values["d2m"] == pytest.approx(269.45)
    assert r.values["msl"] == pytest.approx(102800.0)
    assert (r.values["ws10"], r.values["wd10"]) == (0.0, 0.0)
    assert (r.values["u10"], r.values["v10"]) == (0.0, 0.0)


@needs_data
def test_hand_decoded_missing_values(history: StationCatalogue) -> None:
    recs = _by_id(ISD / "071790-34051-2017.gz", history)
    # line 249: "2017 01 11 08 -9999 -9999 -9999 -9999    10 -9999 -9999 -9999"
    # only a speed: variable/unknown direction, so no wd10 and no u/v
    r = _report(recs, "071790-34051-2017.gz:249")
    assert r.time == datetime(2017, 1, 11, 8, tzinfo=UTC)
    assert dict(r.values) == pytest.approx({"ws10": 1.0})
    # line 4906: "2017 07 26 09   180   130 -9999 -9999 -9999 -9999 -9999 -9999"
    r = _report(recs, "071790-34051-2017.gz:4906")
    assert r.time == datetime(2017, 7, 26, 9, tzinfo=UTC)
    assert r.values["t2m"] == pytest.approx(291.15)
    assert r.values["d2m"] == pytest.approx(286.15)
    assert not {"msl", "wd10", "ws10", "u10", "v10"} & set(r.values)

    recs = _by_id(ISD / "071900-99999-2017.gz", history)
    # line 4444: "2017 07 05 17   313   144 10154   360    31 -9999     0 -9999"
    # north wind (360°): u = 0, v = -3.1
    r = _report(recs, "071900-99999-2017.gz:4444")
    assert r.time == datetime(2017, 7, 5, 17, tzinfo=UTC)
    assert r.values["t2m"] == pytest.approx(304.45)
    assert r.values["d2m"] == pytest.approx(287.55)
    assert r.values["msl"] == pytest.approx(101540.0)
    assert r.values["wd10"] == 360.0 and r.values["ws10"] == pytest.approx(3.1)
    assert r.values["u10"] == pytest.approx(0.0, abs=1e-9)
    assert r.values["v10"] == pytest.approx(-3.1)


@needs_data
def test_hand_decoded_russian_lines(history: StationCatalogue) -> None:
    recs = _by_id(ISD / "317350-99999-2016.gz", history)
    # line 1: "2016 01 01 00  -222  -248 10249   210    20     7 -9999 -9999"
    r = _report(recs, "317350-99999-2016.gz:1")
    # isd-history: NOVY +48.528 +135.188 +0075.0
    assert (r.lat, r.lon, r.elevation) == pytest.approx((48.528, 135.188, 75.0))
    assert r.values["t2m"] == pytest.approx(-22.2 + 273.15)
    assert r.values["d2m"] == pytest.approx(-24.8 + 273.15)
    assert r.values["msl"] == pytest.approx(102490.0)
    # from 210° at 2.0 m/s: u = -2 sin(210°) = 1.0, v = -2 cos(210°) = 1.732051
    assert r.values["u10"] == pytest.approx(1.0)
    assert r.values["v10"] == pytest.approx(1.732051, abs=1e-6)
    # line 3: "2016 01 01 02  -180  -200 -9999 -9999    10 -9999 -9999 -9999"
    r = _report(recs, "317350-99999-2016.gz:3")
    assert r.values["t2m"] == pytest.approx(255.15)
    assert r.values["d2m"] == pytest.approx(253.15)
    assert r.values["ws10"] == pytest.approx(1.0)
    assert not {"msl", "wd10", "u10", "v10"} & set(r.values)

    # 3-hourly synoptic station coding calm as direction 0 with the speed missing:
    # line 1: "2016 01 01 00  -328  -364 10308     0 -9999 -9999 -9999 -9999"
    r = _report(_by_id(ISD / "317540-99999-2016.gz", history), "317540-99999-2016.gz:1")
    assert r.values["t2m"] == pytest.approx(240.35)
    assert r.values["d2m"] == pytest.approx(236.75)
    assert r.values["msl"] == pytest.approx(103080.0)
    assert (r.values["ws10"], r.values["wd10"], r.values["u10"], r.values["v10"]) == (0, 0, 0, 0)


@needs_data
@pytest.mark.parametrize("path", sorted(ISD.glob("*.gz")) if ISD.is_dir() else [], ids=str)
def test_every_file_accounts_for_every_line(path: Path, history: StationCatalogue) -> None:
    with gzip.open(path, "rt") as fh:
        n_lines = sum(1 for line in fh if line.strip())
    recs = list(_read(IsdLiteSource(), path, history))
    reports = [r for r in recs if isinstance(r, Report)]
    rejections = [r for r in recs if isinstance(r, Rejection)]
    assert n_lines == len(reports) + len(rejections) == len(recs)
    assert len(reports) > 0.95 * n_lines
    assert len({r.report_id for r in recs}) == len(recs)


@needs_data
def test_unknown_station_rejects_every_line(tmp_path: Path) -> None:
    path = ISD / "071690-99999-2017.gz"
    other = StationCatalogue([Station("999999-99999", 0.0, 0.0, math.nan)])
    for catalogue in (other, None):
        recs = list(_read(IsdLiteSource(), path, catalogue))
        assert len(recs) == 8742
        assert all(isinstance(r, Rejection) and r.check == "unknown_station" for r in recs)
        first = recs[0]
        assert isinstance(first, Rejection) and first.station_id == "071690-99999"
        assert first.time == datetime(2017, 1, 1, tzinfo=UTC) and first.raw.startswith("2017")


@needs_data
def test_station_list_option_locates_without_catalogue() -> None:
    recs = list(_read(IsdLiteSource(stations=HISTORY), ISD / "071810-99999-2017.gz"))
    reports = [r for r in recs if isinstance(r, Report)]
    assert len(reports) == len(recs) == 8744
    # isd-history: OCHEY +48.583 +005.955 +0337.1
    assert (reports[0].lat, reports[0].lon) == pytest.approx((48.583, 5.955))


def _gz(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("latin-1")))
    return path


_HERE = StationCatalogue([Station("071690-99999", 48.636, 4.899, 139.6)])
_GOOD = [
    "2017 01 01 00   -35   -42 10296   190    10     9 -9999     0",
    "2017 01 01 01   -32   -39 10288   180    10     9     0 -9999",
    "2017 01 01 02   -32   -37 10280     0     0     9     0 -9999",
]


@pytest.mark.parametrize(
    "bad",
    [
        "2017 01 01 01   -32   -39 10288   1X0    10     9     0 -9999",  # stray character
        "2017 01 01 01   -32   -39        180    10     9     0 -9999",  # blank field
        "2017 01 01 01   -32   -39 10288   180    10     9     0",  # truncated line
        "2017 01 01 01   - 3   -39 10288   180    10     9     0 -9999",  # split number
        "2017 01 01 01   --3   -39 10288   180    10     9     0 -9999",  # two signs
        "2017 01 01 01   -3-   -39 10288   180    10     9     0 -9999",  # sign after digit
        "2017 01 01 01   -32   -39 10288   180    10     9     0 -9999\xe9",  # non-ASCII
        "2017 01 01 01   -32   -39 10288   180    10     9     0\xe9-9999",  # in a column
        "2017 01 01 01   -32   -39 10288   180    10     9     0 -9999 7",  # extra field
    ],
)
def test_malformed_line_is_one_rejection(tmp_path: Path, bad: str) -> None:
    path = _gz(tmp_path / "071690-99999-2017.gz", [_GOOD[0], bad, _GOOD[2]])
    recs = list(_read(IsdLiteSource(), path, _HERE))
    assert [type(r) for r in recs] == [Report, Rejection, Report]
    rej = recs[1]
    assert isinstance(rej, Rejection)
    assert rej.report_id == "071690-99999-2017.gz:2" and rej.check == "malformed_line"
    assert "071690-99999-2017.gz:2" in rej.reason and rej.raw == bad.replace("\xe9", "\ufffd")
    last = recs[2]
    assert isinstance(last, Report) and last.values["msl"] == pytest.approx(102800.0)


def test_edge_cases_in_small_file(tmp_path: Path) -> None:
    lines = [
        "2017 02 30 00   -35   -42 10296   190    10     9 -9999     0",  # 30 February
        "2017 01 01 01 -9999 -9999 -9999 -9999 -9999     9     0 -9999",  # nothing canonical
        "2017 01 01 02   -32   -37 10280     0    25     9     0 -9999",  # calm code, speed
        "2017 01 01 03   990   -37  5000   400    10     9     0 -9999",  # out of valid range
        "2017 01 01 04 -9999 -9999 -9999 -9999     0 -9999 -9999 -9999",  # calm, no direction
        "",  # blank lines carry no record
        "2017 01 01 05  -32  -37 10280 0 0 9 0 -9999\r",  # not fixed width, but 12 integers
    ]
    recs = {
        r.report_id: r
        for r in _read(IsdLiteSource(), _gz(tmp_path / "071690-99999-2017.gz", lines), _HERE)
    }
    assert len(recs) == 6 and "071690-99999-2017.gz:6" not in recs
    bad_time = recs["071690-99999-2017.gz:1"]
    assert isinstance(bad_time, Rejection) and bad_time.check == "bad_time"
    no_data = recs["071690-99999-2017.gz:2"]
    assert isinstance(no_data, Rejection) and no_data.check == "no_data"
    odd = _report(recs, "071690-99999-2017.gz:3")  # as reported; QC's consistency check
    assert odd.values["ws10"] == pytest.approx(2.5) and odd.values["wd10"] == 0.0
    assert not odd.flags
    wild = _report(recs, "071690-99999-2017.gz:4")  # kept for QC to quarantine
    assert wild.values["t2m"] == pytest.approx(372.15)
    assert wild.values["msl"] == pytest.approx(50000.0) and wild.values["wd10"] == 400.0
    calm = _report(recs, "071690-99999-2017.gz:5")
    assert dict(calm.values) == {"ws10": 0.0, "wd10": 0.0, "u10": 0.0, "v10": 0.0}
    loose = _report(recs, "071690-99999-2017.gz:7")
    assert loose.values["t2m"] == pytest.approx(269.95) and loose.raw.endswith("-9999")


def test_truncated_gzip_is_a_file_error(tmp_path: Path) -> None:
    whole = gzip.compress(("\n".join(_GOOD * 200) + "\n").encode("ascii"))
    truncated = tmp_path / "071690-99999-2017.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(SourceFileError, match=r"071690-99999-2017\.gz.*truncated"):
        list(_read(IsdLiteSource(), truncated, _HERE))
    corrupt = tmp_path / "071800-99999-2017.gz"
    corrupt.write_bytes(whole[:10] + bytes(64) + whole[74:])
    with pytest.raises(SourceFileError, match=r"071800-99999-2017\.gz"):
        list(_read(IsdLiteSource(), corrupt, _HERE))
    not_gz = tmp_path / "071810-99999-2017.gz"
    not_gz.write_text(_GOOD[0])
    with pytest.raises(SourceFileError, match=r"071810-99999-2017\.gz.*not gzip"):
        list(_read(IsdLiteSource(), not_gz, _HERE))


def test_bad_file_name_is_a_file_error(tmp_path: Path) -> None:
    path = _gz(tmp_path / "robinson.gz", _GOOD)
    with pytest.raises(SourceFileError, match=r"robinson\.gz.*USAF-WBAN-YEAR"):
        list(_read(IsdLiteSource(), path, _HERE))


@needs_data
@needs_data
def test_supersaturated_outlier_flagged(history: StationCatalogue) -> None:
    recs = _by_id(ISD / "071690-99999-2017.gz", history)
    # line 3591: "2017 05 30 16    30   154 10170   280    31     8    -1 -9999": T 3.0 °C,
    # Td 15.4 °C between T 23.3 and 22.1 °C (a dropped digit); kept as read, rh2m flagged
    r = _report(recs, "071690-99999-2017.gz:3591")
    assert r.values["t2m"] == pytest.approx(276.15) and r.values["d2m"] == pytest.approx(288.55)
    assert r.values["rh2m"] > 2.0 and r.flags["rh2m"][0] == "supersaturated"
    assert set(r.flags) == {"rh2m"}


@needs_data
def test_isd_history_french_stations() -> None:
    hist = load_isd_history(HISTORY)
    assert hist.rows == 29632
    # rows with blank, or (0, 0) placeholder, coordinates: counted, not loaded
    assert 1000 < hist.skipped < 2000 and len(hist.catalogue) == hist.rows - hist.skipped
    # "071790","34051","TOUL ROSIERES","FR","","LFSL","+48.783","+005.983","+0285.9"
    s = hist.catalogue.get("071790-34051")
    assert s is not None and (s.lat, s.lon, s.elevation) == pytest.approx((48.783, 5.983, 285.9))
    # "071900","99999","ENTZHEIM","FR","","LFST","+48.538","+007.628","+0153.9"
    s = hist.catalogue.get("071900-99999")
    assert s is not None and (s.lat, s.lon, s.elevation) == pytest.approx((48.538, 7.628, 153.9))
    for sid in ["071690-99999", "071800-99999", "071810-99999", "071825-99999"]:
        s = hist.catalogue.get(sid)
        assert s is not None and 47.5 < s.lat < 49.5 and 4.0 < s.lon < 8.0, sid
        assert 100.0 < s.elevation < 400.0, sid
    assert "071910-99999" not in hist.catalogue  # BOGUS FRENCH: no coordinates
    assert "007018-99999" not in hist.catalogue  # WXPOD 7018 at (0, 0)
    assert hist.catalogue.by_icao("LFSL") is None  # codes not indexed unless asked


def test_isd_history_tolerates_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "isd-history.csv"
    path.write_text(
        '"USAF","WBAN","STATION NAME","CTRY","STATE","ICAO","LAT","LON","ELEV(M)","BEGIN","END"\n'
        '"071690","99999","ROBINSON","FR","","LFSI","+48.636","+004.899","+0139.6","1","2"\n'
        '"071910","99999","BOGUS FRENCH","FR","","","","","","1","2"\n'
        '"000001","99999","BAD","","","","north","+004.899","+0139.6","1","2"\n'
        '"000002","99999","FAR","","","","+95.000","+004.899","+0139.6","1","2"\n'
        '"000003","99999","ZERO","","","","+00.000","+000.000","+0000.0","1","2"\n'
        '"000004","99999","NOELEV","XX","","","-45.5","-170.25","-0999.9","1","2"\n'
    )
    hist = load_isd_history(path, index_codes=True)
    assert (hist.rows, hist.skipped, len(hist.catalogue)) == (6, 4, 2)
    s = hist.catalogue.get("000004-99999")
    assert s is not None and (s.lat, s.lon) == (-45.5, -170.25) and math.isnan(s.elevation)
    robinson = hist.catalogue.by_icao("LFSI")
    assert robinson is not None and robinson.station_id == "071690-99999"
    assert hist.catalogue.by_wmo("07169") == robinson


def test_isd_history_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.csv"):
        load_isd_history(tmp_path / "nope.csv")


@needs_data
def test_text_identity_on_every_shared_file(history: StationCatalogue) -> None:
    # _read checks it: every non-whitespace character of the text is in a record
    n = 0
    for path in sorted(ISD.glob("*.gz")):
        n += sum(isinstance(r, Report) for r in _read(IsdLiteSource(), path, history))
    assert n > 13 * 2000


@needs_data
def test_control_character_line_is_rejected_not_skipped(
    tmp_path: Path, history: StationCatalogue
) -> None:
    real = gzip.decompress((ISD / "071690-99999-2017.gz").read_bytes()).decode("ascii")
    lines = real.split("\n")
    lines.insert(3, "\x1c")  # a file separator alone on a line: str.strip() calls it blank
    path = _gz(tmp_path / "071690-99999-2017.gz", lines)
    recs = {r.report_id: r for r in _read(IsdLiteSource(), path, history)}
    bad = recs["071690-99999-2017.gz:4"]
    assert isinstance(bad, Rejection) and bad.check == "malformed_line" and bad.raw == "\x1c"
    assert sum(isinstance(r, Report) for r in recs.values()) > 2000


@needs_data
def test_one_line_raising_is_rejected_rest_lands(
    history: StationCatalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stratocast.obs.sources.isd_lite as isd

    real = isd.derive
    calls = {"n": 0}

    def derive(values: dict[str, float], elevation: float) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OverflowError("injected")
        real(values, elevation=elevation)

    monkeypatch.setattr(isd, "derive", derive)
    recs = _read(IsdLiteSource(), ISD / "071690-99999-2017.gz", history)
    failed = [r for r in recs if isinstance(r, Rejection) and r.check == "decode_error"]
    assert len(failed) == 1 and "OverflowError: injected" in failed[0].reason
    assert failed[0].report_id in failed[0].reason and failed[0].raw.startswith("2017 ")
    assert sum(isinstance(r, Report) for r in recs) > 2000
