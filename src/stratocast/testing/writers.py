"""Conformance suite every registered forecast writer must pass.

Use it by subclassing in a test module and providing a ``writer`` fixture (and, to run the
checks on another forecast, ``dataset``)::

    class TestGrib2(WriterTests):
        @pytest.fixture
        def writer(self): return get_writer("grib2")

The checks: the writer satisfies the :class:`ForecastWriter` protocol; a forecast written and
read back gives the same values (exactly, or to the writer's packing precision: within one
packing quantum of each field's range), the same init times, leads and members, and NaN where
the forecast had NaN; a deterministic forecast and an ensemble both round-trip; the storage is
chunked one field (init, member, lead, variable) per chunk where the format has chunks; units
and standard names survive where the format stores attributes; a write that fails part way
(a variable whose last lead cannot be computed) raises and leaves the previous product intact,
byte for byte, with no temporary file beside it; a dataset without ``init_time`` is refused
with a project error naming the file.

Writers whose product is not the gridded forecast itself (point series) give an
``expected(ds, path)`` method: what ``read`` must give back for ``ds``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.infer.writers.base import STATIC, ForecastWriter

CHANNELS = ("t2m", "u10", "v10", "msl", "z500", "t850")
#: (mean, spread) of each synthetic channel, so packing sees realistic ranges
_CLIMATE = {
    "t2m": (285.0, 8.0),
    "u10": (0.0, 6.0),
    "v10": (0.0, 6.0),
    "msl": (101300.0, 900.0),
    "z500": (55000.0, 1500.0),
    "t850": (275.0, 7.0),
}


class MidWriteFailure(RuntimeError):
    """Raised by :func:`failing_dataset` while a writer computes the last field."""


def synthetic_forecast(
    n_init: int = 2,
    n_lead: int = 3,
    lat: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    members: int | None = None,
    channels: tuple[str, ...] = CHANNELS,
    seed: int = 0,
    step_hours: int = 6,
) -> xr.Dataset:
    """A forecast dataset in the contract forecast.py builds (a regional box by default)."""
    from stratocast.vocab.variables import get

    rng = np.random.default_rng(seed)
    lat = np.linspace(60.0, 40.0, 11) if lat is None else np.asarray(lat, dtype=np.float64)
    lon = np.linspace(-10.0, 20.0, 16) if lon is None else np.asarray(lon, dtype=np.float64)
    dims: tuple[str, ...] = ("init_time", "lead_time", "lat", "lon")
    shape: tuple[int, ...] = (n_init, n_lead, lat.size, lon.size)
    if members is not None:
        dims = ("init_time", "member", "lead_time", "lat", "lon")
        shape = (n_init, members, n_lead, lat.size, lon.size)
    data = {}
    for c in channels:
        mean, spread = _CLIMATE.get(c, (1.0, 0.5))
        values = (mean + spread * rng.standard_normal(shape)).astype(np.float32)
        var = get(c) if c in _CLIMATE else None
        attrs = (
            {"units": var.units, "standard_name": var.standard_name}
            if var is not None
            else {"units": "kg m-2", "standard_name": "precipitation_amount"}
        )
        data[c] = (dims, values, attrs)
    inits = np.datetime64("2024-03-01T00:00", "ns") + np.arange(n_init) * np.timedelta64(12, "h")
    coords: dict[str, Any] = {
        "init_time": inits,
        "lead_time": ("lead_time", np.arange(n_lead) * step_hours, {"units": "hours"}),
        "lat": ("lat", lat, {"units": "degrees_north"}),
        "lon": ("lon", lon, {"units": "degrees_east"}),
    }
    if members is not None:
        coords["member"] = np.arange(members)
    ds = xr.Dataset(
        data,
        coords=coords,
        attrs={
            "title": "stratocast deterministic forecast",
            "model": "test",
            "checkpoint": "none",
            "stratocast_version": "0",
        },
    )
    oro = rng.uniform(0.0, 1500.0, (lat.size, lon.size)).astype(np.float32)
    ds["orography"] = (("lat", "lon"), oro, {"units": "m"})
    return ds


def failing_dataset(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` whose last forecast variable raises :class:`MidWriteFailure` when its last lead
    is computed (a dask array): a writer fails part way through, after writing other fields."""
    import dask.array as da

    name = [str(v) for v in ds.data_vars if str(v) not in STATIC][-1]
    var = ds[name]
    lead_axis = var.dims.index("lead_time")
    last = var.sizes["lead_time"] - 1
    chunks = tuple(1 if d not in ("lat", "lon") else var.sizes[d] for d in var.dims)
    arr = da.from_array(np.asarray(var.values), chunks=chunks)

    def boom(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        if block_info is not None and block_info[0]["chunk-location"][lead_axis] == last:
            raise MidWriteFailure(f"{name}: lead {last} cannot be computed")
        return block

    out = ds.copy()
    out[name] = (var.dims, arr.map_blocks(boom, dtype=var.dtype), var.attrs)
    return out


def canonical(ds: xr.Dataset) -> xr.Dataset:
    """Grid order every format can be compared in: lat ascending, lon in [0, 360) ascending."""
    if "lat" not in ds.dims:
        return ds  # a point series: no grid
    lon = np.mod(np.asarray(ds["lon"].values, dtype=np.float64), 360.0)
    lon[np.isclose(lon, 360.0)] = 0.0
    lon = np.round(lon, 6)
    lat = np.round(np.asarray(ds["lat"].values, dtype=np.float64), 6)
    return ds.assign_coords(lat=lat, lon=lon).sortby(["lat", "lon"])


def packing_tolerance(values: np.ndarray, bits: int | None) -> np.ndarray:
    """Per 2-D field (last two axes): the largest error simple packing to ``bits`` may make
    (one quantum of the field's range; ecCodes rounds the quantum up to a power of two, so
    half a quantum of rounding is under range / (2^bits − 1)); 0 where stored exactly."""
    if bits is None:
        return np.zeros((*values.shape[:-2], 1, 1))
    with np.errstate(invalid="ignore"):
        rng = np.nanmax(values, axis=(-2, -1), keepdims=True) - np.nanmin(
            values, axis=(-2, -1), keepdims=True
        )
    return np.nan_to_num(rng) / (2.0**bits - 1.0) * 1.0001 + 1e-9 * np.nanmax(np.abs(values))


def assert_same_forecast(got: xr.Dataset, want: xr.Dataset, bits: int | None) -> None:
    """Fields, coordinates, members and NaN positions of ``got`` equal ``want``'s."""
    got, want = canonical(got), canonical(want)
    fields = [str(v) for v in want.data_vars if str(v) not in STATIC]
    missing = sorted(set(fields) - set(map(str, got.data_vars)))
    assert not missing, f"variables lost: {missing}"
    for coord in ("init_time", "lead_time", "member", "site"):
        if coord in want.coords or coord in want.dims:
            assert coord in got.coords, f"{coord} lost"
            np.testing.assert_array_equal(
                np.asarray(got[coord].values), np.asarray(want[coord].values), err_msg=coord
            )
    for axis in ("lat", "lon"):
        if axis in want.dims:
            np.testing.assert_allclose(got[axis].values, want[axis].values, atol=1e-5)
    for name in fields:
        w = np.asarray(want[name].transpose(*want[name].dims).values, dtype=np.float64)
        g = np.asarray(got[name].transpose(*want[name].dims).values, dtype=np.float64)
        assert g.shape == w.shape, (name, g.shape, w.shape)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{name}: NaN moved")
        tol = packing_tolerance(w, bits) if w.ndim >= 2 and "lat" in want.dims else 0.0
        err = np.abs(np.nan_to_num(g - w))
        excess = err - tol
        assert (excess <= 0).all(), f"{name}: error {err.max():.3g} beyond packing"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def zarr_chunks(path: Path, name: str) -> tuple[int, ...]:
    import zarr

    arr = zarr.open_group(str(path), mode="r")[name]
    return tuple(arr.chunks)  # type: ignore[union-attr]


def netcdf_chunks(path: Path, name: str) -> tuple[int, ...] | str:
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        chunking = nc.variables[name].chunking()
        return chunking if isinstance(chunking, str) else tuple(chunking)


def grib_messages(path: Path) -> list[int]:
    """The number of values of each GRIB message (one field each)."""
    import eccodes

    sizes = []
    with path.open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            sizes.append(int(eccodes.codes_get(h, "numberOfValues")))
            eccodes.codes_release(h)
    return sizes


def _field_chunks(ds: xr.Dataset, name: str, dims: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(ds.sizes[d] if d in ("lat", "lon") else 1 for d in dims)


def _check_zarr(path: Path, ds: xr.Dataset, fields: list[str]) -> None:
    for name in fields:
        assert zarr_chunks(path, name) == _field_chunks(ds, name, ds[name].dims), name


def _check_netcdf(path: Path, ds: xr.Dataset, fields: list[str]) -> None:
    for name in fields:
        got = netcdf_chunks(path, name)
        # the file stores (reference time, [realization,] period, lat, lon): one field a chunk
        assert got != "contiguous", f"{name} is not chunked"
        assert tuple(got)[-2:] == (ds.sizes["lat"], ds.sizes["lon"]), (name, got)
        assert all(c == 1 for c in tuple(got)[:-2]), (name, got)


def _check_grib(path: Path, ds: xr.Dataset, fields: list[str]) -> None:
    n_fields = ds.sizes["init_time"] * ds.sizes["lead_time"] * ds.sizes.get("member", 1)
    sizes = grib_messages(path)
    assert len(sizes) == n_fields * len(fields), (len(sizes), n_fields, fields)
    assert set(sizes) == {ds.sizes["lat"] * ds.sizes["lon"]}


#: how each format stores one field; a format missing here has no chunks (point tables)
CHUNK_CHECKS: dict[str, Callable[[Path, xr.Dataset, list[str]], None]] = {
    "zarr": _check_zarr,
    "netcdf": _check_netcdf,
    "grib2": _check_grib,
}


class WriterTests:
    """Mixin of pytest tests; subclasses provide ``writer`` (and may override ``dataset``)."""

    #: whether ``read`` gives back ``units``/``standard_name`` (a point table has no attrs)
    keeps_attributes = True

    @pytest.fixture
    def dataset(self) -> xr.Dataset:
        return synthetic_forecast()

    @pytest.fixture
    def out(self, writer: ForecastWriter, tmp_path: Path) -> Path:
        return tmp_path / f"forecast{writer.suffix}"

    def _expected(self, writer: Any, ds: xr.Dataset, path: Path) -> xr.Dataset:
        return writer.expected(ds, path) if hasattr(writer, "expected") else ds

    def _round_trip(self, writer: ForecastWriter, ds: xr.Dataset, path: Path) -> None:
        assert writer.write(ds, path) == path
        assert path.exists()
        assert_same_forecast(
            writer.read(path), self._expected(writer, ds, path), writer.packing_bits
        )

    def test_protocol(self, writer: Any) -> None:
        assert isinstance(writer, ForecastWriter)
        assert isinstance(writer.name, str) and writer.name
        assert writer.suffix.startswith(".")
        assert writer.packing_bits is None or 1 <= writer.packing_bits <= 32

    def test_round_trip(self, writer: ForecastWriter, dataset: xr.Dataset, out: Path) -> None:
        self._round_trip(writer, dataset, out)

    def test_round_trip_ensemble(self, writer: ForecastWriter, out: Path) -> None:
        ds = synthetic_forecast(members=3, seed=1)
        ds = ds.assign_coords(member=np.array([0, 4, 7]))  # numbers kept, not renumbered
        self._round_trip(writer, ds, out)

    def test_round_trip_lat_ascending_global(self, writer: ForecastWriter, out: Path) -> None:
        ds = synthetic_forecast(
            n_init=1, lat=np.linspace(-90.0, 90.0, 7), lon=np.arange(0.0, 360.0, 30.0)
        )
        self._round_trip(writer, ds, out)

    def test_nan_round_trip(self, writer: ForecastWriter, dataset: xr.Dataset, out: Path) -> None:
        ds = dataset.copy(deep=True)
        name = next(str(v) for v in ds.data_vars if str(v) not in STATIC)
        values = ds[name].values
        values[0, 0, :3, :4] = np.nan  # a missing corner (a regional model's edge)
        values[-1, -1, 5, 7] = np.nan
        ds[name].values = values
        self._round_trip(writer, ds, out)

    def test_chunking(self, writer: ForecastWriter, dataset: xr.Dataset, out: Path) -> None:
        check = CHUNK_CHECKS.get(writer.name)
        if check is None:
            pytest.skip(f"{writer.name} products have no chunks")
        fields = [str(v) for v in dataset.data_vars if str(v) not in STATIC]
        writer.write(dataset, out)
        check(out, dataset, fields)
        ens = synthetic_forecast(members=2)
        writer.write(ens, out)
        check(out, ens, fields)

    def test_attributes(self, writer: ForecastWriter, dataset: xr.Dataset, out: Path) -> None:
        if not self.keeps_attributes:
            pytest.skip(f"{writer.name} stores no variable attributes")
        writer.write(dataset, out)
        back = writer.read(out)
        for name in (str(v) for v in dataset.data_vars if str(v) not in STATIC):
            for key in ("units", "standard_name"):
                assert back[name].attrs.get(key) == dataset[name].attrs[key], (name, key)

    def test_failure_mid_write_keeps_previous(
        self, writer: ForecastWriter, dataset: xr.Dataset, out: Path
    ) -> None:
        writer.write(dataset, out)
        before = _digest(out)
        changed = dataset.copy(deep=True)
        for name in changed.data_vars:
            if str(name) not in STATIC:
                changed[name] = changed[name] + 1.0
        with pytest.raises((MidWriteFailure, StratocastError), match="cannot be computed"):
            writer.write(failing_dataset(changed), out)
        assert _digest(out) == before, "a failed write changed the previous product"
        assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "temp files left"
        assert_same_forecast(
            writer.read(out), self._expected(writer, dataset, out), writer.packing_bits
        )

    def test_missing_init_time_refused(
        self, writer: ForecastWriter, dataset: xr.Dataset, out: Path
    ) -> None:
        bad = dataset.isel(init_time=0, drop=True)
        with pytest.raises(StratocastError, match="init_time") as err:
            writer.write(bad, out)
        assert str(out) in str(err.value)
        assert not out.exists()
