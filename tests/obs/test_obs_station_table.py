"""The ``table`` source on IEM-style CSV/Parquet exports built from the real ISD-Lite samples.

The test writes the ISD-Lite 2017 series of two French stations as an IEM ASOS download
would (``station, valid, lon, lat, elevation, tmpf, dwpf, sknt, drct, mslp, p01i``; °F, knots,
hPa, ``M`` for missing, ``T`` for trace), converting with hand-typed factors, then checks the
table reader's SI values against the ISD-Lite reader's for the same station and hour: two
independent paths (hand factors + CSV + Pint-derived converters vs. ISD-Lite's fixed-width
integers and its own lexicon).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratocast.config import ConfigError, parse_config
from stratocast.obs.base import ObsSource, Rejection, Report, TextTally, text_chars
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.isd_history import load_isd_history
from stratocast.obs.registry import get_source
from stratocast.obs.sources.isd_lite import IsdLiteSource
from stratocast.obs.sources.station_table import TableOptionError, TableSource
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.obs.store import read_observations, read_quarantine
from stratocast.testing.fuzz import IEM_OPTIONS  # the IEM ASOS column map, shared
from stratocast.testing.sources import SourceTests

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
ISD = DATA / "isd_lite"
HISTORY = DATA / "stations" / "isd-history.csv"
needs_data = pytest.mark.skipif(
    not (ISD.is_dir() and HISTORY.is_file()),
    reason=f"real ISD sample data not found under {DATA} (../shared/data)",
)
STATIONS = ("071690-99999", "071900-99999")

# Hand-typed conversions, independent of the reader's Pint path: °F from °C exactly,
# the knot is 1852 m per hour, the conventional inch of mercury 3386.38864 Pa.
KT = 1852.0 / 3600.0
INHG = 3386.38864

HEADER = "station,valid,lon,lat,elevation,tmpf,dwpf,sknt,drct,mslp,p01i"


def _isd_lines(station: str) -> Iterator[tuple[int, list[int]]]:
    with gzip.open(ISD / f"{station}-2017.gz", "rt") as fh:
        for lineno, line in enumerate(fh, start=1):
            yield lineno, [int(x) for x in line.split()]


def _iem(f: list[int], missing: int = -9999) -> list[str]:
    """ISD-Lite integers -> IEM cells (tmpf, dwpf, sknt, drct, mslp, p01i)."""

    def cell(v: int, conv: Any, fmt: str) -> str:
        return "M" if v == missing else format(conv(v), fmt)

    return [
        cell(f[4], lambda v: v / 10 * 1.8 + 32.0, ".2f"),
        cell(f[5], lambda v: v / 10 * 1.8 + 32.0, ".2f"),
        cell(f[8], lambda v: v / 10 / KT, ".5f"),
        cell(f[7], lambda v: v, "d"),
        cell(f[6], lambda v: v / 10, ".1f"),
        # ISD-Lite 1-h precipitation, 0.1 mm; -1 is its trace code, IEM's is "T"
        "T" if f[10] == -1 else cell(f[10], lambda v: v / 254.0, ".2f"),
    ]


# malformed rows appended to the first station's file, each with its expected check
BAD_ROWS = [
    ("071690-99999,2017-13-45 25:00,4.899,48.636,139.6,30.00,25.00,5,180,1013.0,M", "bad_time"),
    ("ZZZZ-00000,2017-06-01 00:00,M,M,M,30.00,25.00,5,180,1013.0,M", "unknown_station"),
    ("071690-99999,2017-06-01 00:30,4.899,48.636,139.6,3O.00,25.00,5,180,1013.0,M", "bad_value"),
    ("071690-99999,2017-06-01 00:40,4.899,48.636,139.6,T,25.00,5,180,1013.0,M", "bad_value"),
    ("071690-99999,2017-06-01 00:50,4.899,48.636,139.6,30.00,25.00,5,180", "malformed_row"),
    ("071690-99999,2017-06-01 01:10,4.899,48.636,139.6,M,M,M,M,M,T", "no_data"),
    ("071690-99999,2017-06-01 01:20,4.899,95.0,139.6,30.00,25.00,5,180,1013.0,M", "bad_position"),
]


def _write_csv(path: Path, history: StationCatalogue, with_bad: bool) -> dict[str, str]:
    """Write the IEM-style CSV; returns report id -> (station, ISD-Lite id) key."""
    lines = [HEADER]
    origin: dict[str, str] = {}
    for station in STATIONS:
        s = history.get(station)
        assert s is not None
        for lineno, f in _isd_lines(station):
            valid = f"{f[0]:04d}-{f[1]:02d}-{f[2]:02d} {f[3]:02d}:00"
            pos = [f"{s.lon:.3f}", f"{s.lat:.3f}", f"{s.elevation:.1f}"]
            if lineno % 97 == 0:  # IEM leaves a position blank now and then: catalogue's
                pos = ["M", "M", "M"]
            lines.append(",".join([station, valid, *pos, *_iem(f)]))
            origin[f"{path.name}:{len(lines)}"] = f"{station}-2017.gz:{lineno}"
    if with_bad:
        lines.extend(row for row, _ in BAD_ROWS)
        lines.append("")  # a trailing blank line carries no row
    path.write_text("\n".join(lines) + "\n")
    return origin


@pytest.fixture(scope="module")
def history() -> StationCatalogue:
    return load_isd_history(HISTORY).catalogue


@pytest.fixture(scope="module")
def iem_csv(
    tmp_path_factory: pytest.TempPathFactory, history: StationCatalogue
) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("iem") / "asos_fr_2017.csv"
    return path, _write_csv(path, history, with_bad=True)


@pytest.fixture(scope="module")
def iem_parquet(iem_csv: tuple[Path, dict[str, str]]) -> Path:
    """The CSV's good rows as a typed Parquet table: floats with NaN where IEM wrote M."""
    pytest.importorskip("pyarrow")
    import pandas as pd

    path, origin = iem_csv
    frame = pd.read_csv(path, na_values=["M"], keep_default_na=False, nrows=len(origin))
    assert frame["tmpf"].dtype == float and frame["tmpf"].isna().any()
    out = path.with_suffix(".parquet")
    frame.to_parquet(out, index=False)
    return out


