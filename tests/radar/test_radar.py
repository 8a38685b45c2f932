"""Radar reader and gridder against independent references.

Site location and scan time come from outside the reader: the NEXRAD site list / file name
for KLBB, and the ODIM ``where``/``what`` attributes read with h5py here. Reflectivity
statistics are compared with the raw sweep (h5py for ODIM: raw × gain + offset with nodata
and undetect removed by hand; xradar's decoded values for NEXRAD). Beam geometry is checked
against the 4/3-earth formula evaluated by hand and xradar's own georeferencing.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pyproj
import pytest
import xarray as xr
import xradar

from stratocast.radar import (
    RadarFileError,
    Sweep,
    beam_height_and_distance,
    gate_lat_lon,
    grid_sweep,
    read_lowest_sweep,
    read_reflectivity,
)

DATA = Path("/work/shared/data/radar")
NEXRAD = DATA / "KLBB20160601_150025_V06"
ODIM = DATA / "T_PAZA63_C_LFPW_20230420065041.h5"

needs_nexrad = pytest.mark.skipif(not NEXRAD.exists(), reason="shared NEXRAD file absent")
needs_odim = pytest.mark.skipif(not ODIM.exists(), reason="shared ODIM file absent")


@pytest.fixture(scope="module")
def nexrad_grid() -> xr.Dataset:
    if not NEXRAD.exists():
        pytest.skip("shared NEXRAD file absent")
    return read_reflectivity(NEXRAD, spacing=0.02)


def _odim_raw() -> tuple[np.ndarray, dict[str, float | str]]:
    with h5py.File(ODIM, "r") as h5:
        what = h5["dataset1/data1/what"].attrs
        assert what["quantity"] == b"DBZH"
        raw = h5["dataset1/data1/data"][:]
        meta = {k: float(what[k]) for k in ("gain", "offset", "nodata", "undetect")}
        info: dict[str, float | str] = {
            **meta,
            "lat": float(h5["where"].attrs["lat"]),
            "lon": float(h5["where"].attrs["lon"]),
            "height": float(h5["where"].attrs["height"]),
            "date": h5["what"].attrs["date"].decode(),
            "time": h5["what"].attrs["time"].decode(),
            "startdate": h5["dataset1/what"].attrs["startdate"].decode(),
            "starttime": h5["dataset1/what"].attrs["starttime"].decode(),
        }
    dbz = raw * info["gain"] + info["offset"]
    dbz[(raw == info["nodata"]) | (raw == info["undetect"])] = np.nan
    return dbz, info


def _iso(date: str, hhmmss: str) -> np.datetime64:
    return np.datetime64(
        f"{date[:4]}-{date[4:6]}-{date[6:]}T{hhmmss[:2]}:{hhmmss[2:4]}:{hhmmss[4:]}", "ns"
    )


# ---------------------------------------------------------------------------- site and time


def test_nexrad_site_and_time(nexrad_grid: xr.Dataset) -> None:
    ds = nexrad_grid
    # KLBB from the NWS radar site list: 33.6541 N, 101.8141 W, ground 3259 ft (993 m).
    assert ds.attrs["radar_site"] == "KLBB"
    assert ds.attrs["radar_latitude"] == pytest.approx(33.654, abs=2e-3)
    assert ds.attrs["radar_longitude"] == pytest.approx(-101.814, abs=2e-3)
    assert 990.0 < ds.attrs["radar_altitude"] < 1060.0  # ground + tower
    # The file name KLBB20160601_150025 is the volume start.
    start = np.datetime64("2016-06-01T15:00:25", "ns")
    assert start <= ds.time.values[0] < start + np.timedelta64(1, "s")
    assert ds.attrs["elevation_angle"] == pytest.approx(0.5, abs=0.05)


@needs_odim
def test_odim_site_and_time() -> None:
    _, info = _odim_raw()
    ds = read_reflectivity(ODIM)
    assert ds.attrs["radar_latitude"] == pytest.approx(info["lat"], abs=1e-9)
    assert ds.attrs["radar_longitude"] == pytest.approx(info["lon"], abs=1e-9)
    assert ds.attrs["radar_altitude"] == pytest.approx(info["height"], abs=1e-6)
    start = _iso(str(info["startdate"]), str(info["starttime"]))
    nominal = _iso(str(info["date"]), str(info["time"]))
    t = ds.time.values[0]
    assert start <= t < start + np.timedelta64(1, "s")
    assert t <= nominal  # the product time is the end of the scan
    assert nominal == np.datetime64("2023-04-20T06:50:41", "ns")  # file name time


# ---------------------------------------------------------------------------- canonical form


@needs_odim
def test_canonical_layout() -> None:
    ds = read_reflectivity(ODIM, spacing=0.05)
    assert ds["dbz"].dims == ("time", "lat", "lon")
    assert ds["dbz"].attrs["units"] == "dBZ"
    assert np.all(np.diff(ds.lat.values) > 0) and np.all(np.diff(ds.lon.values) > 0)
    assert ds.lon.min() >= 0 and ds.lon.max() < 360
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    # cells centred on multiples of the spacing, and the grid covers the 256 km range
    assert np.allclose(ds.lat.values / 0.05, np.round(ds.lat.values / 0.05))
    assert ds.lat.min() < 50.12832 - 2.2 and ds.lat.max() > 50.12832 + 2.2


# ---------------------------------------------------------------------------- statistics


@needs_odim
def test_odim_grid_statistics_match_raw_h5py() -> None:
    raw, _ = _odim_raw()
    ds = read_reflectivity(ODIM)
    valid = np.isfinite(raw)
    count = ds["gate_count"].values
    assert count.sum() == valid.sum()
    # count-weighted mean in linear Z over cells is exactly the mean over raw gates
    cells = count > 0
    z_cells = 10 ** (ds["dbz"].values[cells] / 10)
    z_mean_grid = (z_cells * count[cells]).sum() / count[cells].sum()
    z_mean_raw = (10 ** (raw[valid] / 10)).mean()
    assert z_mean_grid == pytest.approx(z_mean_raw, rel=1e-9)
    # an average cannot exceed the strongest gate; cells with one gate keep its value
    assert float(ds["dbz"].max()) <= np.nanmax(raw) + 1e-9
    assert np.isnan(ds["dbz"].values[count == 0]).all()
    single = ds["dbz"].values[count == 1]
    assert np.isin(np.round(single * 2) / 2, np.unique(raw[valid])).all()


def test_nexrad_grid_statistics_match_raw(nexrad_grid: xr.Dataset) -> None:
    ds = nexrad_grid
    tree = xradar.io.open_nexradlevel2_datatree(NEXRAD, sweep=[0])
    ref = tree["sweep_0"].to_dataset()["DBZH"].values
    # xradar leaves code 0 (below threshold, -33 dBZ) and 1 (range folded) unmasked
    ref = np.where(ref <= -32.5, np.nan, ref)
    valid = np.isfinite(ref)
    count = ds["gate_count"].values
    assert count.sum() == valid.sum()
    cells = count > 0
    z_grid = (10 ** (ds["dbz"].values[cells] / 10) * count[cells]).sum() / count.sum()
    assert z_grid == pytest.approx((10 ** (ref[valid] / 10)).mean(), rel=1e-9)
    assert float(ds["dbz"].max()) <= np.nanmax(ref) + 1e-9
    assert float(ds["dbz"].max()) > np.nanmax(ref) - 10.0


# ---------------------------------------------------------------------------- geometry


def _sweep(az: float, el: float, rng: float, lat: float = 33.654, lon: float = -101.814) -> Sweep:
    return Sweep(
        source="synthetic",
        site="TEST",
        latitude=lat,
        longitude=lon,
        altitude=1000.0,
        time=np.datetime64("2020-01-01T00:00", "ns"),
        fixed_angle=el,
        azimuth=np.array([az]),
        elevation=np.array([el]),
        range=np.array([rng]),
        dbz=np.array([[30.0]]),
    )


def test_beam_geometry_by_hand() -> None:
    # 100 km at 0.5 deg elevation, antenna 1000 m: Doviak-Zrnic 2.28b/c with Re = 4/3 * 6371 km
    re = 6371000.0 * 4 / 3
    r, el, h0 = 100_000.0, math.radians(0.5), 1000.0
    h = math.sqrt(r**2 + (re + h0) ** 2 + 2 * r * (re + h0) * math.sin(el)) - re
    s = re * math.asin(r * math.cos(el) / (re + h))
    assert h == pytest.approx(1000 + 100_000 * math.sin(el) + 100_000**2 / (2 * re), abs=2.0)
    height, dist = beam_height_and_distance(np.array([r]), np.array([0.5]), h0)
    assert height[0] == pytest.approx(h, abs=1e-6)
    assert dist[0] == pytest.approx(s, abs=1e-6)
    # due north on the meridian: latitude advances by s over the meridional radius of curvature
    lat, lon = gate_lat_lon(_sweep(0.0, 0.5, r))
    a, e2 = 6378137.0, 0.00669437999014
    mid = math.radians(33.654 + s / 111_000 / 2)
    m = a * (1 - e2) / (1 - e2 * math.sin(mid) ** 2) ** 1.5
    assert lat[0, 0] == pytest.approx(33.654 + math.degrees(s / m), abs=1e-4)
    assert lon[0, 0] == pytest.approx(-101.814, abs=1e-9)
    # any azimuth: geodesic inverse back to the radar gives (s, azimuth)
    lat, lon = gate_lat_lon(_sweep(237.0, 0.5, r))
    fwd_az, _, dist_back = pyproj.Geod(ellps="WGS84").inv(-101.814, 33.654, lon[0, 0], lat[0, 0])
    assert dist_back == pytest.approx(s, abs=1e-3)
    assert fwd_az % 360 == pytest.approx(237.0, abs=1e-7)


def test_beam_geometry_matches_xradar() -> None:
    az, el, rng = 123.0, 1.5, 180_000.0
    sweep = _sweep(az, el, rng, lat=50.128, lon=3.812)
    lat, lon = gate_lat_lon(sweep)
    x, y, _ = xradar.georeference.transforms.antenna_to_cartesian(
        np.array(rng), np.array(az), np.array(el), earth_radius=6371000.0, site_altitude=1000.0
    )
    aeqd = pyproj.Proj(proj="aeqd", lat_0=50.128, lon_0=3.812, ellps="WGS84")
    ref_lon, ref_lat = aeqd(float(x), float(y), inverse=True)
    assert lat[0, 0] == pytest.approx(ref_lat, abs=2e-5)  # ~2 m
    assert lon[0, 0] == pytest.approx(ref_lon, abs=2e-5)


def test_grid_crosses_greenwich_into_0_360() -> None:
    # two gates 50 km east and west of a radar at 0.2 E: the grid spans the meridian
    base = _sweep(90.0, 0.5, 50_000.0, lat=50.0, lon=0.2)
    sweep = Sweep(
        **{
            **base.__dict__,
            "azimuth": np.array([90.0, 270.0]),
            "elevation": np.array([0.5, 0.5]),
            "dbz": np.array([[30.0], [20.0]]),
        }
    )
    ds = grid_sweep(sweep, spacing=0.01)
    assert np.all(np.diff(ds.lon.values) > 0) and ds.lon.max() < 360
    assert ds.lon.min() == 0.0  # the meridian column is there, wrapped to 0
    filled = ds["gate_count"].isel(time=0).values > 0
    lons = np.broadcast_to(ds.lon.values, filled.shape)[filled]
    values = ds["dbz"].isel(time=0).values[filled]
    assert sorted(zip(np.round(lons, 2), values, strict=True)) == [
        (pytest.approx(0.2 + 0.70, abs=0.011), 30.0),
        (pytest.approx(360.0 + 0.2 - 0.70, abs=0.011), 20.0),
    ]


# ---------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize(
    ("source", "keep"), [(NEXRAD, 0.3), (NEXRAD, 0.005), (ODIM, 0.5), (ODIM, 0.05)]
)
def test_truncated_file_raises(source: Path, keep: float, tmp_path: Path) -> None:
    if not source.exists():
        pytest.skip("shared radar file absent")
    data = source.read_bytes()
    bad = tmp_path / source.name
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RadarFileError, match=source.name):
        read_lowest_sweep(bad)


def test_not_a_radar_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.h5"
    bad.write_bytes(b"GRIB nothing radar here")
    with pytest.raises(RadarFileError, match=r"junk\.h5"):
        read_lowest_sweep(bad)
    with pytest.raises(RadarFileError, match="no such file"):
        read_lowest_sweep(tmp_path / "absent")
