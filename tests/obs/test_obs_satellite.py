"""Satellite readers against independent references.

HIRS BUFR: values read key by key with ecCodes in the test. CRR NetCDF: lat/lon from the CGMS
geostationary formula written out here with the parameters typed in, rates from the raw
packed integers read with netCDF4 and decoded by hand.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import eccodes
import netCDF4
import numpy as np
import pytest

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.hirs_bufr import HirsBufrSource
from stratocast.satellite.geostationary import read_crr, read_crr_files
from stratocast.testing.sources import SourceTests

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
SAT = DATA / "satellite"
HIRS = SAT / "metop_hirs_l1b_20181122.bufr"
CRR = sorted(SAT.glob("S_NWC_CRR_MSG4_Europe-VISIR_*.nc"))
needs_data = pytest.mark.skipif(
    not HIRS.is_file() or len(CRR) < 2, reason=f"satellite sample data not found in {SAT}"
)


def _ecc_messages() -> list[dict[str, Any]]:
    """Per message, the keys the test checks, read with ecCodes' own file iteration."""
    out = []
    with HIRS.open("rb") as f:
        while (h := eccodes.codes_bufr_new_from_file(f)) is not None:
            eccodes.codes_set(h, "unpack", 1)
            m: dict[str, Any] = {"n": int(eccodes.codes_get(h, "numberOfSubsets"))}
            for k in ("latitude", "longitude", "scanLineNumber", "fieldOfViewNumber"):
                m[k] = np.asarray(eccodes.codes_get_array(h, f"#1#{k}"))
            for k in ("hour", "minute", "second"):
                m[k] = np.asarray(eccodes.codes_get_array(h, f"#1#{k}"))
            m["channels"] = [
                int(eccodes.codes_get(h, f"#{r}#tovsOrAtovsOrAvhrrInstrumentationChannelNumber"))
                for r in range(1, 20)
            ]
            m["bt"] = {
                c: np.asarray(eccodes.codes_get_array(h, f"#{c}#brightnessTemperature"))
                for c in range(1, 20)
            }
            m["offset"] = int(eccodes.codes_get(h, "offset"))
            m["length"] = int(eccodes.codes_get(h, "totalLength"))
            eccodes.codes_release(h)
            out.append(m)
    return out


@pytest.fixture(scope="module")
def ecc() -> list[dict[str, Any]]:
    return _ecc_messages()


@pytest.fixture(scope="module")
def hirs_records() -> list[Report | Rejection]:
    return [r for r in HirsBufrSource().read(HIRS) if isinstance(r, Report | Rejection)]


def _at(arr: np.ndarray, s: int) -> Any:
    return arr[s] if arr.size > 1 else arr[0]


@needs_data
class TestHirsConformance(SourceTests):
    @pytest.fixture
    def source(self) -> HirsBufrSource:
        return HirsBufrSource()

    @pytest.fixture
    def sample_file(self, tmp_path: Path) -> Path:
        # the first two messages (1848 FOVs, ~35k values) keep the ingest round trip fast
        data = HIRS.read_bytes()
        first = _ecc_messages()[:2]
        p = tmp_path / "hirs_two_messages.bufr"
        p.write_bytes(b"".join(data[m["offset"] : m["offset"] + m["length"]] for m in first))
        return p

    @pytest.fixture
    def catalogue(self) -> None:
        return None


