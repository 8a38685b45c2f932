"""Gridded reader against independent references (the regridder: test_regrid.py).

GRIB values are checked against ecCodes' own (lat, lon, value) triples for one message
(``codes_grib_get_data``), converted to SI by hand here; NetCDF against the raw packed int16
read with netCDF4 with auto mask/scale off, unpacked by hand. Real files come from
/work/shared/data and the tests skip when it is absent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import eccodes
import numpy as np
import pytest
import xarray as xr

from stratocast.gridded import GriddedFileError, open_gridded, skipped_fields
from stratocast.gridded.lexicon import Target

DATA = Path("/work/shared/data")
GRIB = DATA / "grib"
NC = DATA / "netcdf" / "era5_1995-07-14T12.nc"
G0 = 9.80665

needs_grib = pytest.mark.skipif(not GRIB.is_dir(), reason="shared GRIB data absent")
needs_nc = pytest.mark.skipif(not NC.exists(), reason="shared NetCDF data absent")


def _message(path: Path, **keys: Any) -> dict[str, Any]:
    """ecCodes' view of the first message matching ``keys``: points, time, member, bitmap."""
    with path.open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                if all(eccodes.codes_get(h, k, type(v)) == v for k, v in keys.items()):
                    bitmap = None
                    if eccodes.codes_get(h, "bitmapPresent"):
                        bitmap = np.asarray(eccodes.codes_get_array(h, "bitmap"))
                    return {
                        "points": eccodes.codes_grib_get_data(h),
                        "values": np.asarray(eccodes.codes_get_values(h)),
                        "bitmap": bitmap,
                        "date": eccodes.codes_get(h, "validityDate"),
                        "time": eccodes.codes_get(h, "validityTime"),
                    }
            finally:
                eccodes.codes_release(h)
    raise LookupError(f"no message {keys} in {path}")


def _valid_time(msg: dict[str, Any]) -> np.datetime64:
    d, t = msg["date"], msg["time"]
    return np.datetime64(
        f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}T{t // 100:02d}:{t % 100:02d}"
    )


def _assert_canonical(ds: xr.Dataset) -> None:
    for name, da in ds.data_vars.items():
        assert da.dims[0] == "time" and da.dims[-2:] == ("lat", "lon"), (name, da.dims)
        assert set(da.dims) <= {"time", "member", "lat", "lon"}
        assert da.attrs["units"]
    assert np.all(np.diff(ds["lat"].values) > 0)
    lon = ds["lon"].values
    assert np.all(np.diff(lon) > 0) and lon.min() >= 0.0 and lon.max() < 360.0
    assert ds["time"].dtype == np.dtype("datetime64[ns]")


# (file, ecCodes selection keys, canonical name, factor, offset) — the SI conversion by hand
GRIB_CASES = [
    (
        "era5-levels-members.grib",
        {"shortName": "z", "level": 500, "number": 3, "dataTime": 1200},
        "z500",
        1.0,
        0.0,
    ),
    ("era5-levels-members.grib", {"shortName": "t", "level": 850, "number": 0}, "t850", 1.0, 0.0),
    ("era5-single-level-scalar-time.grib", {"shortName": "2t"}, "t2m", 1.0, 0.0),
    ("fields_with_missing_values.grib", {"shortName": "2t", "dataTime": 1200}, "t2m", 1.0, 0.0),
    (
        "gfs.t12z.pgrbf120.2p5deg.grib2",
        {"shortName": "gh", "level": 500, "typeOfLevel": "isobaricInhPa"},
        "z500",
        G0,
        0.0,
    ),
    (
        "gfs.t12z.pgrbf120.2p5deg.grib2",
        {"shortName": "t", "level": 850, "typeOfLevel": "isobaricInhPa"},
        "t850",
        1.0,
        0.0,
    ),
    ("gfs.t12z.pgrbf120.2p5deg.grib2", {"shortName": "prmsl"}, "msl", 1.0, 0.0),
    ("gfs.t12z.pgrbf120.2p5deg.grib2", {"shortName": "10u"}, "u10", 1.0, 0.0),
    ("regular_ll_msl.grib", {"shortName": "prmsl"}, "msl", 1.0, 0.0),
    ("step_60m.grib", {"shortName": "2t", "stepRange": "5"}, "t2m", 1.0, 0.0),
]