def _decode(
    source: ObsSource, path: Path, catalogue: StationCatalogue | None = None
) -> list[Report | Rejection]:
    """Every Report and Rejection (checked to be all there is, but for a TextTally)."""
    out: list[Report | Rejection] = []
    for r in source.read(path, catalogue):
        if isinstance(r, TextTally):  # text readers' accounting record (ISD-Lite, CSV)
            continue
        assert isinstance(r, Report | Rejection), r
        out.append(r)
    return out


def _reports(records: list[Report | Rejection]) -> dict[str, Report]:
    return {r.report_id: r for r in records if isinstance(r, Report)}


@needs_data
class TestTableConformance(SourceTests):
    @pytest.fixture
    def source(self) -> TableSource:
        return TableSource(**IEM_OPTIONS)

    @pytest.fixture(params=["csv", "parquet"])
    def sample_file(
        self, request: pytest.FixtureRequest, iem_csv: tuple[Path, dict[str, str]]
    ) -> Path:
        return iem_csv[0] if request.param == "csv" else request.getfixturevalue("iem_parquet")

    @pytest.fixture
    def catalogue(self, history: StationCatalogue) -> StationCatalogue:
        return history


@needs_data
def test_values_agree_with_isd_lite_reader(
    iem_csv: tuple[Path, dict[str, str]], history: StationCatalogue
) -> None:
    path, origin = iem_csv
    records = _decode(TableSource(**IEM_OPTIONS), path, history)
    got = _reports(records)
    isd: dict[str, Report | Rejection] = {}
    for station in STATIONS:
        isd.update(
            {r.report_id: r for r in _decode(IsdLiteSource(), ISD / f"{station}-2017.gz", history)}
        )
    compared = 0
    for rid, isd_id in origin.items():
        want = isd[isd_id]
        if isinstance(want, Rejection):  # ISD-Lite's own no_data lines are IEM all-M rows
            assert rid not in got
            continue
        r = got[rid]
        assert (r.station_id, r.time) == (want.station_id, want.time)
        assert (r.lat, r.lon) == pytest.approx((want.lat, want.lon), abs=1e-3)
        assert r.elevation == pytest.approx(want.elevation, abs=0.05)
        for var, v in r.values.items():
            tol = 0.05 if var in ("msl", "sp") else 1e-3
            assert v == pytest.approx(want.values[var], abs=tol), (rid, isd_id, var)
            compared += 1
        # ISD-Lite reads direction 0 with the speed missing as a calm (ws10 = 0); the IEM
        # row has sknt = M there, so the table reader has only the direction: that, and only
        # that, is the difference in the variables present.
        extra = set(want.values) - set(r.values)
        assert extra <= {"ws10", "u10", "v10"}, (rid, extra)
        if extra:
            assert want.values["wd10"] == 0.0 and want.values["ws10"] == 0.0
    assert compared > 100_000