@needs_data
def test_hirs_fovs_against_ecodes_keys(
    hirs_records: list[Report | Rejection], ecc: list[dict[str, Any]]
) -> None:
    by_id = {r.report_id: r for r in hirs_records}
    assert len(ecc) == 61
    checked = 0
    for msg_no in (1, 2, 22, 61):
        m = ecc[msg_no - 1]
        assert m["channels"] == list(range(1, 20))  # rank r of BT is channel r
        for s in (0, 27, m["n"] // 2, m["n"] - 1):
            r = by_id[f"{HIRS.name}:{msg_no}:{s + 1}"]
            bts = {c: float(m["bt"][c][s]) for c in range(1, 20)}
            if isinstance(r, Rejection):
                assert r.check == "no_data" and all(v < -1e99 for v in bts.values())
                continue
            assert (r.lat, r.lon) == pytest.approx((m["latitude"][s], m["longitude"][s]))
            fov_id = f":{m['scanLineNumber'][s]}:{m['fieldOfViewNumber'][s]}"
            assert r.station_id.endswith(fov_id)  # <sat>:hirs:<orbit>:<line>:<fov>
            assert r.station_id.startswith("metop-a:hirs:")  # satelliteIdentifier 4 = MetOp-A
            assert r.time.date() == datetime(2018, 11, 22).date()
            assert r.time.hour == _at(m["hour"], s) and r.time.minute == _at(m["minute"], s)
            sec = r.time.second + r.time.microsecond / 1e6
            assert sec == pytest.approx(_at(m["second"], s), abs=1e-3)
            assert math.isnan(r.elevation)
            for c, v in bts.items():
                if v > -1e99:
                    assert r.values[f"hirs_bt{c:02d}"] == pytest.approx(v)
                else:
                    assert f"hirs_bt{c:02d}" not in r.values
            checked += 1
    assert checked >= 12


@needs_data
def test_hirs_first_fov_typed_in(hirs_records: list[Report | Rejection]) -> None:
    # message 1, subset 1 as printed by a key dump: lat 53.3542 lon -9.2014,
    # 2018-11-22 11:48:54.396, scan line 320, FOV 1, channel 1 220.23 K, channel 19 278.22 K
    r = hirs_records[0]
    assert isinstance(r, Report)
    assert (r.lat, r.lon) == pytest.approx((53.3542, -9.2014))
    assert r.time == datetime(2018, 11, 22, 11, 48, 54, 396000, tzinfo=UTC)
    assert r.values["hirs_bt01"] == pytest.approx(220.23)
    assert r.values["hirs_bt19"] == pytest.approx(278.22)


@needs_data
def test_hirs_accounting_ranges_and_order(
    hirs_records: list[Report | Rejection], ecc: list[dict[str, Any]]
) -> None:
    subsets = sum(m["n"] for m in ecc)
    assert subsets == 51968
    assert len(hirs_records) == subsets  # one record per FOV: reports + rejections
    reports = [r for r in hirs_records if isinstance(r, Report)]
    rejections = [r for r in hirs_records if isinstance(r, Rejection)]
    assert len(reports) + len(rejections) == subsets
    assert {r.check for r in rejections} <= {"no_data"}
    lats = np.array([r.lat for r in reports])
    lons = np.array([r.lon for r in reports])
    assert lats.min() >= -90 and lats.max() <= 90 and lons.min() >= -180 and lons.max() <= 180
    assert lats.max() - lats.min() > 90  # a polar orbit covers much more than one region
    times = [r.time for r in reports]
    assert times == sorted(times)
    assert times[-1] - times[0] < (datetime(2018, 1, 1, 2) - datetime(2018, 1, 1))
    for r in reports[::997]:
        for v in r.values.values():
            assert 150.0 <= v <= 350.0


@needs_data
def test_hirs_truncated_file_keeps_intact_messages(
    tmp_path: Path, ecc: list[dict[str, Any]]
) -> None:
    data = HIRS.read_bytes()
    m3 = ecc[2]
    cut = m3["offset"] + m3["length"] // 2  # messages 1-2 intact, message 3 cut in half
    p = tmp_path / "hirs_truncated.bufr"
    p.write_bytes(data[:cut])
    recs = [r for r in HirsBufrSource().read(p) if isinstance(r, Report | Rejection)]
    intact = ecc[0]["n"] + ecc[1]["n"]
    assert len(recs) == intact + 1
    assert all(
        r.report_id.startswith(f"{p.name}:1:") or r.report_id.startswith(f"{p.name}:2:")
        for r in recs[:intact]
    )
    last = recs[-1]
    assert isinstance(last, Rejection)
    assert last.report_id == f"{p.name}:3" and last.check == "corrupt_message"
    assert "truncated" in last.reason and p.name in last.reason


@needs_data
def test_hirs_corrupt_message_in_the_middle(tmp_path: Path, ecc: list[dict[str, Any]]) -> None:
    data = bytearray(HIRS.read_bytes())
    m2 = ecc[1]
    end = m2["offset"] + m2["length"]
    data[end - 4 : end] = b"XXXX"  # message 2 loses its end marker
    p = tmp_path / "hirs_corrupt.bufr"
    p.write_bytes(bytes(data))
    recs = [r for r in HirsBufrSource().read(p) if isinstance(r, Report | Rejection)]
    rej = [r for r in recs if isinstance(r, Rejection) and r.check == "corrupt_message"]
    assert [r.report_id for r in rej] == [f"{p.name}:2"]
    ids = {r.report_id for r in recs}
    assert f"{p.name}:61:1" in ids and f"{p.name}:1:{ecc[0]['n']}" in ids


# --- CRR --------------------------------------------------------------------------------

# typed in from the file's cgms_projection: MSG at 0°E, 42164 km from the Earth's centre,
# WGS84-like r_eq/r_pol; x/y in the file are scan angle (rad) x 35785863 m
H_CENTRE = 42164.0
R_EQ, R_POL = 6378.137, 6356.7523
H_SAT = 35785863.0


def _cgms_lonlat(x_m: float, y_m: float) -> tuple[float, float]:
    """CGMS LRIT/HRIT Global Spec. 4.4.3.2 inverse geostationary projection, in degrees."""
    x, y = x_m / H_SAT, y_m / H_SAT
    q = (R_EQ / R_POL) ** 2
    a = math.cos(y) ** 2 + q * math.sin(y) ** 2
    sd = math.sqrt((H_CENTRE * math.cos(x) * math.cos(y)) ** 2 - a * (H_CENTRE**2 - R_EQ**2))
    sn = (H_CENTRE * math.cos(x) * math.cos(y) - sd) / a
    s1 = H_CENTRE - sn * math.cos(x) * math.cos(y)
    s2 = sn * math.sin(x) * math.cos(y)
    s3 = sn * math.sin(y)  # the spec's "-sn sin y" counts y southward (image lines); ours is north
    sxy = math.hypot(s1, s2)
    return math.degrees(math.atan(s2 / s1)), math.degrees(math.atan(q * s3 / sxy))


@pytest.fixture(scope="module")
def crr() -> Any:
    return read_crr_files(CRR)


@needs_data
def test_crr_pixel_lonlat_against_cgms_formula(crr: Any) -> None:
    for row, col in [(55, 1137), (500, 1100), (1018, 0), (1018, 2199), (300, 1800)]:
        x_m = -3300000.0 + 3000.0 * col  # pixel centres, from the gdal geotransform
        y_m = 5568000.0 - 3000.0 * row
        assert float(crr.x[col]) == x_m and float(crr.y[row]) == y_m
        lon, lat = _cgms_lonlat(x_m, y_m)
        assert float(crr.lon[row, col]) == pytest.approx(lon, abs=1e-4)
        assert float(crr.lat[row, col]) == pytest.approx(lat, abs=1e-4)
    # top-left corner looks past the limb: off the disk, NaN position and rate
    assert np.isnan(crr.lat[0, 0]) and np.isnan(crr.lon[0, 0]) and np.isnan(crr.crr[:, 0, 0]).all()


@needs_data
def test_crr_rates_against_raw_packed_values(crr: Any) -> None:
    for ti, path in enumerate(CRR):
        with netCDF4.Dataset(path) as nc:
            v = nc.variables["crr_intensity"]
            v.set_auto_maskandscale(False)
            raw = np.asarray(v[:])
        rain = np.argwhere((raw > 0) & (raw < 65535))
        for row, col in [tuple(rain[0]), tuple(rain[len(rain) // 2]), (500, 1100)]:
            r = int(raw[row, col])
            expected = (r * 0.1 + 0.0) / 3600.0  # mm/h -> kg m-2 s-1
            assert float(crr.crr[ti, row, col]) == pytest.approx(expected, rel=1e-6)
        fill = np.argwhere(raw == 65535)[0]
        assert np.isnan(crr.crr[ti, fill[0], fill[1]])
    assert crr.crr.attrs["units"] == "kg m-2 s-1"
    assert float(crr.crr.max()) < 0.0139 + 1e-6  # the product saturates at 50 mm/h


@needs_data
def test_crr_time_and_dims(crr: Any) -> None:
    assert crr.crr.dims == ("time", "y", "x") and crr.lat.dims == ("y", "x")
    assert crr.sizes["y"] == 1019 and crr.sizes["x"] == 2200
    assert list(crr.time.values) == [
        np.datetime64("2018-06-01T07:00:00"),
        np.datetime64("2018-06-01T07:15:00"),
    ]
    single = read_crr(CRR[1])
    assert single.time.values[0] == np.datetime64("2018-06-01T07:15:00")
    # the file's own bounds (geospatial_lat_min/max) bracket the computed latitudes
    assert float(crr.lat.min()) >= 23.78 and float(crr.lat.max()) <= 81.1
