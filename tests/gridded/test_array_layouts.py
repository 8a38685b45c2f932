"""NetCDF and Zarr in the layouts real archives use, built here from real fields.

Pressure levels: GFS GRIB2 messages (t, gh, u, v, r, w on isobaricInhPa) are read with ecCodes
in the test, converted to SI by hand where a layout stores SI (gh × g0 for geopotential), and
written in the ERA5-CDS, ARCO-ERA5, WeatherBench2 and CMIP layouts (their variable names,
dimension order, latitude direction and level units: hPa, millibars, none, Pa). Each must
open to the same canonical fields, equal to the hand-converted ecCodes values.

Time axes under other names: the real ERA5 NetCDF sample rewritten with ERA-Interim /
NCL / WRF-style time coordinates (``t``, ``initial_time0_hours``, ``Time``, a time variable
along a ``record`` dimension) found by their CF attributes, against the sample as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import eccodes
import numpy as np
import pytest
import xarray as xr

from stratocast.gridded import GriddedFileError, open_gridded, skipped_fields

DATA = Path("/work/shared/data")
GFS = DATA / "grib" / "gfs.t12z.pgrbf120.2p5deg.grib2"
NC = DATA / "netcdf" / "era5_1995-07-14T12.nc"
G0 = 9.80665

# (this GFS file has no v on pressure levels: its v messages are ecCodes "unknown")
SHORTS = ("t", "gh", "u", "r", "w")
# canonical quantity and native → SI factor of each GFS shortName, by hand
SI = {"t": ("t", 1.0), "gh": ("z", G0), "u": ("u", 1.0), "r": ("r", 0.01), "w": ("w", 1.0)}


class Gfs:
    """GFS pressure-level cubes (level, lat north→south, lon), native units, ecCodes order."""

    def __init__(self) -> None:
        fields: dict[tuple[str, int], np.ndarray] = {}
        with GFS.open("rb") as fh:
            while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
                try:
                    short = eccodes.codes_get_string(h, "shortName")
                    if short in SHORTS and eccodes.codes_get_string(h, "typeOfLevel") == (
                        "isobaricInhPa"
                    ):
                        ni, nj = eccodes.codes_get(h, "Ni"), eccodes.codes_get(h, "Nj")
                        level = int(eccodes.codes_get(h, "level"))
                        fields[(short, level)] = eccodes.codes_get_values(h).reshape(nj, ni)
                        self.lat = np.linspace(
                            eccodes.codes_get(h, "latitudeOfFirstGridPointInDegrees"),
                            eccodes.codes_get(h, "latitudeOfLastGridPointInDegrees"),
                            nj,
                        )
                        self.lon = np.linspace(
                            eccodes.codes_get(h, "longitudeOfFirstGridPointInDegrees"),
                            eccodes.codes_get(h, "longitudeOfLastGridPointInDegrees"),
                            ni,
                        )
                        date, hhmm = (
                            eccodes.codes_get(h, "validityDate"),
                            eccodes.codes_get(h, "validityTime"),
                        )
                finally:
                    eccodes.codes_release(h)
        # one level axis for every variable: the levels all six quantities have
        self.levels = sorted(
            set.intersection(*({lv for s, lv in fields if s == q} for q in SHORTS))
        )
        self.cube = {
            short: np.stack([fields[(short, lv)] for lv in self.levels]) for short in SHORTS
        }
        self.time = np.datetime64(
            f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}T{hhmm // 100:02d}",
            "ns",
        )

    def expected(self) -> dict[str, np.ndarray]:
        """Canonical name → (lat ascending, lon) field in SI, converted by hand."""
        out = {}
        for short, (quantity, factor) in SI.items():
            for i, level in enumerate(self.levels):
                out[f"{quantity}{level}"] = self.cube[short][i][::-1] * factor
        return out


@pytest.fixture(scope="module")
def gfs() -> Gfs:
    if not GFS.exists():
        pytest.skip("shared GFS GRIB absent")
    return Gfs()


def _wb2(g: Gfs) -> xr.Dataset:
    """WeatherBench2: long names, (time, level, longitude, latitude), latitude ascending,
    integer hPa levels without units, geopotential in m2 s-2."""
    dims = ("time", "level", "longitude", "latitude")

    def var(short: str, units: str, factor: float = 1.0) -> tuple[Any, ...]:
        data = (g.cube[short][:, ::-1, :] * factor).transpose(0, 2, 1)[None]
        return dims, data, {"units": units}

    return xr.Dataset(
        {
            "temperature": var("t", "K"),
            "geopotential": var("gh", "m**2 s**-2", G0),
            "u_component_of_wind": var("u", "m s**-1"),
            "relative_humidity": var("r", "%"),
            "vertical_velocity": var("w", "Pa s**-1"),
        },
        coords={
            "time": [g.time],
            "level": np.array(g.levels, dtype=np.int64),
            "longitude": g.lon,
            "latitude": g.lat[::-1],
        },
    )


def _arco(g: Gfs) -> xr.Dataset:
    """ARCO-ERA5: long names, (time, level, latitude, longitude), latitude 90 → -90, levels
    with units 'millibars'."""
    ds = (
        _wb2(g)
        .transpose("time", "level", "latitude", "longitude")
        .isel(latitude=slice(None, None, -1))
    )
    ds["level"].attrs = {"long_name": "pressure_level", "units": "millibars"}
    return ds


def _cmip(g: Gfs, *, units: bool = True) -> xr.Dataset:
    """CMIP/CF: ta, zg (geopotential height, m), ua, hur (%), wap on plev in Pa."""
    dims = ("time", "plev", "lat", "lon")
    plev_attrs = {"units": "Pa", "standard_name": "air_pressure", "axis": "Z"} if units else {}
    return xr.Dataset(
        {
            name: (dims, g.cube[short][None], {"units": u})
            for name, short, u in (
                ("ta", "t", "K"),
                ("zg", "gh", "m"),
                ("ua", "u", "m s-1"),
                ("hur", "r", "%"),
                ("wap", "w", "Pa s-1"),
            )
        },
        coords={
            "time": [g.time],
            "plev": ("plev", np.array(g.levels, dtype=np.float64) * 100.0, plev_attrs),
            "lat": g.lat,
            "lon": g.lon,
        },
    )


def _cds(g: Gfs) -> xr.Dataset:
    """ERA5 from the new CDS: short names on pressure_level (hPa), valid_time axis."""
    dims = ("valid_time", "pressure_level", "latitude", "longitude")
    return xr.Dataset(
        {
            "t": (dims, g.cube["t"][None], {"units": "K"}),
            "z": (dims, g.cube["gh"][None] * G0, {"units": "m**2 s**-2"}),
            "u": (dims, g.cube["u"][None], {"units": "m s**-1"}),
            "r": (dims, g.cube["r"][None], {"units": "%"}),
            "w": (dims, g.cube["w"][None], {"units": "Pa s**-1"}),
        },
        coords={
            "valid_time": [g.time],
            "pressure_level": ("pressure_level", np.array(g.levels, float), {"units": "hPa"}),
            "latitude": g.lat,
            "longitude": g.lon,
        },
    )


LAYOUTS: dict[str, tuple[Callable[[Gfs], xr.Dataset], str]] = {
    "weatherbench2": (_wb2, "zarr"),
    "arco_era5": (_arco, "zarr"),
    "cmip_plev_pa": (_cmip, "nc"),
    "cmip_plev_no_units": (lambda g: _cmip(g, units=False), "nc"),
    "era5_cds": (_cds, "nc"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_pressure_levels_in_every_layout(gfs: Gfs, tmp_path: Path, layout: str) -> None:
    build, fmt = LAYOUTS[layout]
    path = tmp_path / f"{layout}.{fmt}"
    store = build(gfs)
    if fmt == "zarr":
        store.to_zarr(path, zarr_format=2)  # WB2 and ARCO-ERA5 are Zarr v2, consolidated
    else:
        store.to_netcdf(path)
    ds = open_gridded(path)
    expected = gfs.expected()
    assert set(ds.data_vars) == set(expected)
    for name, field in expected.items():
        got = ds[name].isel(time=0)
        assert got.dims == ("lat", "lon")
        np.testing.assert_allclose(got.values, field, rtol=1e-12, err_msg=name)
        if fmt == "zarr":  # still lazy: selecting a level and scaling loads nothing
            assert ds[name].chunks is not None, name
    assert ds["time"].values[0] == gfs.time
    assert skipped_fields(ds) == []


def test_non_standard_level_is_listed(gfs: Gfs, tmp_path: Path) -> None:
    store = _wb2(gfs).assign_coords(level=[*gfs.levels[:-1], 1013])
    store.to_zarr(tmp_path / "odd.zarr", zarr_format=2)
    ds = open_gridded(tmp_path / "odd.zarr")
    top = gfs.levels[-1]
    assert f"t{top}" not in ds and f"t{gfs.levels[0]}" in ds
    assert any(
        line.startswith("temperature@1013hPa: 1013 hPa is not one of the 37 standard")
        for line in skipped_fields(ds)
    )


# ---------------------------------------------------------------------------- time axes


@pytest.fixture(scope="module")
def era5() -> xr.Dataset:
    if not NC.exists():
        pytest.skip("shared ERA5 NetCDF absent")
    with xr.open_dataset(NC) as raw:
        return raw.load()


def _renamed_time(raw: xr.Dataset, name: str, attrs: dict[str, str]) -> xr.Dataset:
    ds = raw.expand_dims("time").rename({"time": name})
    ds[name].attrs = attrs
    ds[name].encoding = {"units": "hours since 1800-01-01 00:00", "dtype": "float64"}
    return ds


TIME_STYLES: dict[str, Callable[[xr.Dataset], xr.Dataset]] = {
    # ERA-Interim as some archives convert it: the time axis is "t"
    "t": lambda raw: _renamed_time(raw, "t", {"long_name": "time"}),
    # NCL ncl_convert2nc of ERA-Interim GRIB: initial_time0_hours, g0_lat_0, g0_lon_1
    "ncl": lambda raw: (
        _renamed_time(raw, "initial_time0_hours", {"long_name": "initial time"})
        .rename({"latitude": "g0_lat_0", "longitude": "g0_lon_1"})
        .assign_coords(
            g0_lat_0=("g0_lat_0", raw["latitude"].values, {"units": "degrees_north"}),
            g0_lon_1=("g0_lon_1", raw["longitude"].values, {"units": "degrees_east"}),
        )
    ),
    # WRF-derived: "Time" with CF standard_name and axis
    "Time": lambda raw: _renamed_time(raw, "Time", {"standard_name": "time", "axis": "T"}),
}


@pytest.mark.parametrize("style", sorted(TIME_STYLES))
def test_time_axis_under_other_names(era5: xr.Dataset, tmp_path: Path, style: str) -> None:
    reference = open_gridded(NC)
    path = tmp_path / f"{style}.nc"
    TIME_STYLES[style](era5).to_netcdf(path)
    ds = open_gridded(path)
    assert set(ds.data_vars) == set(reference.data_vars)
    assert ds["time"].values[0] == reference["time"].values[0]
    for name in reference.data_vars:
        np.testing.assert_array_equal(ds[name].values, reference[name].values)


def test_time_variable_along_a_record_dimension(era5: xr.Dataset, tmp_path: Path) -> None:
    ds = era5.expand_dims("record").rename({"time": "obs_time"})
    ds = ds.assign_coords(obs_time=("record", np.atleast_1d(era5["time"].values)))
    ds["obs_time"].encoding = {"units": "hours since 1900-01-01"}
    ds.to_netcdf(tmp_path / "record.nc")
    got = open_gridded(tmp_path / "record.nc")
    reference = open_gridded(NC)
    assert got["time"].values[0] == reference["time"].values[0]
    np.testing.assert_array_equal(got["t2m"].values, reference["t2m"].values)


def test_undecodable_time_is_named(era5: xr.Dataset, tmp_path: Path) -> None:
    # CDO's absolute time axis: CF does not define it, so it is named, not guessed at
    ds = era5.drop_vars("time").expand_dims("date")
    ds = ds.assign_coords(
        date=("date", [19950714.5], {"units": "day as %Y%m%d.%f", "standard_name": "time"})
    )
    ds.to_netcdf(tmp_path / "cdo.nc")
    with pytest.raises(GriddedFileError, match=r"time coordinate 'date'.*did not decode"):
        open_gridded(tmp_path / "cdo.nc")


def test_single_level_selected_before_writing(gfs: Gfs, tmp_path: Path) -> None:
    """ERA5 from the CDS with one level asked for: the level is a scalar coordinate."""
    i = gfs.levels.index(500)
    store = _cds(gfs).isel(pressure_level=i)  # pressure_level=500 stays as a scalar coord
    assert store["t"].dims == ("valid_time", "latitude", "longitude")
    store.to_netcdf(tmp_path / "one_level.nc")
    ds = open_gridded(tmp_path / "one_level.nc")
    expected = gfs.expected()
    assert set(ds.data_vars) == {f"{q}500" for q in ("t", "z", "u", "r", "w")}
    assert "pressure_level" not in ds.coords  # the level is in the names now
    for name in ds.data_vars:
        np.testing.assert_allclose(ds[name].isel(time=0).values, expected[str(name)], rtol=1e-12)
