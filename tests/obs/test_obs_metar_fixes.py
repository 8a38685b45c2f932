"""Issue 11 item 2 and 3, issue 12 (METAR part): real NWS reports from the shared collectives,
mutated where the defect needs it, through MetarSource.

Each test fails on the reader before these fixes: ``METAR COR CCCC`` was rejected, a wind
group with direction 900 stored its speed, ``SLPppp`` in the body was ignored, a file named
``2024010112.txt`` could not be dated, QNH was stored as msl, and ``A0000`` raised out of
``read`` and lost the whole file.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from stratocast.obs.base import Record, Rejection, Report, TextTally, Unparsed, text_chars
from stratocast.obs.harmonise import qnh_to_station_pressure, reduce_to_msl
from stratocast.obs.registry import get_source
from stratocast.obs.sources.metar import MetarConfigError, MetarSource
from stratocast.obs.stations import StationCatalogue

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
METAR = DATA / "metar"
pytestmark = pytest.mark.skipif(
    not METAR.is_dir(), reason=f"real sample data not found at {METAR} (../shared/data)"
)
REF = datetime(2024, 9, 8, 14, 0, tzinfo=UTC)
SHARED_FILES = sorted(METAR.glob("*.txt")) if METAR.is_dir() else []


def _reports(records: list[Record]) -> dict[str, Any]:
    return {r.report_id: r for r in records if isinstance(r, Report | Rejection)}


def _real_report(station_line: int, path: Path | None = None) -> str:
    """The raw text of one real report of collective.txt (its first line number)."""
    src = MetarSource(reference_time=REF)
    recs = _reports(list(src.read(path or METAR / "collective.txt", StationCatalogue())))
    rec = recs[f"collective.txt:{station_line}"]
    return str(rec.raw)


def _read(tmp_path: Path, text: str, airports: StationCatalogue, name: str = "m.txt") -> list:
    f = tmp_path / name
    f.write_text(text, encoding="latin-1")
    return list(MetarSource(reference_time=REF).read(f, airports))


def test_cor_before_station_is_decoded(tmp_path: Path, airports: StationCatalogue) -> None:
    # KALO 081354Z AUTO 02049G53KT ... as the FM 15 correction "METAR COR KALO ..."
    kalo = _real_report(15)
    recs = _read(tmp_path, f"METAR COR {kalo}=\n{kalo}=\n", airports)
    cor, orig = (r for r in recs if isinstance(r, Report | Rejection))
    assert isinstance(cor, Report), cor
    assert isinstance(orig, Report)
    assert cor.station_id == orig.station_id and cor.time == orig.time
    assert dict(cor.values) == dict(orig.values)
    # a correction: QC's corrected check replaces the original of the same station and time
    assert cor.report_id.endswith(":CCA") and not orig.report_id.endswith(":CCA")


def test_cor_correction_replaces_original_in_qc(tmp_path: Path, airports: StationCatalogue) -> None:
    from stratocast.obs.qc import QCConfig, run_qc
    from stratocast.obs.table import collect

    kalo = _real_report(15)
    fixed = kalo.replace("T10441072", "T10401072")  # -4.4 -> -4.0 degC
    recs = _read(tmp_path, f"{kalo}=\nMETAR COR {fixed}=\n", airports)
    out = run_qc(collect(recs, "metar").values, QCConfig())
    t2m = out[out["variable"] == "t2m"].set_index("report_id")
    orig, cor = (r for r in recs if isinstance(r, Report))
    assert cor.report_id.endswith(":CCA")
    assert t2m.loc[orig.report_id, "check"] == "corrected"
    assert cor.report_id in t2m.loc[orig.report_id, "reason"]
    assert t2m.loc[cor.report_id, "check"] is None
    assert t2m.loc[cor.report_id, "value"] == pytest.approx(269.15)  # the corrected -4.0


@pytest.mark.parametrize(
    ("wind", "why"),
    [("90010KT", "direction 900 outside 0-360"), ("10510KT", "not a multiple of 10")],
)
def test_bad_wind_group_rejected_whole(
    tmp_path: Path, airports: StationCatalogue, wind: str, why: str
) -> None:
    ksps = _real_report(5)  # KSPS 081352Z 10015KT ...
    assert " 10015KT " in ksps
    (rec, _) = _read(tmp_path, ksps.replace(" 10015KT ", f" {wind} ") + "=\n", airports)
    assert isinstance(rec, Report)
    # both halves of the group are kept, flagged with the reason, and nothing derived from them
    for var in ("ws10", "wd10"):
        assert var in rec.values, var
        check, reason = rec.flags[var]
        assert check == "wind_group" and why in reason and wind in reason
    assert "u10" not in rec.values and "v10" not in rec.values
    # the rest of the report is untouched
    assert rec.values["t2m"] == pytest.approx(298.15) and "msl" in rec.values


def test_bad_wind_group_reaches_quarantine(tmp_path: Path, airports: StationCatalogue) -> None:
    from stratocast.obs.qc import QCConfig, run_qc
    from stratocast.obs.table import collect

    ksps = _real_report(5).replace(" 10015KT ", " 90010KT ")
    recs = _read(tmp_path, ksps + "=\n", airports)
    out = run_qc(collect(recs, "metar").values, QCConfig())
    wind = out[out["variable"].isin(["ws10", "wd10"])]
    assert len(wind) == 2 and (wind["check"] == "wind_group").all()
    assert out.loc[out["variable"] == "t2m", "check"].isna().all()


def test_slp_in_body_is_msl(tmp_path: Path, airports: StationCatalogue) -> None:
    # KALO ... M04/M07 A2984 RMK AO2 SLP119 T10441072: move SLP119 out of the remarks
    kalo = _real_report(15)
    body = kalo.replace(" SLP119", "").replace(" A2984 ", " A2984 SLP119 ")
    (rec, _) = _read(tmp_path, body + "=\n", airports)
    assert isinstance(rec, Report)
    assert rec.values["msl"] == pytest.approx(101190.0)
    assert rec.values["qnh"] == pytest.approx(29.84 * 3386.389, abs=0.5)


@pytest.mark.parametrize(
    ("name", "limit_day"),
    [("2024090814.txt", 8), ("2024090814_metar.txt", 8), ("202409081400.txt", 8)],
)
def test_files_named_with_an_hour_are_dated(
    tmp_path: Path, airports: StationCatalogue, name: str, limit_day: int
) -> None:
    text = (METAR / "collective.txt").read_bytes()
    f = tmp_path / name
    f.write_bytes(text)
    recs = [r for r in MetarSource().read(f, airports) if isinstance(r, Report)]
    assert len(recs) == 11
    assert {r.time.date() for r in recs} == {date(2024, 9, limit_day)}


def test_undatable_name_says_how(tmp_path: Path, airports: StationCatalogue) -> None:
    from stratocast.obs.base import SourceFileError

    f = tmp_path / "2024099999.txt"  # not a date: the name cannot date the file
    f.write_bytes((METAR / "collective.txt").read_bytes())
    with pytest.raises(SourceFileError, match="reference_time"):
        list(MetarSource().read(f, airports))


@pytest.mark.parametrize("ref", ["2024-09-08T14:00", datetime(2024, 9, 8, 14), date(2024, 9, 8)])
def test_reference_time_from_source_options(airports: StationCatalogue, ref: object) -> None:
    """The ingest config's ``options: {reference_time: ...}`` reach the reader through the
    registry as keyword arguments; YAML gives a str, a datetime or a date."""
    src = get_source("metar", reference_time=ref)
    recs = [r for r in src.read(METAR / "collective.txt", airports) if isinstance(r, Report)]
    assert len(recs) == 11 and all(r.time.month == 9 for r in recs)


def test_bad_reference_time_names_the_option() -> None:
    with pytest.raises(MetarConfigError, match="reference_time"):
        MetarSource(reference_time="last tuesday")
    with pytest.raises(MetarConfigError, match="reference_time"):
        MetarSource(reference_time=12)  # type: ignore[arg-type]


def test_qnh_is_not_msl_on_real_us_reports(airports: StationCatalogue) -> None:
    """Every shared report with both an altimeter group and an SLP remark: qnh and msl are
    different variables, and on these NWS collectives they differ by up to 1.93 hPa
    (collective2.txt:22, a 189 m station), far beyond the 0.01 inHg resolution."""
    src = MetarSource(reference_time=REF)
    diffs: list[float] = []
    for path in SHARED_FILES:
        for rec in src.read(path, airports):
            if isinstance(rec, Report) and "qnh" in rec.values and "SLP" in rec.raw:
                diffs.append(abs(rec.values["qnh"] - rec.values["msl"]))
    assert len(diffs) >= 30
    assert max(diffs) / 100.0 == pytest.approx(1.93, abs=0.01)
    assert max(diffs) > 5 * 0.01 * 3386.389  # not a rounding effect


def test_msl_without_slp_is_the_documented_reduction(airports: StationCatalogue) -> None:
    """No SLP remark: msl = WMO reduction of the station pressure the QNH stands for, only at
    stations up to 500 m; never the QNH itself."""
    src = MetarSource(reference_time=REF)
    n = 0
    for path in SHARED_FILES:
        for rec in src.read(path, airports):
            if not isinstance(rec, Report) or "qnh" not in rec.values or "SLP" in rec.raw:
                continue
            v = rec.values
            assert v["sp"] == pytest.approx(qnh_to_station_pressure(v["qnh"], rec.elevation))
            want = reduce_to_msl(v["sp"], v["t2m"], rec.elevation, v.get("d2m"))
            if want is None:
                assert "msl" not in v, rec.report_id
            else:
                n += 1
                assert v["msl"] == pytest.approx(want) and v["msl"] != v["qnh"]
    assert n >= 5


@pytest.mark.parametrize("group", ["A0000", "Q0000"])
def test_zero_altimeter_is_one_rejection(
    tmp_path: Path, airports: StationCatalogue, group: str
) -> None:
    """Issue 12: the pressure conversion of A0000/Q0000 raised (a complex power) and the
    whole file was lost. Now that report is a Rejection naming the group; the rest lands."""
    data = (METAR / "collective.txt").read_bytes()
    assert b" A2967 " in data
    f = tmp_path / "20240908.txt"
    f.write_bytes(data.replace(b" A2967 ", f" {group} ".encode()))
    before = _reports(
        list(MetarSource(reference_time=REF).read(METAR / "collective.txt", airports))
    )
    after = _reports(list(MetarSource(reference_time=REF).read(f, airports)))
    bad = after["20240908.txt:5"]
    assert isinstance(bad, Rejection) and bad.check == "decode_error"
    assert "altimeter setting 0 hPa" in bad.reason and "line 5" in bad.reason
    assert group in bad.raw
    for rid, rec in before.items():
        if rid == "collective.txt:5":
            continue
        other = after[rid.replace("collective.txt", "20240908.txt")]
        assert type(other) is type(rec)
        if isinstance(rec, Report):
            assert dict(other.values) == dict(rec.values)


def _identity(records: list[Record]) -> tuple[int, int]:
    tally = records[-1]
    assert isinstance(tally, TextTally)
    assert not any(isinstance(r, TextTally) for r in records[:-1])
    inside = sum(text_chars(r.raw) for r in records if isinstance(r, Report | Rejection))
    inside += sum(text_chars(r.text) for r in records if isinstance(r, Unparsed))
    return tally.chars_total, inside + tally.chars_framing


@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.name)
def test_text_identity_on_every_shared_file(path: Path, airports: StationCatalogue) -> None:
    records = list(MetarSource(reference_time=REF).read(path, airports))
    total, accounted = _identity(records)
    assert total == text_chars(path.read_bytes().decode("latin-1"))
    assert total == accounted


def test_framing_is_what_the_bulletin_structure_is(airports: StationCatalogue) -> None:
    # collective.txt: SOH, "776", "SAUS70 KWBC 081400", "METAR", 14 report-ending '=', ETX
    path = METAR / "collective.txt"
    tally = list(MetarSource(reference_time=REF).read(path, airports))[-1]
    assert isinstance(tally, TextTally)
    text = path.read_bytes().decode("latin-1")
    assert text.startswith("\x01") and text.rstrip().endswith("\x03")
    heading = len("776") + len("SAUS70KWBC081400") + len("METAR")
    assert tally.chars_framing == 2 + heading + text.count("=")


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        op = rng.random()
        if op < 0.5:
            b[i] = rng.choice(b"0123456789AQMKTSLP/ =\n\x00\xff")
        elif op < 0.75:
            del b[i]
        else:
            b.insert(i, rng.randrange(256))
    return bytes(b)


@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.name)
def test_mutated_files_never_raise_and_balance(
    path: Path, airports: StationCatalogue, tmp_path: Path
) -> None:
    """Seeded mutation loop (short here; issue 12's robustness benchmark runs it long): no
    exception escapes read, every report is a Report or Rejection, the identity holds."""
    rng = random.Random(path.name)
    data = path.read_bytes()
    f = tmp_path / "20240908.txt"
    src = MetarSource(reference_time=REF)
    for _ in range(60):
        f.write_bytes(_mutate(data, rng))
        records = list(src.read(f, airports))
        total, accounted = _identity(records)
        assert total == accounted
        for r in records:
            if isinstance(r, Report):
                assert all(isinstance(v, float) and v == v for v in r.values.values()), r


def test_gts_envelope_is_framing(tmp_path: Path, airports: StationCatalogue) -> None:
    """collective.txt inside a GTS message envelope (ZCZC nnn ... NNNN), as WMO links send it:
    the envelope is framing, not three rejected 'reports'."""
    data = (METAR / "collective.txt").read_bytes()
    f = tmp_path / "20240908.txt"
    f.write_bytes(b"ZCZC 123\r\r\n" + data + b"NNNN\r\r\n")
    plain = list(MetarSource(reference_time=REF).read(METAR / "collective.txt", airports))
    wrapped = list(MetarSource(reference_time=REF).read(f, airports))
    assert len(wrapped) == len(plain)
    raws = [r.raw for r in wrapped if isinstance(r, Report | Rejection)]
    assert not any("ZCZC" in raw or "NNNN" in raw for raw in raws)
    total, accounted = _identity(wrapped)
    assert total == accounted
    tally_plain, tally_wrapped = plain[-1], wrapped[-1]
    assert isinstance(tally_plain, TextTally) and isinstance(tally_wrapped, TextTally)
    assert tally_wrapped.chars_framing == tally_plain.chars_framing + len("ZCZC123NNNN")


def test_no_false_alarm_from_the_new_checks_on_real_metars(airports: StationCatalogue) -> None:
    """QC over every shared report with the catalogue: the position and station-pressure
    checks quarantine nothing real (the collectives' few flags are duplicates and steps)."""
    from stratocast.obs.qc import QCConfig, run_qc
    from stratocast.obs.table import collect

    src = MetarSource(reference_time=REF)
    recs = [r for path in SHARED_FILES for r in src.read(path, airports)]
    out = run_qc(collect(recs, "metar").values, QCConfig(), catalogue=airports)
    assert len(out) > 400
    assert not out["check"].eq("position").any()
    assert not out.loc[out["variable"].isin(["sp", "qnh", "msl"]), "check"].eq("consistency").any()
