"""The simulated truth: contract, caching, atomic writes, stability, determinism, physics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from stratocast.config import ComponentConfig
from stratocast.world import truth as truth_mod
from stratocast.world.truth import (
    OUTPUT_VARIABLES,
    TruthConfig,
    TruthGenerationError,
    generate_truth,
    open_truth,
    truth_path,
)

# One day of spin-up and two of output: enough for the surface to respond to the forcing,
# small enough to compile and run in a few seconds.
TINY = TruthConfig(spinup_days=1.0, days=2.0, start="2000-07-01T00")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_truth(TINY, tmp_path_factory.mktemp("truth"), progress=False)


@pytest.fixture(scope="module")
def tiny(tiny_store: Path) -> xr.Dataset:
    return open_truth(tiny_store).load()


def test_config_is_a_frozen_component_config() -> None:
    assert isinstance(TINY, ComponentConfig)
    with pytest.raises(ValueError):
        TruthConfig(unknown_key=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="timestep_minutes"):
        TruthConfig(timestep_minutes=7.0)


def test_path_is_keyed_by_config(tmp_path: Path) -> None:
    assert truth_path(TINY, tmp_path) == truth_path(TruthConfig(**TINY.model_dump()), tmp_path)
    assert truth_path(TINY, tmp_path) != truth_path(TINY.model_copy(update={"seed": 1}), tmp_path)
    assert truth_path(TINY, tmp_path).parent == tmp_path


def test_contract(tiny: xr.Dataset) -> None:
    assert set(tiny.data_vars) == {*OUTPUT_VARIABLES, "orography"}
    for name in OUTPUT_VARIABLES:
        da = tiny[name]
        assert da.dims == ("time", "lat", "lon"), name
        assert da.dtype == np.float32, name
        assert da.attrs["units"] and da.attrs["standard_name"], name
    assert tiny.orography.dims == ("lat", "lon")
    assert tiny.orography.attrs["units"] == "m"
    assert tiny.t2m.attrs["units"] == "K" and tiny.msl.attrs["units"] == "Pa"
    assert tiny.z500.attrs["units"] == "m2 s-2" and tiny.u10.attrs["units"] == "m s-1"
    assert tiny.sizes["lat"] >= 32 and tiny.sizes["lon"] >= 64
    lat, lon = tiny.lat.values, tiny.lon.values
    assert np.all(np.diff(lat) > 0) and lat[0] > -90 and lat[-1] < 90
    assert np.all(np.diff(lon) > 0) and lon[0] >= 0 and lon[-1] < 360
    times = tiny.time.values
    assert times.dtype == np.dtype("datetime64[ns]")
    assert times[0] == np.datetime64("2000-07-01T00", "ns")
    assert len(times) == 8
    assert np.all(np.diff(times) == np.timedelta64(6, "h"))
    config = TruthConfig.model_validate_json(tiny.attrs["config"])
    assert config == TINY
    for key in ("simulator", "resolution", "levels", "spinup"):
        assert tiny.attrs[key], key


def test_ranges_and_stability(tiny: xr.Dataset) -> None:
    for name in OUTPUT_VARIABLES:
        assert np.isfinite(tiny[name].values).all(), name
    assert float(tiny.t2m.min()) > 200 and float(tiny.t2m.max()) < 330
    assert float(np.abs(tiny.u10).max()) < 100 and float(np.abs(tiny.v10).max()) < 100
    assert float(tiny.msl.min()) > 95000 and float(tiny.msl.max()) < 106000
    assert float(tiny.z500.min()) > 45000 and float(tiny.z500.max()) < 60000
    # Global-mean sea-level pressure stays near the 1000 hPa the run starts from (mass is
    # conserved by the dynamics, so a drift means the msl reduction is wrong).
    weights = np.cos(np.deg2rad(tiny.lat))
    mean_msl = float(tiny.msl.weighted(weights).mean())
    assert 99000 < mean_msl < 102000


def test_orography_is_real_world_like(tiny: xr.Dataset) -> None:
    oro = tiny.orography
    assert float(oro.max()) > 800  # Tibet / Andes / Rockies survive the smoothing
    tibet = float(oro.sel(lat=slice(25, 40), lon=slice(75, 100)).mean())
    pacific = float(oro.sel(lat=slice(-30, 0), lon=slice(180, 240)).mean())
    assert tibet > 500 > 50 > abs(pacific)


def test_physical_sanity_equator_warmer_than_poles(tiny: xr.Dataset) -> None:
    # From an isothermal start, Held–Suarez heating must warm the tropics and cool the poles
    # within a day or two; the sign catches flipped latitudes or a broken forcing.
    zonal = tiny.t2m.mean(["time", "lon"])
    tropics = float(zonal.sel(lat=slice(-20, 20)).mean())
    north = float(zonal.sel(lat=slice(60, 90)).mean())
    south = float(zonal.sel(lat=slice(-90, -60)).mean())
    assert tropics > south + 5
    # In July the seasonal cycle puts the heating north of the equator: the Arctic warms, the
    # Antarctic cools, and the tropics stay warmest.
    assert tropics > north > south


def test_cached_store_is_reused(tiny_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("generate_truth re-simulated a cached config")

    monkeypatch.setattr(truth_mod, "_simulate_to_zarr", must_not_run)
    mtime = (tiny_store / "zarr.json").stat().st_mtime_ns
    again = generate_truth(TINY, tiny_store.parent, progress=False)
    assert again == tiny_store
    assert (tiny_store / "zarr.json").stat().st_mtime_ns == mtime


def test_interrupted_run_leaves_nothing_reusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_then_crash(cfg: TruthConfig, path: Path, progress: bool) -> None:
        path.mkdir(parents=True)
        (path / "zarr.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(truth_mod, "_simulate_to_zarr", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        generate_truth(TINY, tmp_path, progress=False)
    assert not truth_path(TINY, tmp_path).exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TruthGenerationError, match="not a complete truth store"):
        open_truth(truth_path(TINY, tmp_path))


def test_deterministic(tiny: xr.Dataset, tmp_path: Path) -> None:
    other = open_truth(generate_truth(TINY, tmp_path, progress=False)).load()
    for name in (*OUTPUT_VARIABLES, "orography"):
        np.testing.assert_array_equal(other[name].values, tiny[name].values, err_msg=name)


def test_blow_up_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    times = np.array(["2000-01-01T00"], dtype="datetime64[ns]")
    lat = np.array([0.0, 10.0])
    fields = {name: np.full((1, 2, 3), np.nan, np.float32) for name in OUTPUT_VARIABLES}
    with pytest.raises(TruthGenerationError, match="not finite"):
        truth_mod._check_chunk(fields, times, lat)
    fields = {name: np.full((1, 2, 3), 1e6, np.float32) for name in OUTPUT_VARIABLES}
    with pytest.raises(TruthGenerationError, match="t2m out of plausible range"):
        truth_mod._check_chunk(fields, times, lat)
