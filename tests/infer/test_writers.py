"""Every registered forecast writer through the shared conformance suite, and the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.infer.writers.base import ForecastWriter
from stratocast.infer.writers.registry import (
    UnknownWriterError,
    WriterOptionError,
    available_writers,
    get_writer,
)
from stratocast.infer.writers.zarr_writer import write_zarr
from stratocast.testing.writers import WriterTests, synthetic_forecast

SITES = pd.DataFrame(
    {
        "site_id": ["EGLL", "LFPG", "EDDF", "off-grid"],
        "lat": [51.47, 49.01, 50.03, 10.0],
        "lon": [-0.45, 2.55, 8.57, 0.0],
        "elevation": [25.0, 119.0, np.nan, 0.0],
    }
)


class TestZarr(WriterTests):
    @pytest.fixture
    def writer(self) -> ForecastWriter:
        return get_writer("zarr")


class TestNetcdf(WriterTests):
    @pytest.fixture
    def writer(self) -> ForecastWriter:
        return get_writer("netcdf")


class TestGrib2(WriterTests):
    @pytest.fixture
    def writer(self) -> ForecastWriter:
        return get_writer("grib2")


class TestPointsCsv(WriterTests):
    keeps_attributes = False

    @pytest.fixture
    def writer(self) -> ForecastWriter:
        return get_writer("points_csv", sites=SITES)


class TestPointsParquet(WriterTests):
    keeps_attributes = False

    @pytest.fixture
    def writer(self) -> ForecastWriter:
        return get_writer("points_parquet", sites=SITES)


def test_every_registered_writer_has_a_suite() -> None:
    tested = {"zarr", "netcdf", "grib2", "points_csv", "points_parquet"}
    assert set(available_writers()) == tested


def test_unknown_writer_names_the_known_ones() -> None:
    with pytest.raises(UnknownWriterError, match=r"'geotiff'.*grib2.*netcdf"):
        get_writer("geotiff")
    with pytest.raises(WriterOptionError, match="netcdf"):
        get_writer("netcdf", nonsense=1)


def test_points_writer_without_sites_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StratocastError, match="site list"):
        get_writer("points_csv").write(synthetic_forecast(), tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_write_zarr_keeps_its_behaviour(tmp_path: Path) -> None:
    """forecast.py's write_zarr: a Zarr v3 store, replaced atomically, values exact, and now
    chunked one field per chunk."""
    ds = synthetic_forecast()
    out = tmp_path / "forecast.zarr"
    assert write_zarr(ds, out) == out
    write_zarr(ds + 0, out)  # replacing an existing store
    assert (out / "zarr.json").exists()
    back = xr.open_zarr(out, consolidated=False, decode_timedelta=False)
    xr.testing.assert_equal(back["t2m"].load(), ds["t2m"])
    assert back["t2m"].encoding["chunks"] == (1, 1, 11, 16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forecast.zarr"]
