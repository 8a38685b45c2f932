"""ARCO-ERA5 and WeatherBench2 store layouts (stratocast.testing.era5_layouts) from real samples.

Each sample is opened with open_gridded, written in an archive's layout, and checked twice:
the raw store (names, dim order, latitude direction, coordinate dtypes and attrs, time
encoding, chunks, compressor, Zarr format 2 with .zmetadata) against what the real archive
has, and open_gridded on the store against the input (values equal in float32).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from stratocast.gridded import open_gridded
from stratocast.gridded.lexicon import ARRAY_NAMES, G0, Target
from stratocast.testing.era5_layouts import (
    ARCO,
    LEXICON_GAPS,
    WEATHERBENCH2,
    LayoutError,
    archive_names,
    write_arco_era5,
    write_weatherbench2,
    zarr2_json,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")
GRIB = DATA / "grib" / "era5-levels-members.grib"
NETCDF = DATA / "netcdf" / "era5_1995-07-14T12.nc"
MSL = DATA / "grib" / "regular_ll_msl.grib"
needs_data = pytest.mark.skipif(
    not (GRIB.exists() and NETCDF.exists() and MSL.exists()),
    reason=f"real samples not found under {DATA}",
)
pytestmark = needs_data

# float32 ulp at 1: orography goes through one multiply by g0 (writer, float64 then rounded)
# and one by 1/g0 (reader, float32), so it may land one ulp off; everything else is exact
ULP = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def levels() -> xr.Dataset:
    """ERA5 z/t at 500/850 hPa, 2017-01-01/02 00/12 UTC, one ensemble member, global 3°."""
    return open_gridded(GRIB).isel(member=0, drop=True).load()


@pytest.fixture(scope="module")
def surface() -> xr.Dataset:
    """ERA5 t2m/u10/v10/d2m/sp on a regional 0.25° grid, plus statics built here."""
    ds = open_gridded(NETCDF).load()
    lat = np.radians(ds["lat"].values)[:, None]
    lon = np.radians(ds["lon"].values)[None, :]
    orog = 1500.0 * (1.0 + np.sin(3 * lat) * np.cos(5 * lon))  # 0 … 3000 m, smooth
    ds["orography"] = (("lat", "lon"), orog.astype(np.float32))
    ds["lsm"] = (("lat", "lon"), (orog > 1500.0).astype(np.float32))
    return ds


@pytest.fixture(scope="module")
def msl() -> xr.Dataset:
    """A global 1° msl field with both pole rows."""
    return open_gridded(MSL).load()


def _zarray(store: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((store / name / ".zarray").read_text()))


def _zattrs(store: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((store / name / ".zattrs").read_text()))


def _assert_same(expected: xr.Dataset, got: xr.Dataset, exact: bool = True) -> None:
    """Every input variable comes back on the same coordinates with equal float32 values."""
    np.testing.assert_array_equal(got["lat"].values, expected["lat"].values)
    np.testing.assert_array_equal(got["lon"].values, expected["lon"].values)
    np.testing.assert_array_equal(got["time"].values, expected["time"].values)
    for name in map(str, expected.data_vars):
        want = expected[name].astype(np.float32)
        have = got[name]
        if "time" in have.dims and "time" not in want.dims:  # ARCO repeats statics hourly
            assert bool((have == have.isel(time=0)).all())
            have = have.isel(time=0, drop=True)
        have = have.transpose(*want.dims)
        assert have.dtype == np.float32, name
        if name == "orography":
            np.testing.assert_allclose(have.values, want.values, rtol=ULP, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(have.values, want.values, err_msg=name)


def _assert_zarr2_consolidated(store: Path) -> None:
    """Format 2, and .zmetadata lists exactly the metadata documents on disk, verbatim."""
    assert json.loads((store / ".zgroup").read_text()) == {"zarr_format": 2}
    assert not (store / "zarr.json").exists()
    meta = json.loads((store / ".zmetadata").read_text())
    assert meta["zarr_consolidated_format"] == 1
    on_disk = {
        p.relative_to(store).as_posix(): json.loads(p.read_text())
        for p in store.rglob(".z*")
        if p.name in (".zarray", ".zattrs", ".zgroup")
    }
    assert meta["metadata"] == on_disk
    for key, doc in on_disk.items():
        if key.endswith(".zarray"):
            assert doc["zarr_format"] == 2
            assert doc["compressor"] == {
                "id": "blosc",
                "cname": "lz4",
                "clevel": 5,
                "shuffle": 1,
                "blocksize": 0,
            }
            assert doc["filters"] is None and doc["order"] == "C"
            assert "dimension_separator" not in doc  # zarr-python 2 never wrote it
        # zarr-python 2's own serialisation, byte for byte
        assert (store / key).read_text() == zarr2_json(doc)


# ---------------------------------------------------------------------------- ARCO-ERA5


def test_arco_levels_layout_and_round_trip(levels: xr.Dataset, tmp_path: Path) -> None:
    store = write_arco_era5(levels, tmp_path / "arco.zarr")
    _assert_zarr2_consolidated(store)

    raw = xr.open_zarr(store)
    assert sorted(raw.data_vars) == ["geopotential", "temperature"]
    assert raw["geopotential"].dims == ("time", "level", "latitude", "longitude")
    assert raw["temperature"].dims == ("time", "level", "latitude", "longitude")
    lat = raw["latitude"].values
    assert raw["latitude"].dtype == np.float32 and raw["longitude"].dtype == np.float32
    assert lat[0] == 90.0 and lat[-1] == -90.0 and bool((np.diff(lat) < 0).all())
    assert raw["longitude"].values[0] == 0.0 and raw["longitude"].values[-1] == 357.0
    assert raw["level"].values.tolist() == [500, 850] and raw["level"].dtype == np.int64
    assert _zattrs(store, "level") == {
        "_ARRAY_DIMENSIONS": ["level"],
        "long_name": "pressure_level",
        "units": "millibars",
    }
    assert _zattrs(store, "latitude")["units"] == "degrees_north"
    geo = _zattrs(store, "geopotential")
    assert geo["units"] == "m**2 s**-2" and geo["short_name"] == "z"
    # time: int64 hours since 1900-01-01, proleptic Gregorian
    time_attrs = _zattrs(store, "time")
    assert time_attrs["units"] == "hours since 1900-01-01"
    assert time_attrs["calendar"] == "proleptic_gregorian"
    assert _zarray(store, "time")["dtype"] == "<i8"
    raw_hours = xr.open_zarr(store, decode_times=False)["time"].values
    assert raw_hours.tolist() == [1025616, 1025628, 1025640, 1025652]  # 2017-01-01T00 …
    # chunk-1: one time step per chunk, every level and the whole grid in it
    assert _zarray(store, "geopotential")["chunks"] == [1, 2, 61, 120]
    assert _zarray(store, "geopotential")["dtype"] == "<f4"
    assert _zarray(store, "geopotential")["fill_value"] == "NaN"
    assert raw.attrs["valid_time_start"] == "2017-01-01"
    assert raw.attrs["valid_time_stop"] == "2017-01-02"
    # the archive's pole row is the first row: the input's last (lat ascending) row
    np.testing.assert_array_equal(
        raw["temperature"].sel(level=850).isel(latitude=0).values,
        levels["t850"].isel(lat=-1).astype(np.float32).values,
    )

    _assert_same(levels, open_gridded(store))


def test_arco_surface_statics_every_hour(surface: xr.Dataset, tmp_path: Path) -> None:
    store = write_arco_era5(surface, tmp_path / "arco.zarr")
    _assert_zarr2_consolidated(store)
    raw = xr.open_zarr(store)
    assert sorted(raw.data_vars) == [
        "10m_u_component_of_wind",
        "10m_v_component_of_wind",
        "2m_dewpoint_temperature",
        "2m_temperature",
        "geopotential_at_surface",
        "land_sea_mask",
        "surface_pressure",
    ]
    assert "level" not in raw.dims  # no pressure-level variable, no level axis
    for name in raw.data_vars:  # ARCO's statics have a time axis like everything else
        assert raw[name].dims == ("time", "latitude", "longitude"), name
        assert _zarray(store, str(name))["chunks"] == [1, 105, 237]
    assert raw["latitude"].values[0] == 50.0 and raw["latitude"].values[-1] == 24.0
    # surface geopotential, not height: g0 × orography
    np.testing.assert_allclose(
        raw["geopotential_at_surface"].isel(time=0).values[::-1],
        surface["orography"].values * G0,
        rtol=ULP,
    )
    assert _zattrs(store, "land_sea_mask")["units"] == "(0 - 1)"
    assert _zattrs(store, "2m_temperature") == {
        "_ARRAY_DIMENSIONS": ["time", "latitude", "longitude"],
        "long_name": "2 metre temperature",
        "short_name": "t2m",
        "units": "K",
    }

    # land_sea_mask is not in the lexicon yet (LEXICON_GAPS): read it with one more entry
    lex = {**ARRAY_NAMES, ("land_sea_mask", None): Target("lsm", "(0 - 1)")}
    back = open_gridded(store, array_lexicon=lex)
    _assert_same(surface, back)
    assert "lsm" not in open_gridded(store)  # and without it the reader skips it


def test_arco_regular_time_fills_hours_with_nan(levels: xr.Dataset, tmp_path: Path) -> None:
    store = write_arco_era5(levels, tmp_path / "arco.zarr", regular_time=True)
    raw = xr.open_zarr(store)
    assert raw.sizes["time"] == 37  # 2017-01-01T00 … 2017-01-02T12, hourly
    assert (
        np.diff(raw["time"].values).astype("timedelta64[h]").tolist()
        == [np.timedelta64(1, "h")] * 36
    )
    assert bool(raw["temperature"].sel(time="2017-01-01T01").isnull().all())
    back = open_gridded(store).sel(time=levels["time"].values)
    _assert_same(levels, back)


# ---------------------------------------------------------------------------- WeatherBench2


def test_wb2_1440x721_layout_and_round_trip(
    levels: xr.Dataset, surface: xr.Dataset, tmp_path: Path
) -> None:
    store = write_weatherbench2(levels, tmp_path / "wb2.zarr")
    _assert_zarr2_consolidated(store)
    raw = xr.open_zarr(store)
    assert raw["geopotential"].dims == ("time", "level", "latitude", "longitude")
    assert raw["latitude"].dtype == np.float32
    assert raw["latitude"].values[0] == 90.0  # descending, as in the 0.25° store
    assert raw["level"].dtype == np.int64
    assert _zattrs(store, "level") == {"_ARRAY_DIMENSIONS": ["level"]}  # no units there
    assert _zattrs(store, "time")["units"] == "hours since 1959-01-01"
    assert _zarray(store, "temperature")["chunks"] == [1, 2, 61, 120]
    assert not raw.attrs
    _assert_same(levels, open_gridded(store))

    store = write_weatherbench2(surface, tmp_path / "wb2_sfc.zarr")
    raw = xr.open_zarr(store)
    assert raw["geopotential_at_surface"].dims == ("latitude", "longitude")  # static: 2-D
    assert raw["land_sea_mask"].dims == ("latitude", "longitude")
    assert raw["2m_temperature"].dims == ("time", "latitude", "longitude")
    assert _zarray(store, "geopotential_at_surface")["chunks"] == [105, 237]
    lex = {**ARRAY_NAMES, ("land_sea_mask", None): Target("lsm", "(0 - 1)")}
    _assert_same(surface, open_gridded(store, array_lexicon=lex))


@pytest.mark.parametrize("layout", ["240x121", "64x32"])
def test_wb2_conservative_layouts(
    layout: str, levels: xr.Dataset, surface: xr.Dataset, tmp_path: Path
) -> None:
    store = write_weatherbench2(levels, tmp_path / "wb2.zarr", layout=layout)  # type: ignore[arg-type]
    _assert_zarr2_consolidated(store)
    raw = xr.open_zarr(store)
    # the regridded stores put longitude before latitude, latitude ascending, float64
    assert raw["geopotential"].dims == ("time", "level", "longitude", "latitude")
    assert raw["latitude"].dtype == np.float64 and raw["longitude"].dtype == np.float64
    assert raw["latitude"].values[0] == -90.0 and bool((np.diff(raw["latitude"]) > 0).all())
    assert _zarray(store, "geopotential")["chunks"] == [8, 2, 120, 61]  # time chunk 8
    assert _zarray(store, "geopotential")["shape"] == [4, 2, 120, 61]
    np.testing.assert_array_equal(
        raw["geopotential"].sel(level=500).isel(time=0).values,
        levels["z500"].isel(time=0).astype(np.float32).values.T,
    )
    _assert_same(levels, open_gridded(store))

    store = write_weatherbench2(surface, tmp_path / "wb2_sfc.zarr", layout=layout)  # type: ignore[arg-type]
    raw = xr.open_zarr(store)
    assert raw["geopotential_at_surface"].dims == ("longitude", "latitude")
    assert raw["2m_temperature"].dims == ("time", "longitude", "latitude")
    lex = {**ARRAY_NAMES, ("land_sea_mask", None): Target("lsm", "(0 - 1)")}
    _assert_same(surface, open_gridded(store, array_lexicon=lex))


def test_wb2_metadata_bytes_match_the_real_240x121_store(
    levels: xr.Dataset, surface: xr.Dataset, tmp_path: Path
) -> None:
    """The real store's .zarray objects are 369 / 393 / 343 / 317 / 314 bytes (sizes pinned by
    a public tutorial that reads it): ours, at its shapes, are the same length."""
    upper = write_weatherbench2(levels, tmp_path / "u.zarr", layout="240x121")
    sfc = write_weatherbench2(surface, tmp_path / "s.zarr", layout="240x121")
    nt = 93544  # 1959-01-01T00 … 2023-01-10T18, 6-hourly
    cases = {
        (sfc, "2m_temperature"): ([nt, 240, 121], [8, 240, 121], 369),
        (sfc, "geopotential_at_surface"): ([240, 121], [240, 121], 343),
        (upper, "geopotential"): ([nt, 13, 240, 121], [8, 13, 240, 121], 393),
        (upper, "latitude"): ([121], [121], 317),
        (upper, "level"): ([13], [13], 314),
    }
    for (store, name), (shape, chunks, size) in cases.items():
        doc = {**_zarray(store, name), "shape": shape, "chunks": chunks}
        assert len(zarr2_json(doc)) == size, name


def test_wb2_global_msl_with_pole_rows(msl: xr.Dataset, tmp_path: Path) -> None:
    store = write_weatherbench2(msl, tmp_path / "wb2.zarr")
    raw = xr.open_zarr(store)
    assert raw["mean_sea_level_pressure"].dims == ("time", "latitude", "longitude")
    assert raw["latitude"].values[[0, -1]].tolist() == [90.0, -90.0]
    assert _zattrs(store, "mean_sea_level_pressure")["standard_name"] == (
        "air_pressure_at_mean_sea_level"
    )
    _assert_same(msl, open_gridded(store))


def test_wb2_relative_humidity_is_a_fraction_without_attrs(
    levels: xr.Dataset, tmp_path: Path
) -> None:
    """WB2 derives relative_humidity by xarray arithmetic: a fraction, no units attribute."""
    ds = levels.assign(r850=(levels["t850"] - 200.0) / 100.0)  # any field of fractions
    store = write_weatherbench2(ds, tmp_path / "wb2.zarr")
    assert _zattrs(store, "relative_humidity") == {
        "_ARRAY_DIMENSIONS": ["time", "level", "latitude", "longitude"]
    }
    raw = xr.open_zarr(store)["relative_humidity"].sel(level=850)
    np.testing.assert_array_equal(raw.values[:, ::-1, :], ds["r850"].astype(np.float32).values)
    with pytest.raises(LayoutError, match=r"ARCO-ERA5 .* no variable for \['r850'\]"):
        write_arco_era5(ds, tmp_path / "arco.zarr")


# ---------------------------------------------------------------------------- both


def test_missing_quantity_level_pairs_are_nan(levels: xr.Dataset, tmp_path: Path) -> None:
    part = levels[["t500", "z850"]]
    store = write_arco_era5(part, tmp_path / "arco.zarr")
    raw = xr.open_zarr(store)
    assert raw["level"].values.tolist() == [500, 850]  # the union, for every quantity
    assert bool(raw["temperature"].sel(level=850).isnull().all())
    assert bool(raw["geopotential"].sel(level=500).isnull().all())
    back = open_gridded(store)
    _assert_same(part, back)
    assert bool(back["t850"].isnull().all()) and bool(back["z500"].isnull().all())


def test_refused_inputs_name_what_and_where(levels: xr.Dataset, tmp_path: Path) -> None:
    members = open_gridded(GRIB, variables=["t850"])
    with pytest.raises(LayoutError, match=r"member.*isel\(member=0\)"):
        write_arco_era5(members, tmp_path / "a.zarr")
    with pytest.raises(LayoutError, match=r"no variable for \['qnh'\]"):
        write_weatherbench2(levels.assign(qnh=levels["t850"]), tmp_path / "b.zarr")
    odd = levels.assign_coords(time=levels["time"] + np.timedelta64(3, "h"))
    with pytest.raises(LayoutError, match="6-hourly"):
        write_weatherbench2(odd, tmp_path / "c.zarr")
    write_arco_era5(odd, tmp_path / "d.zarr")  # 03 UTC is on ARCO's hourly axis
    with pytest.raises(LayoutError, match="unknown WeatherBench2 layout"):
        write_weatherbench2(levels, tmp_path / "e.zarr", layout="1x1")  # type: ignore[arg-type]


def test_names_come_from_the_lexicon() -> None:
    arco = archive_names(ARCO)
    assert arco["t2m"] == "2m_temperature" and arco["orography"] == "geopotential_at_surface"
    assert arco["z"] == "geopotential" and arco["q"] == "specific_humidity"
    assert arco["lsm"] == "land_sea_mask"
    wb2 = archive_names(WEATHERBENCH2["1440x721"])
    assert wb2["r"] == "relative_humidity" and wb2["ws10"] == "10m_wind_speed"
    # a gap filled here must really be a gap: once the lexicon learns the name, drop it here
    for name in LEXICON_GAPS:
        assert (name, None) not in ARRAY_NAMES, f"{name} is in the lexicon now: remove the gap"


# ---------------------------------------------------------------------------- over HTTP


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a fresh directory."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_arco_store_served_over_http(levels: xr.Dataset, http_root: tuple[Path, str]) -> None:
    pytest.importorskip("aiohttp")
    from stratocast.obs.fetch import open_arco_era5

    root, base = http_root
    store = write_arco_era5(levels, root / "ar" / "full_37-1h-0p25deg-chunk-1.zarr-v3")
    remote = open_arco_era5(f"{base}/ar/{store.name}", consolidated=True)
    assert remote["geopotential"].dims == ("time", "level", "latitude", "longitude")
    np.testing.assert_array_equal(
        remote["geopotential"].sel(level=500).values,
        xr.open_zarr(store)["geopotential"].sel(level=500).values,
    )