@needs_data
def test_every_row_is_a_report_or_a_rejection(
    iem_csv: tuple[Path, dict[str, str]], history: StationCatalogue
) -> None:
    path, origin = iem_csv
    records = _decode(TableSource(**IEM_OPTIONS), path, history)
    data_rows = sum(1 for ln in path.read_text().splitlines()[1:] if ln.strip())
    assert len(records) == data_rows == len(origin) + len(BAD_ROWS)
    assert len({r.report_id for r in records if isinstance(r, Report | Rejection)}) == data_rows
    rejected = {r.report_id: r for r in records if isinstance(r, Rejection)}
    first_bad = len(origin) + 2  # header is line 1
    for k, (row, check) in enumerate(BAD_ROWS):
        rid = f"{path.name}:{first_bad + k}"
        rej = rejected[rid]
        assert rej.check == check and rej.raw == row, rej
        assert rid in rej.reason, rej.reason  # the reason says where: file and line
    assert "'tmpf'" in rejected[f"{path.name}:{first_bad + 2}"].reason
    # rows with blank positions were placed from the catalogue
    r = _reports(records)[f"{path.name}:{97 + 1}"]
    s = history.get("071690-99999")
    assert s is not None and (r.lat, r.lon, r.elevation) == (s.lat, s.lon, s.elevation)


@needs_data
def test_csv_text_identity(iem_csv: tuple[Path, dict[str, str]], history: StationCatalogue) -> None:
    """Every non-blank character of the CSV is in a record's raw text or in the header."""
    path, _ = iem_csv
    *records, tally = list(TableSource(**IEM_OPTIONS).read(path, history))
    assert isinstance(tally, TextTally) and tally.path == str(path)
    assert not any(isinstance(r, TextTally) for r in records)
    in_records = sum(text_chars(r.raw) for r in records if isinstance(r, Report | Rejection))
    assert tally.chars_framing == text_chars(HEADER)
    assert tally.chars_total == text_chars(path.read_text()) == in_records + tally.chars_framing


@needs_data
def test_hand_checked_first_row(
    iem_csv: tuple[Path, dict[str, str]], history: StationCatalogue
) -> None:
    # ISD-Lite 071690 line 1: "2017 01 01 00   -35   -42 10296   190    10 ..." ->
    # IEM row: tmpf 25.70, dwpf 24.44, sknt 1.94384, drct 190, mslp 1029.6
    path, _ = iem_csv
    r = _reports(_decode(TableSource(**IEM_OPTIONS), path, history))[f"{path.name}:2"]
    assert r.raw.split(",")[5:10] == ["25.70", "24.44", "1.94384", "190", "1029.6"]
    assert r.time == datetime(2017, 1, 1, tzinfo=UTC)
    assert r.values["t2m"] == pytest.approx(269.65)
    assert r.values["d2m"] == pytest.approx(268.95)
    assert r.values["msl"] == pytest.approx(102960.0)
    assert r.values["ws10"] == pytest.approx(1.0, abs=1e-5)
    assert r.values["u10"] == pytest.approx(0.173648, abs=1e-5)  # derived, as other sources
    assert 0.9 < r.values["rh2m"] < 1.0


