"""SYNOP BUFR reader against values read key-by-key with ecCodes and from ``bufr_dump -p``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import eccodes
import pytest

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.synop_bufr import SynopBufrSource
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.testing.sources import SourceTests

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real sample data not found at {DATA} (../shared/data)"
)
BUFR = DATA / "bufr"


@needs_data
class TestSynopBufrConformance(SourceTests):
    @pytest.fixture
    def source(self) -> SynopBufrSource:
        return SynopBufrSource()

    @pytest.fixture(
        params=[
            "dwd_synop_20210516T12.bufr",
            "synop_multi_subset_uncompressed.bufr",
            "syn_new.bufr",
        ]
    )
    def sample_file(self, request: pytest.FixtureRequest) -> Path:
        return BUFR / request.param

    @pytest.fixture
    def catalogue(self) -> None:
        return None


@needs_data
def test_dwd_against_bufr_dump() -> None:
    recs = {
        r.report_id: r
        for r in SynopBufrSource().read(BUFR / "dwd_synop_20210516T12.bufr")
        if isinstance(r, Report | Rejection)
    }
    # bufr_dump -p, message 1, subset 2: blockNumber=10 stationNumber=37, airTemperature=286.65
    # (height 2 m), dewpointTemperature=282.15, windDirection=150 windSpeed=2 (10 m),
    # pressureReducedToMeanSeaLevel=99970, nonCoordinatePressure=99660
    r = recs["dwd_synop_20210516T12.bufr:1:2"]
    assert isinstance(r, Report)
    assert r.station_id == "10037"
    assert r.time == datetime(2021, 5, 16, 12, 0, tzinfo=UTC)
    assert (r.lat, r.lon) == pytest.approx((54.455, 9.51944))
    assert r.values["t2m"] == pytest.approx(286.65)
    assert r.values["d2m"] == pytest.approx(282.15)
    assert r.values["wd10"] == 150.0 and r.values["ws10"] == 2.0
    assert r.values["msl"] == 99970.0 and r.values["sp"] == 99660.0
    assert not r.flags
    # subset 1 (10033): wind sensor at 32 m -> decoded but flagged, u/v flagged with it
    r1 = recs["dwd_synop_20210516T12.bufr:1:1"]
    assert isinstance(r1, Report)
    assert r1.flags["ws10"][0] == "sensor_height" and "32 m" in r1.flags["ws10"][1]
    assert r1.flags["u10"][0] == "derived"
    assert "t2m" not in r1.values  # airTemperature=MISSING


@needs_data
def test_uncompressed_multi_subset_matches_eccodes_per_subset() -> None:
    path = BUFR / "synop_multi_subset_uncompressed.bufr"
    recs = list(SynopBufrSource().read(path))
    with open(path, "rb") as f:
        h = eccodes.codes_bufr_new_from_file(f)
        try:
            eccodes.codes_set(h, "unpack", 1)
            n = eccodes.codes_get(h, "numberOfSubsets")
            expect = []
            for s in range(1, n + 1):
                q = f"/subsetNumber={s}/"
                expect.append(
                    (
                        eccodes.codes_get(h, q + "stationNumber"),
                        eccodes.codes_get_array(h, q + "airTemperature")[0],
                        eccodes.codes_get_array(h, q + "dewpointTemperature")[0],
                    )
                )
        finally:
            eccodes.codes_release(h)
    assert len(recs) == n == 12
    for r, (station, t, td) in zip(recs, expect, strict=True):
        assert isinstance(r, Report)
        assert int(r.station_id) % 1000 == station
        assert r.values["t2m"] == pytest.approx(t)
        assert r.values["d2m"] == pytest.approx(td)


def _compressed_message() -> bytes:
    h = eccodes.codes_bufr_new_from_samples("BUFR4")
    try:
        eccodes.codes_set(h, "numberOfSubsets", 3)
        eccodes.codes_set(h, "compressedData", 1)
        eccodes.codes_set(h, "dataCategory", 0)
        eccodes.codes_set_array(h, "unexpandedDescriptors", [301090, 302031, 302035])
        eccodes.codes_set_array(h, "blockNumber", [10, 10, 10])
        eccodes.codes_set_array(h, "stationNumber", [1, 2, 3])
        for k, v in {"year": 2021, "month": 5, "day": 16, "hour": 12, "minute": 0}.items():
            eccodes.codes_set_array(h, k, [v] * 3)
        eccodes.codes_set_array(h, "latitude", [50.0, 51.0, 52.0])
        eccodes.codes_set_array(h, "longitude", [7.0, 8.0, 9.0])
        eccodes.codes_set_array(h, "airTemperature", [280.0, 281.5, 282.25])
        eccodes.codes_set_array(
            h, "#1#heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform", [2.0] * 3
        )
        eccodes.codes_set(h, "pack", 1)
        return bytes(eccodes.codes_get_message(h))
    finally:
        eccodes.codes_release(h)


def test_compressed_and_corrupt_message(tmp_path: Path) -> None:
    msg = _compressed_message()
    broken = msg[: len(msg) // 2]  # truncated: no 7777 where section 0 says the end is
    f = tmp_path / "mixed.bufr"
    f.write_bytes(msg + broken + msg)
    cat = StationCatalogue([Station("DE-ONE", 50.0, 7.0, 111.0, wmo_id="10001")])
    recs = list(SynopBufrSource().read(f, cat))
    bad = [r for r in recs if isinstance(r, Rejection)]
    assert len(bad) == 1 and bad[0].check == "corrupt_message"
    assert bad[0].report_id == "mixed.bufr:2" and "message 2" in bad[0].reason
    good = [r for r in recs if isinstance(r, Report)]
    assert [r.report_id for r in good[:3]] == ["mixed.bufr:1:1", "mixed.bufr:1:2", "mixed.bufr:1:3"]
    assert len(good) == 6  # message 3 still decodes after the corrupt one
    assert [r.values["t2m"] for r in good[:3]] == [280.0, 281.5, 282.25]
    assert good[0].station_id == "DE-ONE" and good[1].station_id == "10002"  # catalogue id
    assert good[0].elevation == 111.0  # missing in the message, filled from the catalogue


@needs_data
def test_wigos_ids_and_non_synop() -> None:
    recs = [
        r
        for r in SynopBufrSource().read(BUFR / "synop_wigos.bufr")
        if isinstance(r, Report | Rejection)
    ]
    assert [r.station_id for r in recs] == ["0-705-0-1931", "0-705-0-1932", "0-705-0-1933"]
    assert isinstance(recs[0], Report)
    assert recs[0].values["t2m"] == pytest.approx(280.15) and recs[0].values[
        "ws10"
    ] == pytest.approx(8.2)
    (inv,) = SynopBufrSource().read(BUFR / "synop_invalid_wigos_id.bufr")
    assert isinstance(inv, Rejection) and inv.check == "no_station_id"
    temp = list(SynopBufrSource().read(BUFR / "temp_small.bufr"))
    assert all(isinstance(r, Rejection) and r.check == "not_synop" for r in temp)


def _eccodes_keys(path: Path, keys: list[str]) -> list[dict[str, float | None]]:
    """Per message, the first occurrence of each key, read with ecCodes key by key."""
    out = []
    with open(path, "rb") as f:
        while (h := eccodes.codes_bufr_new_from_file(f)) is not None:
            try:
                eccodes.codes_set(h, "unpack", 1)
                row: dict[str, float | None] = {}
                for k in keys:
                    try:
                        v = float(eccodes.codes_get_array(h, k)[0])
                    except eccodes.KeyValueNotFoundError:
                        v = None
                    missing = (eccodes.CODES_MISSING_DOUBLE, eccodes.CODES_MISSING_LONG)
                    row[k] = None if v is None or v in missing else v
                out.append(row)
            finally:
                eccodes.codes_release(h)
    return out


@needs_data
def test_ecmwf_bufr3_local_section_against_eccodes_keys() -> None:
    path = BUFR / "obs_3day.bufr"
    keys = [
        "blockNumber",
        "stationNumber",
        "localLatitude",
        "localLongitude",
        "airTemperatureAt2M",
        "dewpointTemperatureAt2M",
        "windSpeedAt10M",
        "windDirectionAt10M",
        "pressureReducedToMeanSeaLevel",
    ]
    expect = _eccodes_keys(path, keys)
    recs = list(SynopBufrSource().read(path))
    reports = [r for r in recs if isinstance(r, Report)]
    rejections = [r for r in recs if isinstance(r, Rejection)]
    assert len(expect) == 50 == len(reports) + len(rejections)  # one subset per message
    # messages 46 and 47 (06252, 06310) carry no 2 m / 10 m / msl value at all
    assert [(r.report_id, r.check) for r in rejections] == [
        ("obs_3day.bufr:46:1", "no_data"),
        ("obs_3day.bufr:47:1", "no_data"),
    ]
    var = dict(zip(keys[4:], ["t2m", "d2m", "ws10", "wd10", "msl"], strict=True))
    assert all(expect[i][k] is None for i in (45, 46) for k in var)
    for r in reports:
        e = expect[int(r.report_id.split(":")[1]) - 1]
        block, station = e["blockNumber"], e["stationNumber"]
        assert block is not None and station is not None
        assert r.station_id == f"{int(block):02d}{int(station):03d}"
        # the ECMWF local section repeats the position: it must agree with the data
        assert (r.lat, r.lon) == pytest.approx((e["localLatitude"], e["localLongitude"]), abs=1e-5)
        assert r.time == datetime(2017, 4, 25, 12, 0, tzinfo=UTC)
        for key, v in var.items():
            if e[key] is None:
                assert v not in r.values
            else:
                assert r.values[v] == pytest.approx(e[key])


@needs_data
def test_radiation_synop_against_eccodes_keys() -> None:
    path = BUFR / "synop_radiation.bufr"
    keys = [
        "airTemperature",
        "dewpointTemperature",
        "windSpeed",
        "windDirection",
        "pressureReducedToMeanSeaLevel",
        "nonCoordinatePressure",
    ]
    expect = _eccodes_keys(path, keys)
    recs = list(SynopBufrSource().read(path))
    assert len(recs) == len(expect) == 2 and all(isinstance(r, Report) for r in recs)
    var = dict(zip(keys, ["t2m", "d2m", "ws10", "wd10", "msl", "sp"], strict=True))
    for r, e in zip(recs, expect, strict=True):
        assert isinstance(r, Report)
        for key, v in var.items():
            if e[key] is None:
                assert v not in r.values or r.flags.get(v, ("",))[0] == "derived"
            else:
                assert r.values[v] == pytest.approx(e[key])
    # hand-checked from bufr_dump -p: message 2 is Lisbon (0-620-2001-08579), t2m at 1.5 m
    assert isinstance(recs[1], Report) and recs[1].station_id == "0-620-2001-08579"
    assert recs[1].values["t2m"] == pytest.approx(283.65) and recs[1].values["wd10"] == 246
