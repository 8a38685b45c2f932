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
    out = [r for r in AircraftBufrSource().read(cut) if isinstance(r, Report | Rejection)]
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


# ---------------------------------------------------------------- aircraft, TM 311001

# TM 311001 ("aircraft reports", FM 42 AMDAR) gives the flight level as ``height`` (007002,
# a pressure altitude, 10 m resolution) and no pressure: most of a global AMDAR feed. The
# shared file is TM 311010-like (pressure 007004), so each of its messages is re-encoded here
# as 311001 with ecCodes: the same flight, time, place, temperature and wind, the pressure
# replaced by its pressure altitude (inverse ICAO formula written out below, independent of
# the reader's). Messages 9 and 3 are moved to the 850/500 hPa pressure altitudes of the ICAO
# table (1457 m, 5574 m) so that reports come out, as in ``aircraft_moved``.
_MOVED_311001 = {9: 1460.0, 3: 5570.0}  # message -> height (m, on the 10 m grid)


def _pressure_altitude(p: float) -> float:
    """Inverse ICAO standard atmosphere below 20 km (geopotential m from Pa)."""
    t0, lapse, g0, r = 288.15, 0.0065, 9.80665, 287.05287
    if p >= 22632.06:
        return t0 / lapse * (1.0 - (p / 101325.0) ** (r * lapse / g0))
    return 11000.0 + r * 216.65 / g0 * math.log(22632.06 / p)


def _encode_311001(fields: dict[str, object]) -> bytes:
    h = eccodes.codes_bufr_new_from_samples("BUFR4")
    try:
        for key, value in (
            ("dataCategory", 4),
            ("masterTablesVersionNumber", 13),
            ("numberOfSubsets", 1),
            ("observedData", 1),
            ("compressedData", 0),
        ):
            eccodes.codes_set(h, key, value)
        eccodes.codes_set_array(h, "unexpandedDescriptors", [311001])
        for name, given in fields.items():
            eccodes.codes_set(h, name, given)
        eccodes.codes_set(h, "pack", 1)
        return bytes(eccodes.codes_get_message(h))
    finally:
        eccodes.codes_release(h)


@pytest.fixture
def aircraft_311001(tmp_path: Path) -> tuple[Path, list[float]]:
    """The shared file as TM 311001 messages, and each message's original pressure (Pa)."""
    out, pressures = tmp_path / "aircraft_311001.bufr", []
    copied = ["aircraftFlightNumber", "year", "month", "day", "hour", "minute"]
    copied += ["latitude", "longitude", "phaseOfAircraftFlight", "airTemperature"]
    copied += ["windDirection", "windSpeed"]
    with AIRCRAFT.open("rb") as f, out.open("wb") as g:
        i = 0
        while (h := eccodes.codes_bufr_new_from_file(f)) is not None:
            i += 1
            try:
                eccodes.codes_set(h, "unpack", 1)
                fields: dict[str, object] = {k: eccodes.codes_get(h, k) for k in copied}
                p = float(eccodes.codes_get(h, "pressure"))
            finally:
                eccodes.codes_release(h)
            pressures.append(p)
            fields["height"] = _MOVED_311001.get(i, round(_pressure_altitude(p), -1))
            g.write(_encode_311001(fields))
    return out, pressures


@needs_data
def test_aircraft_311001_height_is_the_flight_level(
    aircraft_311001: tuple[Path, list[float]],
) -> None:
    """Before this reader read 007002, all 10 subsets of the 311001 copy were rejected
    ("no pressure or flight level": 0 of 10 placed, 0 of 10 reports); now every subset gets
    its pressure back (10 of 10 placed) and the two at 850/500 hPa are reports (2 of 10, the
    same two as the pressure-coded ``aircraft_moved`` copy). On the real 311010-style file
    the retained fraction is unchanged: 0 of 10, each rejected at its coded pressure."""
    path, pressures = aircraft_311001
    out = [r for r in AircraftBufrSource().read(path) if isinstance(r, Report | Rejection)]
    assert len(out) == 10
    placed = [r for r in out if "pressure(ICAO)=" in r.raw]
    assert len(placed) == 10
    reports = {r.report_id: r for r in out if isinstance(r, Report)}
    assert set(reports) == {"aircraft_311001.bufr:9:1", "aircraft_311001.bufr:3:1"}
    assert reports["aircraft_311001.bufr:9:1"].values["t850"] == pytest.approx(266.2)
    assert reports["aircraft_311001.bufr:9:1"].elevation == 1460.0
    assert set(reports["aircraft_311001.bufr:3:1"].values) == {"t500", "u500", "v500"}
    for i, (r, p) in enumerate(zip(out, pressures, strict=True), start=1):
        icao = float(r.raw.split("pressure(ICAO)=")[1].split()[0])
        if i in _MOVED_311001:
            continue
        # 007002 is coded to 10 m: at most 5 m off, 0.06 % of the pressure near the ground
        assert icao == pytest.approx(p, rel=1e-3), i
        assert isinstance(r, Rejection) and r.check == "no_standard_level"
        assert r.station_id  # the flight number: 311001 carries no registration


@needs_data
def test_aircraft_flight_level_outside_the_standard_atmosphere(tmp_path: Path) -> None:
    path = tmp_path / "fl_bad.bufr"
    fields: dict[str, object] = {"aircraftFlightNumber": "TEST1", "year": 2009, "month": 1}
    fields |= {"day": 23, "hour": 13, "minute": 0, "latitude": 50.0, "longitude": 8.0}
    fields |= {"airTemperature": 250.0, "height": 40000.0}
    path.write_bytes(_encode_311001(fields))
    (r,) = AircraftBufrSource().read(path)
    assert isinstance(r, Rejection) and r.check == "bad_flight_level"
    assert "40000 m is outside the standard atmosphere" in r.reason


def test_icao_standard_atmosphere_layer_bases() -> None:
    # layer-base pressures of the ICAO/ISO 2533 (= US 1976) standard atmosphere, by
    # geopotential height, as tabulated (Pa; 1e-5: R = 287.05287 against US 1976 R*/M)
    for h, p in ((0.0, 101325.0), (11000.0, 22632.06), (20000.0, 5474.889), (32000.0, 868.0187)):
        assert pressure_from_flight_level(h) == pytest.approx(p, rel=1e-5), h
    # inside the layers: ISA table at -1000 m (geopotential) 113929 Pa, 25 km 2511.0 Pa
    assert pressure_from_flight_level(-1000.0) == pytest.approx(113929.0, rel=1e-4)
    assert pressure_from_flight_level(25000.0) == pytest.approx(2511.0, rel=1e-3)
    for bad in (-2001.0, 32001.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="outside the standard atmosphere"):
            pressure_from_flight_level(bad)
