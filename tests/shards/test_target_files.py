"""A target from several files along time (daily ERA5 NetCDF files, as the CDS delivers them):
a list of paths or a glob, opened once each, checked against each other, joined lazily."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.shards.pipeline import read_block
from stratocast.shards.target import TargetConfig, TargetError, open_target

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NC = DATA / "netcdf" / "era5_1995-07-14T12.nc"
CHANNELS = ["t2m", "u10", "sp"]
STEPS = 4  # per daily file: 00, 06, 12, 18 UTC

pytestmark = pytest.mark.skipif(not NC.exists(), reason="../shared/data (real samples) absent")


def _day(day: int, variables: list[str] = CHANNELS, rows: slice = slice(None)) -> xr.Dataset:
    """Day ``day`` (from 1995-07-14) of 6-hourly fields: the real sample's, shifted a little
    per step so that every step differs; CDS layout (latitude descending, -125..-66)."""
    with xr.open_dataset(NC) as src:
        base = src[variables].isel(latitude=rows).load()
    hours = (day * STEPS + np.arange(STEPS)) * np.timedelta64(6, "h")
    times = np.datetime64("1995-07-14T00", "ns") + hours
    ds = xr.Dataset(
        {
            v: (
                ("time", "latitude", "longitude"),
                np.stack([base[v].values + 0.25 * (day * STEPS + k) for k in range(STEPS)]),
                dict(base[v].attrs),
            )
            for v in variables
        },
        coords={"time": times, "latitude": base["latitude"], "longitude": base["longitude"]},
    )
    return ds.astype(np.float32)


def _write(path: Path, ds: xr.Dataset) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="netcdf4")
    return path


def _target(tmp_path: Path, source: str | list[str], **kw: object) -> xr.Dataset:
    cfg = TargetConfig.model_validate({"source": source, **kw})
    return open_target(cfg, CHANNELS, world_truth=_no_world, cache_dir=tmp_path / "cache")


def _no_world() -> Path:
    raise AssertionError("a file source must not look for the world's truth")


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Three daily files and the same three days as one file."""
    root = tmp_path_factory.mktemp("daily")
    days = [_day(d) for d in range(3)]
    files = [_write(root / "era5" / f"era5_1995071{4 + d}.nc", ds) for d, ds in enumerate(days)]
    whole = _write(root / "whole.nc", xr.concat(days, dim="time"))
    return files, whole


def test_a_glob_or_a_list_equals_the_same_days_in_one_file(
    tmp_path: Path, daily: tuple[list[Path], Path]
) -> None:
    files, whole = daily
    one = _target(tmp_path, str(whole), start="1995-07-14T06", end="1995-07-16T12")
    by_glob = _target(
        tmp_path, str(files[0].parent / "era5_*.nc"), start="1995-07-14T06", end="1995-07-16T12"
    )
    # in any order: the files are put in time order
    by_list = _target(
        tmp_path,
        [str(f) for f in reversed(files)],
        start="1995-07-14T06",
        end="1995-07-16T12",
    )
    assert one.sizes["time"] == 3 * STEPS - 2
    for got in (by_glob, by_list):
        assert got["t2m"].chunks is not None  # lazy: one dask chunk per file
        np.testing.assert_array_equal(got["time"].values, one["time"].values)
        np.testing.assert_array_equal(got["lat"].values, one["lat"].values)
        # the block the shard build reads, across the files' borders
        np.testing.assert_array_equal(
            read_block(got, CHANNELS, 0, got.sizes["time"]),
            read_block(one, CHANNELS, 0, one.sizes["time"]),
        )


def test_a_region_of_several_files(tmp_path: Path, daily: tuple[list[Path], Path]) -> None:
    files, whole = daily
    region = {"lat_min": 30.0, "lat_max": 45.0, "lon_min": -110.0, "lon_max": -80.0}
    one = _target(tmp_path, str(whole), region=region)
    many = _target(tmp_path, [str(f) for f in files], region=region)
    assert dict(many.sizes) == {"time": 3 * STEPS, "lat": 61, "lon": 121}
    np.testing.assert_array_equal(read_block(many, CHANNELS, 2, 9), read_block(one, CHANNELS, 2, 9))


def test_overlapping_times_name_both_files(tmp_path: Path, daily: tuple[list[Path], Path]) -> None:
    files, _ = daily
    again = _write(tmp_path / "again.nc", _day(1))  # day 1 a second time
    with pytest.raises(TargetError, match=r"again.nc: its times 1995-07-15T00:00\.\..*overlap"):
        _target(tmp_path, [*map(str, files), str(again)])


def test_a_file_on_another_grid_is_named(tmp_path: Path, daily: tuple[list[Path], Path]) -> None:
    files, _ = daily
    cut = _write(tmp_path / "era5_19950717.nc", _day(3, rows=slice(1, None)))
    with pytest.raises(
        TargetError, match=r"era5_19950717.nc: its grid differs from .*era5_19950714.nc's along lat"
    ):
        _target(tmp_path, [*map(str, files), str(cut)])


def test_a_file_without_a_channel_is_named(tmp_path: Path, daily: tuple[list[Path], Path]) -> None:
    files, _ = daily
    short = _write(tmp_path / "era5_19950717.nc", _day(3, variables=["t2m", "u10"]))
    with pytest.raises(StratocastError, match=r"era5_19950717.nc.*sp"):
        _target(tmp_path, [*map(str, files), str(short)])


def test_a_day_missing_between_files_is_a_gap(
    tmp_path: Path, daily: tuple[list[Path], Path]
) -> None:
    files, _ = daily
    with pytest.raises(TargetError, match=r"time axis has gaps: 4 of the 12 times"):
        _target(tmp_path, [str(files[0]), str(files[2])], step_hours=6)


def test_a_glob_matching_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"the glob matches no file"):
        _target(tmp_path, str(tmp_path / "none" / "*.nc"))
    with pytest.raises(ValueError, match="at least 1 item"):
        TargetConfig.model_validate({"source": []})