@needs_data
def test_parquet_export_decodes_as_its_csv(
    iem_csv: tuple[Path, dict[str, str]], iem_parquet: Path, history: StationCatalogue
) -> None:
    path, origin = iem_csv
    csv_recs = _decode(TableSource(**IEM_OPTIONS), path, history)[: len(origin)]
    pq_recs = _decode(TableSource(**IEM_OPTIONS), iem_parquet, history)
    assert len(pq_recs) == len(origin)
    for a, b in zip(csv_recs, pq_recs, strict=True):
        assert type(a) is type(b) and a.station_id == b.station_id and a.time == b.time
        if isinstance(a, Report) and isinstance(b, Report):
            assert b.values == pytest.approx(a.values, abs=1e-9)
            assert (b.lat, b.lon, b.elevation) == (a.lat, a.lon, a.elevation)
        else:
            assert isinstance(a, Rejection) and isinstance(b, Rejection) and a.check == b.check


@needs_data
def test_parquet_inhg_and_catalogue_positions(tmp_path: Path, history: StationCatalogue) -> None:
    """A mesonet-style Parquet table: numeric columns, pressure in inHg, no position columns
    (stations placed from the ``stations`` option: the isd-history file)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows: dict[str, list[Any]] = {"stid": [], "obtime": [], "temp_c": [], "slp_inhg": []}
    expected: list[str] = []
    for lineno, f in list(_isd_lines("071900-99999"))[:500]:
        rows["stid"].append("071900-99999")
        rows["obtime"].append(datetime(f[0], f[1], f[2], f[3], tzinfo=UTC))
        rows["temp_c"].append(None if f[4] == -9999 else f[4] / 10)
        rows["slp_inhg"].append(None if f[6] == -9999 else f[6] * 10 / INHG)
        expected.append(f"071900-99999-2017.gz:{lineno}")
    path = tmp_path / "mesonet.parquet"
    pq.write_table(pa.table(rows), path)
    src = get_source(
        "table",
        station="stid",
        time="obtime",
        stations=str(HISTORY),
        columns={
            "temp_c": {"variable": "t2m", "units": "degC"},
            "slp_inhg": {"variable": "msl", "units": "inHg"},
        },
    )
    records = _decode(src, path)
    assert len(records) == 500
    isd = {r.report_id: r for r in _decode(IsdLiteSource(), ISD / "071900-99999-2017.gz", history)}
    n = 0
    for k, rec in enumerate(records):
        assert rec.report_id == f"mesonet.parquet:{k + 1}"
        want = isd[expected[k]]
        if not isinstance(rec, Report):
            assert isinstance(rec, Rejection) and rec.check == "no_data"
            assert isinstance(want, Rejection) or not {"t2m", "msl"} & set(want.values)
            continue
        assert isinstance(want, Report) and rec.time == want.time
        assert (rec.lat, rec.lon, rec.elevation) == (want.lat, want.lon, want.elevation)
        for var in ("t2m", "msl"):
            if var in want.values:
                assert rec.values[var] == pytest.approx(want.values[var], abs=1e-3), k
                n += 1
    assert n > 900


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({"tmpf": {"variable": "t2m", "units": "degFF"}}, r"options\.columns\.tmpf\.units.*degFF"),
        ({"tmpf": {"variable": "t2m", "units": "kt"}}, r"options\.columns\.tmpf\.units.*dimension"),
        ({"tmpf": {"variable": "temp", "units": "degF"}}, r"options\.columns\.tmpf\.variable"),
        ({"tmpf": {"variable": "t2m"}}, r"options\.columns\.tmpf\.units.*required"),
        ({"tmpf": "t2m"}, r"options\.columns\.tmpf: expected"),
        (
            {"tmpf": {"variable": "t2m", "units": "degF"}, "t": {"variable": "t2m", "units": "K"}},
            r"options\.columns\.t\.variable: t2m is already the target of column 'tmpf'",
        ),
        (None, r"options\.columns"),
    ],
)
def test_bad_options_are_clear_errors(columns: Any, match: str) -> None:
    with pytest.raises(TableOptionError, match=match):
        get_source("table", columns=columns)


def test_other_option_errors(tmp_path: Path) -> None:
    cols = {"tmpf": {"variable": "t2m", "units": "degF"}}
    with pytest.raises(TableOptionError, match=r"options\.timezone.*Mars/Olympus"):
        TableSource(columns=cols, timezone="Mars/Olympus")
    with pytest.raises(TableOptionError, match=r"options\.elevation_units"):
        TableSource(columns=cols, elevation_units="parsec-ish")
    with pytest.raises(TableOptionError, match=r"options\.lat/lon"):
        TableSource(columns=cols, lat="lat")
    with pytest.raises(TypeError, match="bad options for observation source 'table'"):
        get_source("table", columns=cols, colour="blue")
    # a header without a configured column is a file error naming the column and option
    path = tmp_path / "x.csv"
    path.write_text("station,valid,temp\nA,2017-01-01T00:00Z,1\n")
    with pytest.raises(Exception, match=r"x\.csv.*'tmpf' \(options\.columns\.tmpf\)"):
        list(TableSource(columns=cols).read(path))


def test_local_time_zone_and_format(tmp_path: Path) -> None:
    """Times without an offset are in ``timezone``; an offset in the cell wins."""
    path = tmp_path / "mesonet.csv"
    path.write_text(
        "id;when;t;lat;lon\n"
        "OKC1;01/07/2017 18:00;10.5;35.4;-97.6\n"  # 1 July: CDT, UTC-5
        "OKC1;01/07/2017 19:00;M;35.4;262.4\n"
    )
    src = TableSource(
        station="id",
        time="when",
        time_format="%d/%m/%Y %H:%M",
        timezone="America/Chicago",
        lat="lat",
        lon="lon",
        delimiter=";",
        columns={"t": {"variable": "t2m", "units": "degC"}},
    )
    first, second = _decode(src, path)
    assert isinstance(first, Report) and first.time == datetime(2017, 7, 1, 23, tzinfo=UTC)
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("station,valid,t\nA,1499036400,1.0\nA,14990364OO,2.0\n")
    cat = StationCatalogue([Station("A", 1.0, 2.0, 3.0)])
    src = TableSource(time_format="epoch", columns={"t": {"variable": "t2m", "units": "degC"}})
    good, bad = _decode(src, epoch, cat)
    assert isinstance(good, Report) and good.time == datetime(2017, 7, 2, 23, tzinfo=UTC)
    assert isinstance(bad, Rejection) and bad.check == "bad_time" and "epoch" in bad.reason
    assert first.values == {"t2m": pytest.approx(283.65)} and math.isnan(first.elevation)
    assert isinstance(second, Rejection) and second.check == "no_data"


@needs_data
def test_run_config_ingest_accounting(
    iem_csv: tuple[Path, dict[str, str]], history: StationCatalogue, tmp_path: Path
) -> None:
    path, origin = iem_csv
    cfg = parse_config(
        IngestConfig,
        {"sources": [{"name": "table", "paths": [str(path)], "options": IEM_OPTIONS}]},
        "run.yaml",
    )
    store = tmp_path / "store"
    acc = ingest(cfg, store, history, progress=False)
    acc.verify()
    a = acc.sources["table"]
    assert a.files_ok == 1 and a.files_failed == 0
    assert a.reports_read == len(origin) + len(BAD_ROWS)
    assert a.reports_read == a.reports_stored + a.reports_quarantined
    assert a.values_decoded == a.values_stored + a.values_quarantined
    for _, check in BAD_ROWS:
        assert a.reports_quarantined_by_check[check] >= 1, check
    obs = read_observations(store, sources=["table"])
    assert len(obs) == a.values_stored > 100_000
    assert set(obs["station_id"]) == set(STATIONS)
    q = read_quarantine(store, sources=["table"])
    bad = q[q["report_id"] == f"{path.name}:{len(origin) + 4}"]
    assert len(bad) == 1 and "'tmpf'" in bad["reason"].iloc[0]
    # one stored value checked against the hand conversion: 071690, 2017-01-01 00 UTC
    t = obs[(obs["station_id"] == "071690-99999") & (obs["variable"] == "t2m")]
    first = t[t["time"] == "2017-01-01T00:00Z"]["value"].tolist()
    assert first == pytest.approx([269.65])
    again = ingest(cfg, store, history, progress=False)
    assert again.sources["table"].files_skipped == 1


def test_config_rejects_unknown_source_name() -> None:
    with pytest.raises(ConfigError, match="unknown source 'tabel'"):
        parse_config(IngestConfig, {"sources": [{"name": "tabel", "paths": ["x"]}]}, "r.yaml")


def test_bad_options_in_a_run_are_a_config_error(tmp_path: Path) -> None:
    """A config whose column map does not convert is refused when the run config is parsed,
    naming the source and the option (before any file is read)."""
    path = tmp_path / "x.csv"
    path.write_text("station,valid,lat,lon,t\nA,2017-01-01T00:00,1,2,1.5\n")
    pos = {"lat": "lat", "lon": "lon"}
    good = {
        "name": "table",
        "paths": [str(path)],
        "options": {**pos, "columns": {"t": {"variable": "t2m", "units": "degC"}}},
    }
    bad = {
        "name": "table",
        "paths": [str(path)],
        "options": {**pos, "columns": {"t": {"variable": "t2m", "units": "kt"}}},
    }
    cfg = parse_config(IngestConfig, {"sources": [good]}, "run.yaml")
    assert (
        ingest(cfg, tmp_path / "store", None, progress=False).sources["table"].reports_stored == 1
    )
    with pytest.raises(
        ConfigError, match=r"sources\.1.*source 'table' options:.*options\.columns\.t\.units"
    ):
        parse_config(IngestConfig, {"sources": [good, bad]}, "run.yaml")


@needs_data
def test_one_row_raising_is_its_own_rejection(
    tmp_path: Path, history: StationCatalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception while decoding one row (issue 12: per-record isolation) is that
    row's ``decode_error`` Rejection naming file:line and the exception; every other row
    decodes exactly as in a clean read, and the text identity still holds."""
    from stratocast.testing.fuzz import iem_csv as write_iem

    name, data = write_iem(ISD / f"{STATIONS[0]}-2017.gz", history=str(HISTORY), lines=200)
    path = tmp_path / name
    path.write_bytes(data)
    source = TableSource(**IEM_OPTIONS)
    clean = list(source.read(path, history))
    victim = data.decode().split("\n")[41].split(",")[1]  # the valid time of file line 42
    real = TableSource._parse_time

    def parse_time(self: TableSource, text: str) -> datetime:
        if text.strip() == victim:
            raise RuntimeError("injected failure")
        return real(self, text)

    monkeypatch.setattr(TableSource, "_parse_time", parse_time)
    broken = list(source.read(path, history))
    assert len(broken) == len(clean) == 201  # 200 rows and the TextTally
    where = f"{name}:42"
    (rej,) = [r for r in broken if isinstance(r, Rejection)]
    assert rej.report_id == where and rej.check == "decode_error"
    assert rej.reason == f"{where}: decoding failed: RuntimeError: injected failure"
    assert rej.station_id == STATIONS[0] and rej.raw == data.decode().split("\n")[41]
    others = [(a, b) for a, b in zip(clean, broken, strict=True) if b is not rej]
    assert len(others) == 200 and all(a == b for a, b in others)
    tally = broken[-1]
    assert isinstance(tally, TextTally)
    assert tally.chars_total == tally.chars_framing + sum(
        text_chars(r.raw) for r in broken[:-1] if isinstance(r, Report | Rejection)
    )


def test_value_that_converts_to_infinity_is_rejected(tmp_path: Path) -> None:
    """1e308 hPa is a finite cell but inf Pa: a ``non_finite`` Rejection, never a stored inf."""
    path = tmp_path / "huge.csv"
    path.write_text(
        "station,valid,lat,lon,mslp,tmpf\n"
        "AAA,2024-01-01 00:00,10,20,1e308,50\n"
        "AAA,2024-01-01 01:00,10,20,1013.2,50\n"
    )
    cols = {
        "mslp": {"variable": "msl", "units": "hPa"},
        "tmpf": {"variable": "t2m", "units": "degF"},
    }
    recs = _decode(TableSource(columns=cols, lat="lat", lon="lon"), path)
    bad, good = recs
    assert isinstance(bad, Rejection) and bad.check == "non_finite", bad
    assert bad.report_id == "huge.csv:2" and "msl" in bad.reason
    assert isinstance(good, Report) and good.values["msl"] == pytest.approx(101320.0)
