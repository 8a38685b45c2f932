"""The shard build's gridded target from a real source (ERA5 GRIB and NetCDF samples), and the
held-out station rule: selection, checks up front, and station roles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.gridded import open_gridded
from stratocast.shards.stations import (
    HeldOutConfig,
    assign_roles,
    split_observations,
    spread_sample,
)
from stratocast.shards.target import TargetConfig, TargetError, open_target

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GRIB = DATA / "grib" / "era5-levels-members.grib"
NC = DATA / "netcdf" / "era5_1995-07-14T12.nc"
EUROPE = {"lat_min": 35.0, "lat_max": 72.0, "lon_min": -15.0, "lon_max": 35.0}

needs_data = pytest.mark.skipif(not GRIB.exists(), reason="../shared/data (real samples) absent")


def _no_world() -> Path:
    raise AssertionError("a file source must not look for the world's truth")


def _open(tmp_path: Path, channels: list[str], **kw: object) -> xr.Dataset:
    cfg = TargetConfig.model_validate({"source": str(GRIB), **kw})
    return open_target(cfg, channels, world_truth=_no_world, cache_dir=tmp_path)


@needs_data
def test_era5_grib_member_and_levels(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"ensemble of 10 members: choose one .*member \(0..9\)"):
        _open(tmp_path, ["z500"])
    ds = _open(tmp_path, ["z500", "t850"], member=3)
    raw = open_gridded(GRIB, variables=["z500", "t850"])
    assert dict(ds.sizes) == {"time": 4, "lat": 61, "lon": 120}
    for name in ("z500", "t850"):
        np.testing.assert_array_equal(ds[name].values, raw[name].isel(member=3).values)
    with pytest.raises(StratocastError, match=r"t2m not in this grib file; it gives"):
        _open(tmp_path, ["z500", "t2m"], member=0)


@needs_data
def test_time_range_step_and_gaps_are_checked_up_front(tmp_path: Path) -> None:
    ds = _open(tmp_path, ["z500"], member=0, start="2017-01-01T12", end="2017-01-02T12")
    assert ds["time"].values[0] == np.datetime64("2017-01-01T12", "ns") and ds.sizes["time"] == 3
    ds = _open(tmp_path, ["z500"], member=0, step_hours=24)
    assert list(ds["time"].values) == list(
        np.array(["2017-01-01T00", "2017-01-02T00"], dtype="datetime64[ns]")
    )
    with pytest.raises(TargetError, match=r"time axis has gaps: 3 of the 7 times .* every 6"):
        _open(tmp_path, ["z500"], member=0, step_hours=6)
    with pytest.raises(TargetError, match=r"2016-12-01T00:00.* outside the source's 2017-01-01"):
        _open(tmp_path, ["z500"], member=0, start="2016-12-01T00")


@needs_data
def test_region_crossing_greenwich_is_one_contiguous_run(tmp_path: Path) -> None:
    ds = _open(tmp_path, ["z500"], member=0, region=EUROPE)
    lon = ds["lon"].values
    assert lon[0] == -15.0 and lon[-1] == 33.0 and np.all(np.diff(lon) == 3.0)
    assert ds["lat"].values[0] == 36.0 and ds["lat"].values[-1] == 72.0
    raw = open_gridded(GRIB, variables=["z500"])["z500"].isel(member=0)
    # -15° is the source's 345° column: the same values, relabelled
    np.testing.assert_array_equal(
        ds["z500"].sel(lon=-15.0).values, raw.sel(lon=345.0, lat=slice(36, 72)).values
    )
    with pytest.raises(TargetError, match=r"region \(lat 35.0..36.0, lon 10.0..11.0\)"):
        _open(
            tmp_path,
            ["z500"],
            member=0,
            region={**EUROPE, "lat_max": 36.0, "lon_max": 11.0, "lon_min": 10.0},
        )


@needs_data
def test_regrid_onto_a_regional_grid(tmp_path: Path) -> None:
    ds = _open(
        tmp_path,
        ["t850"],
        member=0,
        region=EUROPE,
        grid={"resolution_deg": 2.0, "method": "bilinear"},
    )
    assert ds["lon"].values[0] == -15.0 and ds["lon"].values[-1] == 35.0
    assert ds["lat"].values[0] == 35.0 and ds["lat"].values[-1] == 71.0
    field = ds["t850"].isel(time=0).values
    assert np.isfinite(field).all()
    # bilinear on a 3° source: a 2° point on a source node equals the node; -15° is 345°
    raw = open_gridded(GRIB, variables=["t850"])["t850"].isel(member=0, time=0)
    assert float(ds["t850"].isel(time=0).sel(lat=39.0, lon=-15.0)) == pytest.approx(
        float(raw.sel(lat=39.0, lon=345.0)), abs=1e-4
    )


@needs_data
def test_static_field_on_another_grid_is_refused(tmp_path: Path) -> None:
    nc = open_gridded(NC)
    # written once at one time, as ERA5's surface geopotential is in a CDS GRIB/NetCDF
    oro = xr.Dataset(
        {
            "geopotential_at_surface": (
                ("time", "latitude", "longitude"),
                np.zeros((1, 5, 7)),
                {"units": "m2 s-2"},
            )
        },
        coords={
            "time": np.array(["2017-01-01T00"], dtype="datetime64[ns]"),
            "latitude": np.linspace(30, 50, 5),
            "longitude": np.linspace(0, 30, 7),
        },
    )
    static = tmp_path / "static.nc"
    oro.to_netcdf(static)
    assert "t2m" in nc
    with pytest.raises(
        TargetError, match=r"static.nc: the static field's grid differs .*along lat"
    ):
        _open(tmp_path, ["z500"], member=0, static=str(static))


def test_spread_sample_covers_the_domain() -> None:
    rng = np.random.default_rng(1)
    # dense cluster in one corner, sparse elsewhere: a random pick would follow the density
    lat = np.concatenate([rng.uniform(40, 42, 800), rng.uniform(30, 60, 200)])
    lon = np.concatenate([rng.uniform(0, 2, 800), rng.uniform(-10, 30, 200)])
    mask = spread_sample(lat, lon, 0.1, seed=0)
    assert mask.sum() == 100
    assert np.array_equal(mask, spread_sample(lat, lon, 0.1, seed=0))  # deterministic
    assert not np.array_equal(mask, spread_sample(lat, lon, 0.1, seed=5))
    # each half of the Hilbert order gets half the picks: both the cluster and the rest
    outside_cluster = ~((lat < 42) & (lat > 40) & (lon < 2) & (lon > 0))
    assert 10 <= int((mask & outside_cluster).sum()) <= 40


def test_roles_list_rule_and_domain() -> None:
    obs = pd.DataFrame(
        {
            "station_id": ["A", "A", "B", "C", "D"],
            "lat": [45.0, 45.0, 50.0, -10.0, 60.0],
            "lon": [5.0, 5.0, 10.0, 120.0, 20.0],
            "elevation": [100.0, 100.0, 0.0, 5.0, 3.0],
            "time": pd.to_datetime(
                [
                    "2020-01-01T00",
                    "2020-01-01T06",
                    "2020-01-01T00",
                    "2020-01-01T00",
                    "2020-01-01T00",
                ],
                utc=True,
            ),
            "variable": ["t2m"] * 5,
            "value": [280.0] * 5,
        }
    )
    lat, lon = np.arange(35.0, 72.1, 1.0), np.arange(-15.0, 35.1, 1.0)
    inputs, roles = split_observations(obs, lat, lon, HeldOutConfig(stations=["B"]), None)
    assert dict(zip(roles["station_id"], roles["role"], strict=True)) == {
        "A": "input",
        "B": "verify",
        "C": "outside",
        "D": "input",
    }
    assert set(inputs["station_id"]) == {"A", "D"} and len(inputs) == 3
    assert int(roles.set_index("station_id").loc["A", "n_obs"]) == 2
    # without a rule, the world's list is used
    _, roles = split_observations(obs, lat, lon, None, {"D"})
    assert set(roles.loc[roles["role"] == "verify", "station_id"]) == {"D"}
    with pytest.raises(StratocastError, match=r"held_out.stations: 1 station.*\['Z'\]"):
        assign_roles(
            roles.drop(columns="role"), np.ones(4, bool), HeldOutConfig(stations=["Z"]), None
        )
    with pytest.raises(ValueError, match="not both"):
        HeldOutConfig(stations=["A"], fraction=0.2)
