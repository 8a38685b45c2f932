"""METAR reader against hand-decoded reports from the real NWS collectives."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stratocast.obs.base import Record, Rejection, Report, SourceFileError
from stratocast.obs.harmonise import reduce_to_msl
from stratocast.obs.sources.metar import MetarSource, qnh_to_station_pressure, split_reports
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.testing.sources import SourceTests

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real sample data not found at {DATA} (../shared/data)"
)
REF = datetime(2024, 9, 8, 14, 0, tzinfo=UTC)


def _by_id(records: Iterable[Record]) -> dict[str, Any]:  # Report or Rejection
    return {r.report_id: r for r in records if isinstance(r, Report | Rejection)}


def _records(records: Iterable[Record]) -> list[Any]:  # Report or Rejection
    """The reports and rejections, without the text tally that ends each file."""
    return [r for r in records if isinstance(r, Report | Rejection)]


@needs_data
class TestMetarConformance(SourceTests):
    @pytest.fixture
    def source(self) -> MetarSource:
        return MetarSource(reference_time=REF)

    @pytest.fixture(params=["collective.txt", "collective2.txt", "badchars.txt", "kawn.txt"])
    def sample_file(self, request: pytest.FixtureRequest) -> Path:
        return DATA / "metar" / request.param

    @pytest.fixture
    def catalogue(self, airports: StationCatalogue) -> StationCatalogue:
        return airports


@needs_data
def test_hand_decoded_collective(airports: StationCatalogue) -> None:
    recs = _by_id(MetarSource(reference_time=REF).read(DATA / "metar" / "collective.txt", airports))
    # KSPS 081352Z 10015KT ... 25/16 A2967 RMK ... SLP036 ... T02500161
    ksps = recs["collective.txt:5"]
    assert isinstance(ksps, Report)
    assert ksps.station_id == "KSPS"
    assert ksps.time == datetime(2024, 9, 8, 13, 52, tzinfo=UTC)
    v = ksps.values
    assert v["t2m"] == pytest.approx(25.0 + 273.15)  # T-group 0250, not the body 25
    assert v["d2m"] == pytest.approx(16.1 + 273.15)  # T-group 0161 beats the body 16
    assert v["msl"] == pytest.approx(100360.0)  # SLP036 -> 1003.6 hPa, preferred to A2967
    assert v["ws10"] == pytest.approx(15 * 0.514444, rel=1e-5)
    assert v["wd10"] == 100.0
    # from 100°, 7.72 m/s: u = -ws*sin(100°) = -7.599, v = -ws*cos(100°) = +1.34
    assert v["u10"] == pytest.approx(-7.599, abs=1e-3)
    assert v["v10"] == pytest.approx(1.340, abs=1e-3)
    # KALO ... 02049G53KT ... M04/M07 A2984 RMK AO2 SLP119 T10441072
    kalo = recs["collective.txt:15"].values
    assert kalo["t2m"] == pytest.approx(-4.4 + 273.15)
    assert kalo["d2m"] == pytest.approx(-7.2 + 273.15)
    assert kalo["msl"] == pytest.approx(101190.0)
    assert kalo["ws10"] == pytest.approx(49 * 0.514444, rel=1e-5)  # gust ignored
    # KMIA ... 16032G45KT ... 23/19 A3003, no SLP, no T-group: A3003 is qnh, never msl; msl
    # is reduced from the station pressure A3003 stands for, with the actual temperature
    kmia_rec = recs["collective.txt:7"]
    assert isinstance(kmia_rec, Report)
    kmia = kmia_rec.values
    assert kmia["t2m"] == pytest.approx(296.15) and kmia["d2m"] == pytest.approx(292.15)
    assert kmia["qnh"] == pytest.approx(30.03 * 3386.389)
    sp = qnh_to_station_pressure(kmia["qnh"], kmia_rec.elevation)
    assert kmia["sp"] == pytest.approx(sp)
    assert kmia["msl"] == pytest.approx(reduce_to_msl(sp, 296.15, kmia_rec.elevation, 292.15))
    assert kmia["msl"] != kmia["qnh"]
    # KAMW ... 00000KT: calm
    kamw = recs["collective.txt:23"].values
    assert kamw["ws10"] == 0.0 and kamw["wd10"] == 0.0 and kamw["u10"] == 0.0


@needs_data
def test_malformed_lines_rejected_rest_lands(airports: StationCatalogue) -> None:
    recs = _records(
        MetarSource(reference_time=REF).read(DATA / "metar" / "collective.txt", airports)
    )
    rej = {r.report_id: r for r in recs if isinstance(r, Rejection)}
    assert rej["collective.txt:31"].check == "unknown_station"  # QQQQ 081354Z=
    assert "unknown station" in rej["collective.txt:31"].reason
    assert "day/time" in rej["collective.txt:32"].reason  # QQQQ O81354Z (letter O)
    assert "station identifier" in rej["collective.txt:33"].reason  # 1QQQ
    assert rej["collective.txt:33"].raw.startswith("1QQQ 081354Z")
    assert sum(isinstance(r, Report) for r in recs) == 11  # every real report decoded


@needs_data
def test_nul_byte_rejected(airports: StationCatalogue) -> None:
    recs = _records(MetarSource(reference_time=REF).read(DATA / "metar" / "nullbyte.txt", airports))
    assert len(recs) == 1
    (r,) = recs
    assert isinstance(r, Rejection) and r.report_id == "nullbyte.txt:5"
    assert "control character" in r.reason and "\x00" in r.raw


@needs_data
def test_badchars_and_wmo_headers(airports: StationCatalogue) -> None:
    recs = _records(MetarSource(reference_time=REF).read(DATA / "metar" / "badchars.txt", airports))
    assert [r.station_id for r in recs] == ["HKJK", "HRYR", "HUEN"]
    hryr = recs[1]
    assert isinstance(hryr, Report)
    assert hryr.values["t2m"] == pytest.approx(294.15)  # survives the UTF-8 no-break space
    assert hryr.values["qnh"] == pytest.approx(102100.0)  # Q1021
    # Kigali is ~1490 m high: above the WMO reduction's 500 m, so no msl at all
    assert hryr.elevation > 500.0 and "msl" not in hryr.values


@needs_data
def test_month_rollover_from_bulletin(airports: StationCatalogue) -> None:
    # first.txt: bulletin of the 1st at 00:30, KSPS 302352Z belongs to the previous month
    src = MetarSource(reference_time=datetime(2024, 9, 1, 0, 30, tzinfo=UTC))
    recs = _records(src.read(DATA / "metar" / "first.txt", airports))
    assert recs[0].time == datetime(2024, 8, 30, 23, 52, tzinfo=UTC)
    assert recs[1].time == datetime(2024, 9, 1, 0, 1, tzinfo=UTC)


def test_plain_file_dated_by_name(tmp_path: Path) -> None:
    cat = StationCatalogue([Station("S1", 10.0, 20.0, 100.0, icao="ABCD")])
    f = tmp_path / "20240301.txt"
    f.write_text(
        "METAR ABCD 292350Z 27010MPS 9999 M02/M05 Q1015\n"
        "SPECI ABCD 010020Z VRB03KT CAVOK 01/M01 Q1014 NOSIG\n"
        "ABCD 010050Z NIL=\n"
    )
    a, b, c = _records(MetarSource().read(f, cat))
    assert a.time == datetime(2024, 2, 29, 23, 50, tzinfo=UTC)  # leap day, previous month
    assert a.station_id == "S1" and a.values["ws10"] == 10.0 and a.values["u10"] == 10.0
    assert a.values["sp"] == pytest.approx(qnh_to_station_pressure(101500.0, 100.0))
    assert "wd10" not in b.values and "u10" not in b.values  # VRB: speed only
    assert isinstance(c, Rejection) and c.check == "nil"


def test_undatable_file_is_a_file_error(tmp_path: Path) -> None:
    f = tmp_path / "metar.txt"
    f.write_text("ABCD 010020Z 00000KT 01/M01 Q1014\n")
    with pytest.raises(SourceFileError, match="YYYYMMDD"):
        list(MetarSource().read(f, StationCatalogue()))


def test_qnh_inversion_matches_standard_atmosphere() -> None:
    # at sea level QNH is station pressure; at 1500 m the ICAO atmosphere gives ~845.6 hPa
    assert qnh_to_station_pressure(101325.0, 0.0) == pytest.approx(101325.0, rel=1e-4)
    assert qnh_to_station_pressure(101325.0, 1500.0) == pytest.approx(84556.0, rel=2e-3)


def test_split_reports_continuations() -> None:
    text = (
        "\x01\r\r\n123 \r\r\nSAUS70 KWBC 081400\r\r\nMETAR\r\r\n"
        "AAAA 081352Z 10015KT\r\r\n  25/16=\r\r\n"
    )
    assert list(split_reports(text.replace("\r", ""))) == [(5, "AAAA 081352Z 10015KT 25/16")]
