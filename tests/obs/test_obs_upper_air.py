"""TEMP and aircraft BUFR readers against values read key by key with ecCodes in the test."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import eccodes
import numpy as np
import pytest

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.aircraft_bufr import AircraftBufrSource, pressure_from_flight_level
from stratocast.obs.sources.temp_bufr import TempBufrSource
from stratocast.testing.sources import SourceTests

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real sample data not found at {DATA} (../shared/data)"
)
TEMP = DATA / "bufr" / "temp_small.bufr"
AIRCRAFT = DATA / "bufr" / "aircraft_small.bufr"


def _messages(path: Path) -> list[dict[str, np.ndarray]]:
    """Per message the full arrays of the keys the tests compare, read directly with ecCodes."""
    out = []
    with path.open("rb") as f:
        while (h := eccodes.codes_bufr_new_from_file(f)) is not None:
            try:
                eccodes.codes_set(h, "unpack", 1)
                keys = {"numberOfSubsets": np.array([eccodes.codes_get(h, "numberOfSubsets")])}
                for k in ("pressure", "airTemperature", "windSpeed", "windDirection"):
                    keys[k] = eccodes.codes_get_array(h, k)
                if eccodes.codes_is_defined(h, "nonCoordinateGeopotential"):
                    keys["z"] = eccodes.codes_get_array(h, "nonCoordinateGeopotential")
                out.append(keys)
            finally:
                eccodes.codes_release(h)
    return out


def _uv(ws: float, wd: float) -> tuple[float, float]:
    return -ws * math.sin(math.radians(wd)), -ws * math.cos(math.radians(wd))


def _missing(v: float) -> bool:
    return bool(v <= -1e99 or v == eccodes.CODES_MISSING_LONG)


# ---------------------------------------------------------------- TEMP


@needs_data
class TestTempBufrConformance(SourceTests):
    @pytest.fixture
    def source(self) -> TempBufrSource:
        return TempBufrSource()

    @pytest.fixture
    def sample_file(self) -> Path:
        return TEMP

    @pytest.fixture
    def catalogue(self) -> None:
        return None


@needs_data
def test_temp_first_ascent_hand_values() -> None:
    # from an ecCodes key dump of message 1 (Kuujjuaq 71907, 2008-12-08 12 UTC):
    # 850 hPa: T 253.1 K, geopotential 12470 m2 s-2, 250 deg 9 m/s; 500 hPa: 228.1 K, 48940
    r = next(iter(TempBufrSource().read(TEMP)))
    assert isinstance(r, Report)
    assert r.station_id == "71907"
    assert (r.lat, r.lon, r.elevation) == (58.47, -78.08, 26.0)
    assert r.time == datetime(2008, 12, 8, 12, 0, tzinfo=UTC)
    assert r.values["t850"] == pytest.approx(253.1)
    assert r.values["z850"] == pytest.approx(12470.0)
    u, v = _uv(9.0, 250.0)
    assert (r.values["u850"], r.values["v850"]) == (pytest.approx(u), pytest.approx(v))
    assert r.values["t500"] == pytest.approx(228.1)
    assert r.values["z500"] == pytest.approx(48940.0)


@needs_data
def test_temp_values_match_eccodes_levels() -> None:
    refs = _messages(TEMP)
    reports = [r for r in TempBufrSource().read(TEMP) if isinstance(r, Report)]
    assert len(reports) == len(refs) == 7
    for ref, r in zip(refs, reports, strict=True):
        p = ref["pressure"]
        # TAC-derived TEMP: every level has each element, so the arrays line up
        assert len(ref["airTemperature"]) == len(p) == len(ref["z"])
        for level, suffix in ((85000.0, "850"), (50000.0, "500")):
            i = int(np.flatnonzero(p == level)[0])
            for key, var in (("airTemperature", "t"), ("z", "z")):
                if _missing(ref[key][i]):
                    assert f"{var}{suffix}" not in r.values
                else:
                    assert r.values[f"{var}{suffix}"] == pytest.approx(ref[key][i])
            ws, wd = ref["windSpeed"][i], ref["windDirection"][i]
            if not (_missing(ws) or _missing(wd)):
                u, v = _uv(float(ws), float(wd))
                assert r.values[f"u{suffix}"] == pytest.approx(u, abs=1e-9)
                assert r.values[f"v{suffix}"] == pytest.approx(v, abs=1e-9)


@needs_data
def test_temp_south_pole_850_below_ground_is_flagged() -> None:
    # 89009 (Amundsen-Scott, 2835 m) reports an extrapolated 850 hPa geopotential
    r = [r for r in TempBufrSource().read(TEMP) if isinstance(r, Report)][2]
    assert r.station_id == "89009" and r.elevation == 2835.0
    assert r.flags["z850"][0] == "below_ground"
    assert "t500" not in r.flags and "z500" not in r.flags


@needs_data
def test_temp_accounting_and_truncation(tmp_path: Path) -> None:
    n_subsets = sum(int(m["numberOfSubsets"][0]) for m in _messages(TEMP))
    records = list(TempBufrSource().read(TEMP))
    assert len(records) == n_subsets  # every subset is one report or one rejection
    data = TEMP.read_bytes()
    cut = tmp_path / "temp_cut.bufr"
    cut.write_bytes(data[: len(data) - 200])
    out = list(TempBufrSource().read(cut))
    assert [r.report_id for r in out if isinstance(r, Report)] == [
        f"temp_cut.bufr:{i}:1" for i in range(1, 7)
    ]
    (rej,) = [r for r in out if isinstance(r, Rejection)]
    assert rej.report_id == "temp_cut.bufr:7" and rej.check == "corrupt_message"
    assert "temp_cut.bufr: message 7" in rej.reason


@needs_data
def test_temp_rejects_aircraft_file() -> None:
    out = list(TempBufrSource().read(AIRCRAFT))
    assert out and all(isinstance(r, Rejection) and r.check == "not_sounding" for r in out)


# ---------------------------------------------------------------- aircraft

# aircraft_small.bufr has no observation near 850/500 hPa; this copy moves two observations
# there (pressure re-encoded with ecCodes) so the conformance suite sees reports.
_MOVED = {9: 84000.0, 3: 50200.0}  # message -> new pressure (Pa)


@pytest.fixture
def aircraft_moved(tmp_path: Path) -> Path:
    out = tmp_path / "aircraft_moved.bufr"
    with AIRCRAFT.open("rb") as f, out.open("wb") as g:
        i = 0
        while (h := eccodes.codes_bufr_new_from_file(f)) is not None:
            i += 1
            try:
                if i in _MOVED:
                    eccodes.codes_set(h, "unpack", 1)
                    eccodes.codes_set(h, "#1#pressure", _MOVED[i])
                    eccodes.codes_set(h, "pack", 1)
                g.write(eccodes.codes_get_message(h))
            finally:
                eccodes.codes_release(h)
    return out


@needs_data
class TestAircraftBufrConformance(SourceTests):
    @pytest.fixture
    def source(self) -> AircraftBufrSource:
        return AircraftBufrSource()

    @pytest.fixture
    def sample_file(self, aircraft_moved: Path) -> Path:
        return aircraft_moved

    @pytest.fixture
    def catalogue(self) -> None:
        return None


@needs_data
def test_aircraft_real_file_all_rejected_with_pressure() -> None:
    refs = _messages(AIRCRAFT)
    out = list(AircraftBufrSource().read(AIRCRAFT))
    assert len(out) == sum(int(m["numberOfSubsets"][0]) for m in refs) == 10
    for ref, r in zip(refs, out, strict=True):
        assert isinstance(r, Rejection) and r.check == "no_standard_level"
        assert f"{ref['pressure'][0] / 100:.1f} hPa" in r.reason
        assert r.time is not None and r.station_id
    # message 1 by hand: aircraft HGSKJFBA (flight QGOBTRRA) at 967.5 hPa, 2009-01-23 13:00
    first = out[0]
    assert isinstance(first, Rejection) and first.station_id == "HGSKJFBA"
    assert first.time == datetime(2009, 1, 23, 13, 0, tzinfo=UTC)
    assert "967.5 hPa" in first.reason


@needs_data
def test_aircraft_values_match_eccodes(aircraft_moved: Path) -> None:
    refs = _messages(aircraft_moved)
    out = list(AircraftBufrSource().read(aircraft_moved))
    reports = {r.report_id: r for r in out if isinstance(r, Report)}
    assert set(reports) == {"aircraft_moved.bufr:9:1", "aircraft_moved.bufr:3:1"}
    for i, suffix in ((9, "850"), (3, "500")):
        ref, r = refs[i - 1], reports[f"aircraft_moved.bufr:{i}:1"]
        assert ref["pressure"][0] == _MOVED[i]
        assert r.values[f"t{suffix}"] == pytest.approx(ref["airTemperature"][0])
        u, v = _uv(float(ref["windSpeed"][0]), float(ref["windDirection"][0]))
        assert r.values[f"u{suffix}"] == pytest.approx(u)
        assert r.values[f"v{suffix}"] == pytest.approx(v)
    # message 9 by hand: 266.2 K, 18.5 m/s; aircraft P4MAWDZA
    r9 = reports["aircraft_moved.bufr:9:1"]
    assert r9.station_id == "P4MAWDZA" and r9.values["t850"] == pytest.approx(266.2)
    assert math.hypot(r9.values["u850"], r9.values["v850"]) == pytest.approx(18.5)


@needs_data
def test_aircraft_truncated_copy(tmp_path: Path) -> None:
    data = AIRCRAFT.read_bytes()
    cut = tmp_path / "air_cut.bufr"
    cut.write_bytes(data[:-10])
    out = list(AircraftBufrSource().read(cut))
    assert len(out) == 10
    assert [r.report_id for r in out[:9]] == [f"air_cut.bufr:{i}:1" for i in range(1, 10)]
    last = out[9]
    assert isinstance(last, Rejection) and last.report_id == "air_cut.bufr:10"
    assert last.check == "corrupt_message" and "air_cut.bufr: message 10" in last.reason


def test_icao_standard_atmosphere() -> None:
    # ICAO Doc 7488 table values
    assert pressure_from_flight_level(0.0) == pytest.approx(101325.0)
    assert pressure_from_flight_level(1457.0) == pytest.approx(85000.0, abs=15.0)
    assert pressure_from_flight_level(5574.0) == pytest.approx(50000.0, abs=15.0)
    assert pressure_from_flight_level(11000.0) == pytest.approx(22632.0, abs=1.0)
    assert pressure_from_flight_level(12000.0) == pytest.approx(19330.0, abs=5.0)


def test_aircraft_tolerance_boundary() -> None:
    src = AircraftBufrSource()
    assert src._level(85000.0 - 2500.0) == "850"
    assert src._level(85000.0 + 2501.0) is None
    assert src._level(47500.0) == "500"