# skin temperature has no canonical variable; a caller-supplied lexicon maps it to check the
# grids (plain and scanning mode 64, i.e. south-to-north rows) decode to the right places.
SKT_LEXICON: dict[tuple[str, str, int | None], Target] = {("skt", "surface", 0): Target("t2m", "K")}


@needs_grib
@pytest.mark.parametrize(("name", "keys", "canonical", "factor", "offset"), GRIB_CASES)
def test_grib_matches_eccodes(
    name: str, keys: dict[str, Any], canonical: str, factor: float, offset: float
) -> None:
    ds = open_gridded(GRIB / name)
    _assert_canonical(ds)
    msg = _message(GRIB / name, **keys)
    field = ds[canonical].sel(time=_valid_time(msg))
    if "member" in field.dims:
        field = field.sel(member=keys["number"])
    _check_points(field, msg, factor, offset)


@needs_grib
@pytest.mark.parametrize("name", ["regular_ll_sfc.grib", "scanning_mode_64.grib"])
def test_grib_scanning_modes(name: str) -> None:
    # skt alone: nothing canonical, which is an error naming the field and the reason
    with pytest.raises(GriddedFileError, match=r"skt@surface:0: no lexicon entry"):
        open_gridded(GRIB / name)
    ds = open_gridded(GRIB / name, grib_lexicon=SKT_LEXICON)
    _assert_canonical(ds)
    msg = _message(GRIB / name, shortName="skt")
    _check_points(ds["t2m"].isel(time=0), msg, 1.0, 0.0)


def _check_points(field: xr.DataArray, msg: dict[str, Any], factor: float, offset: float) -> None:
    points = msg["points"]
    n = len(points)
    picks = [0, 1, n // 3, n // 2, n - 2, n - 1]
    if msg["bitmap"] is not None:  # make sure present values are among the picks
        picks += list(np.flatnonzero(msg["bitmap"] == 1)[:3])
    for i in picks:
        p = points[i]
        got = float(field.sel(lat=p["lat"], lon=p["lon"] % 360.0, method="nearest", tolerance=1e-6))
        if msg["bitmap"] is not None and msg["bitmap"][i] == 0:
            assert np.isnan(got), (i, p)
        else:
            assert got == pytest.approx(p["value"] * factor + offset, rel=1e-12), (i, p)
    assert field.size == n


@needs_grib
def test_members_and_times() -> None:
    ds = open_gridded(GRIB / "era5-levels-members.grib")
    assert ds.sizes == {"time": 4, "member": 10, "lat": 61, "lon": 120}
    assert list(ds["member"].values) == list(range(10))
    assert str(ds["time"].values[-1]) == "2017-01-02T12:00:00.000000000"


@needs_grib
def test_sub_hourly_steps_are_valid_times() -> None:
    ds = open_gridded(GRIB / "step_60m.grib")
    # ecCodes lists steps 0m, 1h, 2h ... and validityTime resolves minutes: check by hand
    assert ds["time"].values[0] == np.datetime64("2024-01-15T00:00")
    assert ds.sizes["time"] == 73


@needs_grib
def test_missing_values_follow_bitmap() -> None:
    path = GRIB / "fields_with_missing_values.grib"
    ds = open_gridded(path)
    for t in (0, 1200):
        msg = _message(path, shortName="2t", dataTime=t)
        field = ds["t2m"].sel(time=_valid_time(msg))
        n_missing = int((msg["bitmap"] == 0).sum())
        assert n_missing > 0
        assert int(field.isnull().sum()) == n_missing
        # ecCodes fills missing points with missingValue (9999): none may leak through
        assert float(field.max()) < 400.0


@needs_grib
def test_corrupted_grib_raises_naming_file_and_offset() -> None:
    path = GRIB / "era5-levels-corrupted.grib"
    with pytest.raises(GriddedFileError) as err:
        open_gridded(path)
    text = str(err.value)
    assert str(path) in text and "byte" in text and "7777" in text
    assert err.value.path == path


@needs_grib
def test_truncated_grib_raises(tmp_path: Path) -> None:
    src = (GRIB / "era5-levels-members.grib").read_bytes()
    cut = tmp_path / "cut.grib"
    cut.write_bytes(src[: 3 * 14760 + 5000])  # 3 whole messages, then part of the 4th
    with pytest.raises(GriddedFileError, match=r"cut\.grib.*message 4"):
        open_gridded(cut)


@pytest.mark.parametrize("content", [b"", b"hello, not a grid\n"])
def test_not_a_gridded_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.grib"
    path.write_bytes(content)
    with pytest.raises(GriddedFileError, match=r"x\.grib"):
        open_gridded(path)


@needs_grib
@pytest.mark.parametrize(
    ("name", "grid"), [("reduced_gg.grib", "reduced_gg"), ("lambert_grid.grib", "lambert")]
)
def test_unsupported_grids_raise(name: str, grid: str) -> None:
    with pytest.raises(GriddedFileError, match=f"not a regular lat/lon grid: {grid}; regrid"):
        open_gridded(GRIB / name)


@needs_nc
def test_netcdf_against_raw_packed_values(caplog: pytest.LogCaptureFixture) -> None:
    import netCDF4

    with caplog.at_level(logging.INFO):
        ds = open_gridded(NC)
    _assert_canonical(ds)
    assert "t2m_C" in caplog.text  # kept out, with a note
    assert set(ds.data_vars) == {"t2m", "d2m", "u10", "v10", "sp"}
    with netCDF4.Dataset(NC) as nc:
        nc.set_auto_maskandscale(False)
        lat = nc["latitude"][:]
        lon = nc["longitude"][:] % 360.0
        for name in map(str, ds.data_vars):
            var = nc[name]
            raw = var[:].astype(np.float64)
            assert var[:].dtype == np.int16
            expected = raw * float(var.scale_factor) + float(var.add_offset)
            expected[var[:] == var._FillValue] = np.nan
            got = ds[name].isel(time=0).sel(lat=lat, lon=lon).values  # file order
            np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert ds["time"].values[0] == np.datetime64("1995-07-14T12:00")


def test_weatherbench2_zarr(tmp_path: Path) -> None:
    lat = np.array([10.0, 0.0, -10.0])  # WB2 stores some grids north to south
    lon = np.array([-20.0, 0.0, 20.0])
    time = np.array(["2020-01-01T00", "2020-01-01T06"], dtype="datetime64[ns]")
    level = np.array([500, 850])
    shape3 = (2, 3, 3)
    t2 = np.arange(18.0).reshape(shape3)
    store = xr.Dataset(
        {
            "2m_temperature": (("time", "latitude", "longitude"), 270.0 + t2, {"units": "K"}),
            "mean_sea_level_pressure": (
                ("time", "latitude", "longitude"),
                1000.0 + t2,
                {"units": "hPa"},
            ),
            "geopotential": (
                ("time", "level", "latitude", "longitude"),
                np.stack([50000.0 + t2, 14000.0 + t2], axis=1),
                {"units": "m**2 s**-2"},
            ),
            "temperature": (
                ("time", "level", "latitude", "longitude"),
                np.stack([250.0 + t2, 280.0 + t2], axis=1),
                {"units": "K"},
            ),
            "specific_humidity": (("time", "latitude", "longitude"), t2, {"units": "kg kg**-1"}),
        },
        coords={"time": time, "latitude": lat, "longitude": lon, "level": level},
    )
    path = tmp_path / "wb2.zarr"
    store.to_zarr(path, consolidated=False)
    ds = open_gridded(path)
    _assert_canonical(ds)
    # every level of the pressure-level variables, not only the few a table once named
    assert set(ds.data_vars) == {"t2m", "msl", "z500", "z850", "t500", "t850"}
    # specific humidity without a level axis is not guessed at: it is listed with its reason
    assert any(
        line.startswith("specific_humidity: a pressure-level quantity with no level axis")
        for line in skipped_fields(ds)
    )
    assert list(ds["lat"].values) == [-10.0, 0.0, 10.0]
    assert list(ds["lon"].values) == [0.0, 20.0, 340.0]
    # second time, latitude -10 (row 2 in the store), longitude -20 (col 0) → value 9 + 6 = 15
    pick = {"time": time[1], "lat": -10.0, "lon": 340.0}
    assert float(ds["t2m"].sel(pick)) == 270.0 + 15.0
    assert float(ds["msl"].sel(pick)) == pytest.approx((1000.0 + 15.0) * 100.0)
    assert float(ds["z500"].sel(pick)) == 50000.0 + 15.0
    assert float(ds["t850"].sel(pick)) == 280.0 + 15.0
    assert float(ds["t500"].sel(pick)) == 250.0 + 15.0
    assert float(ds["z850"].sel(pick)) == 14000.0 + 15.0


def test_cds_style_netcdf_valid_time_levels_and_celsius(tmp_path: Path) -> None:
    # new-CDS layout: valid_time dim, a reference `time`, pressure_level, t2m in degC
    vt = np.array(["2024-03-01T06"], dtype="datetime64[ns]")
    values = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    raw = xr.Dataset(
        {
            "t2m": (("valid_time", "latitude", "longitude"), values, {"units": "degC"}),
            "z": (
                ("valid_time", "pressure_level", "latitude", "longitude"),
                np.stack([values * 10.0, values * 100.0], axis=1),
                {"units": "m**2 s**-2"},
            ),
        },
        coords={
            "valid_time": vt,
            "time": ("valid_time", np.array(["2024-03-01T00"], dtype="datetime64[ns]")),
            "pressure_level": ("pressure_level", [850.0, 500.0], {"units": "hPa"}),
            "latitude": [60.0, 50.0],
            "longitude": [-10.0, 10.0],
        },
    )
    path = tmp_path / "cds.nc"
    raw.to_netcdf(path)
    ds = open_gridded(path)
    _assert_canonical(ds)
    assert set(ds.data_vars) == {"t2m", "z500", "z850"}
    assert ds["time"].values[0] == vt[0]
    pick = {"time": vt[0], "lat": 50.0, "lon": 350.0}  # row 1, col 0 of the file → 3.0
    assert float(ds["t2m"].sel(pick)) == pytest.approx(3.0 + 273.15)
    assert float(ds["z500"].sel(pick)) == pytest.approx(300.0)
    assert float(ds["z850"].sel(pick)) == pytest.approx(30.0)


def test_forecast_store_single_lead_becomes_valid_time(tmp_path: Path) -> None:
    init = np.array(["2020-01-01T00"], dtype="datetime64[ns]")
    store = xr.Dataset(
        {
            "2m_temperature": (
                ("time", "prediction_timedelta", "latitude", "longitude"),
                np.full((1, 1, 2, 2), 280.0),
                {"units": "K"},
            )
        },
        coords={
            "time": init,
            "prediction_timedelta": [np.timedelta64(6, "h")],
            "latitude": [0.0, 1.0],
            "longitude": [0.0, 1.0],
        },
    )
    store.to_zarr(tmp_path / "fc.zarr", consolidated=False)
    ds = open_gridded(tmp_path / "fc.zarr")
    assert ds["time"].values[0] == np.datetime64("2020-01-01T06:00", "ns")
    store2 = xr.concat(
        [store, store.assign_coords(prediction_timedelta=[np.timedelta64(12, "h")])],
        "prediction_timedelta",
    )
    store2.to_zarr(tmp_path / "fc2.zarr", consolidated=False)
    with pytest.raises(GriddedFileError, match="2 lead times"):
        open_gridded(tmp_path / "fc2.zarr")
