"""One verify run, every metric family: the scorecard equals the accumulators run directly.

The matched pairs are rebuilt independently of the stage: forecasts interpolated to the
stations by scipy (``verify_world.scipy_bilinear``) with the lapse correction written out, the
observations taken from the world's station truth at each valid time, persistence the
observation at init. The metric accumulators (each checked against ``scores``/``xskillscore``
in test_verify_metrics_scores.py) then run on those pairs, and the scorecard must agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from verify_world import LAPSE_K_PER_M, World, scipy_bilinear

from stratocast.verify import VerifyConfig, verify
from stratocast.verify.matching import wind_direction
from stratocast.verify.metrics import (
    ACCURACY_THRESHOLDS,
    ContingencyAccumulator,
    ContinuousAccumulator,
    EnsembleAccumulator,
)
from stratocast.verify.run import VerifyResult
from stratocast.verify.significance import paired_bootstrap

VARIABLES = ["t2m", "ws10", "wd10", "msl", "tp6h"]
MEMBERS = 4
BOX = [[-40.0, -70.0], [70.0, -70.0], [70.0, 70.0], [-40.0, 70.0]]  # (lon, lat)


def _valid(ds: xr.Dataset) -> tuple[pd.DatetimeIndex, np.ndarray]:
    inits = pd.DatetimeIndex(ds["init_time"].values).tz_localize("UTC")
    return inits, ds["lead_time"].values.astype(np.int64)


def _with_precip(world: World, rng: np.random.Generator) -> tuple[xr.Dataset, np.ndarray]:
    """A truth 6-h precipitation field per time, re-cut as a forecast ``tp6h``."""
    truth_tp = rng.gamma(0.5, 4.0, (world.truth.sizes["time"], *world.truth["t2m"].shape[1:]))
    times = pd.DatetimeIndex(world.truth["time"].values)
    inits, leads = _valid(world.forecast)
    pos = [
        times.get_loc(i.tz_localize(None) + pd.Timedelta(hours=int(h)))
        for i in inits
        for h in leads
    ]
    cube = truth_tp[pos].reshape(inits.size, leads.size, *truth_tp.shape[1:])
    fc = world.forecast.assign(tp6h=(("init_time", "lead_time", "lat", "lon"), cube))
    return fc, truth_tp


def _ensemble(fc: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    out = {}
    for var, scale in (("t2m", 1.5), ("u10", 1.0), ("v10", 1.0), ("msl", 80.0)):
        base = fc[var].values.astype(np.float64)[:, :, None]
        out[var] = base + scale * rng.standard_normal((*base.shape[:2], MEMBERS, *base.shape[3:]))
    tp = fc["tp6h"].values[:, :, None] * rng.lognormal(0.0, 0.5, (1, 1, MEMBERS, 1, 1))
    out["tp6h"] = tp
    dims = ("init_time", "lead_time", "member", "lat", "lon")
    ens = xr.Dataset({k: (dims, v) for k, v in out.items()}, coords=fc.coords)
    return ens.assign(orography=fc["orography"]).assign_coords(member=np.arange(MEMBERS))


def _noisy(fc: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    out = fc.copy(deep=True)
    for var, scale in (("t2m", 1.0), ("u10", 1.5), ("v10", 1.5), ("msl", 60.0)):
        out[var] = out[var] + scale * rng.standard_normal(out[var].shape)
    out["tp6h"] = out["tp6h"] * rng.lognormal(0.0, 0.7, out["tp6h"].shape)
    return out


def _obs_rows(world: World, truth_tp: np.ndarray) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """World observations plus wd10 and tp6h reports (10 min after each time)."""
    st = world.stations
    lat, lon = world.truth["lat"].values, world.truth["lon"].values
    tp = np.stack([scipy_bilinear(lat, lon, f, st["lat"], st["lon"]) for f in truth_tp])
    wd = wind_direction(world.station_truth["u10"], world.station_truth["v10"])
    times = pd.DatetimeIndex(world.truth["time"].values).tz_localize("UTC")
    extra = []
    for var, values in (("wd10", wd), ("tp6h", tp)):
        for t_i, t in enumerate(times):
            extra.append(
                pd.DataFrame(
                    {
                        "source": "synop",
                        "station_id": st["station_id"],
                        "lat": st["lat"],
                        "lon": st["lon"],
                        "elevation": st["elevation_m"].astype(np.float32),
                        "time": t + pd.Timedelta(minutes=10),
                        "variable": var,
                        "value": values[t_i],
                        "report_id": f"synthetic:{var}:{t_i}",
                    }
                )
            )
    more = pd.concat(extra, ignore_index=True)
    more["time"] = more["time"].dt.as_unit("us")
    truth = {**world.station_truth, "wd10": wd, "tp6h": tp}
    return pd.concat([world.obs, more], ignore_index=True), truth


def _at_stations(world: World, fc: xr.Dataset, var: str) -> np.ndarray:
    """The forecast of ``var`` at the stations by scipy: ``[init, lead, (member,) station]``."""
    st = world.stations
    lat, lon = fc["lat"].values, fc["lon"].values

    def interp(name: str) -> np.ndarray:
        field = fc[name].values
        flat = field.reshape(-1, *field.shape[-2:])
        got = np.stack([scipy_bilinear(lat, lon, f, st["lat"], st["lon"]) for f in flat])
        return got.reshape(*field.shape[:-2], len(st))

    if var == "ws10":
        return np.hypot(interp("u10"), interp("v10"))
    if var == "wd10":
        return wind_direction(interp("u10"), interp("v10"))
    if var == "t2m":
        orog = scipy_bilinear(lat, lon, fc["orography"].values, st["lat"], st["lon"])
        # The stage takes elevations from the reports, which carry them as float32.
        elevation = st["elevation_m"].to_numpy().astype(np.float32).astype(np.float64)
        return interp("t2m") - LAPSE_K_PER_M * (elevation - orog)
    return interp(var)


def _obs_at(world: World, truth: dict[str, np.ndarray], var: str) -> tuple[np.ndarray, np.ndarray]:
    """Observations at valid times ``[init, lead, station]`` and persistence (obs at init)."""
    times = pd.DatetimeIndex(world.truth["time"].values)
    inits, leads = _valid(world.forecast)
    pos = np.array(
        [
            [times.get_loc(i.tz_localize(None) + pd.Timedelta(hours=int(h))) for h in leads]
            for i in inits
        ]
    )
    obs = truth[var][pos]
    pers = np.broadcast_to(obs[:, :1], obs.shape)
    return obs, pers


@pytest.fixture(scope="module")
def run(world: World, ar6_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(5)
    fc, truth_tp = _with_precip(world, rng)
    forecasts = {"A": fc, "B": _noisy(fc, rng), "E": _ensemble(fc, rng)}
    obs, truth = _obs_rows(world, truth_tp)
    cfg = VerifyConfig(
        variables=VARIABLES,
        baselines=["persistence"],
        skill_reference="persistence",
        regions={"box": BOX},
        ar6_regions_path=ar6_file,
        map_lead_hours=12,
        bootstrap_samples=300,
    )
    out = tmp_path_factory.mktemp("wiring")
    result = verify(forecasts, obs, world.stations["station_id"].tolist(), world.clim_obs, cfg, out)
    return {"result": result, "forecasts": forecasts, "truth": truth, "world": world}


def _pairs(run: dict, system: str, var: str) -> tuple[np.ndarray, np.ndarray]:
    obs, pers = _obs_at(run["world"], run["truth"], var)
    if system == "persistence":
        return pers, obs
    fc = _at_stations(run["world"], run["forecasts"][system], var)
    if system == "E":
        fc = np.moveaxis(fc, 2, -1)
        if var == "wd10":
            rad = np.deg2rad(fc)
            fc = np.mod(np.degrees(np.arctan2(np.sin(rad).mean(-1), np.cos(rad).mean(-1))), 360)
        else:
            fc = fc.mean(axis=-1)
    return fc, obs


def _direct(run: dict, system: str, var: str, stations: slice | np.ndarray = slice(None)) -> dict:
    fc, obs = _pairs(run, system, var)
    acc = ContinuousAccumulator(
        (fc.shape[1],), tuple(ACCURACY_THRESHOLDS.get(var, ())), circular=var == "wd10"
    )
    return acc.update(fc[..., stations], obs[..., stations], axis=(0, 2)).result()


def _rows(table: pd.DataFrame, **key: object) -> pd.DataFrame:
    sel = np.ones(len(table), dtype=bool)
    for col, value in key.items():
        sel &= (table[col] == value).to_numpy()
    return table[sel].sort_values("lead_hours")


@pytest.mark.parametrize("var", VARIABLES)
@pytest.mark.parametrize("system", ["B", "E", "persistence"])
def test_scores_and_accuracy_equal_direct_accumulators(run: dict, system: str, var: str) -> None:
    result: VerifyResult = run["result"]
    got = _rows(result.scorecard, system=system, variable=var)
    want = _direct(run, system, var)
    ref = _direct(run, "persistence", var)
    np.testing.assert_array_equal(got["n"], want["n"])
    for key in ("rmse", "mae", "bias"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-9, err_msg=key)
    # persistence is perfect at lead 0: the skill is undefined there (NaN), not -inf
    with np.errstate(divide="ignore", invalid="ignore"):
        skill = np.where(ref["mse"] > 0, 1 - want["mse"] / ref["mse"], np.nan)
    np.testing.assert_allclose(got["mse_skill"], skill, rtol=1e-9)
    for thr in ACCURACY_THRESHOLDS.get(var, ()):
        acc = _rows(result.tables["accuracy"], system=system, variable=var, threshold=thr)
        np.testing.assert_allclose(acc["accuracy"], want[f"accuracy_{thr:g}"], rtol=1e-12)


def test_wind_direction_errors_are_wrapped(run: dict) -> None:
    card = run["result"].scorecard
    # Uniform directions against an unrelated 'persistence': wrapped errors stay within 180°.
    assert (card.loc[card["variable"] == "wd10", "mae"] <= 180.0).all()
    assert (
        card.loc[(card["variable"] == "wd10") & (card["system"] == "persistence"), "mae"].max() > 30
    )


@pytest.mark.parametrize("system", ["A", "B", "E"])
def test_contingency_equals_direct_table(run: dict, system: str) -> None:
    table = run["result"].tables["contingency"]
    fc, obs = _pairs(run, system, "tp6h")
    want = ContingencyAccumulator((fc.shape[1],)).update(fc, obs, axis=(0, 2)).result()
    for k, thr in enumerate((0.1, 1.0, 5.0, 10.0)):
        got = _rows(table, system=system, variable="tp6h", threshold=thr)
        for key in ("ets", "pod", "far", "frequency_bias", "hits", "misses"):
            np.testing.assert_allclose(got[key], want[key][k], rtol=1e-12, err_msg=key)
    if system == "A":  # the truth: perfect at every threshold
        assert (_rows(table, system="A", threshold=1.0)["pod"] == 1.0).all()


def test_ensemble_scores_equal_direct_accumulator(run: dict) -> None:
    table = run["result"].tables["ensemble"]
    assert set(table["system"]) == {"E"} and "wd10" not in set(table["variable"])
    for var in ("t2m", "ws10", "msl", "tp6h"):
        obs, _ = _obs_at(run["world"], run["truth"], var)
        members = np.moveaxis(_at_stations(run["world"], run["forecasts"]["E"], var), 2, -1)
        want = EnsembleAccumulator(MEMBERS, (obs.shape[1],)).update(members, obs, axis=(0, 2))
        got = _rows(table, system="E", variable=var)
        for key, values in want.result().items():
            np.testing.assert_allclose(got[key], values, rtol=1e-9, err_msg=f"{var} {key}")


def test_custom_region_rows_equal_direct(run: dict) -> None:
    result: VerifyResult = run["result"]
    st = run["world"].stations
    lon = np.mod(st["lon"].to_numpy() + 180.0, 360.0) - 180.0
    inside = np.flatnonzero((lon > -40) & (lon < 70) & (np.abs(st["lat"].to_numpy()) < 70))
    assert inside.size >= 2
    members = result.tables["station_regions"]
    assert set(members.loc[members["region"] == "box", "station_id"]) == set(
        st["station_id"].iloc[inside]
    )
    got = _rows(result.tables["regions"], kind="custom", region="box", system="B", variable="t2m")
    want = _direct(run, "B", "t2m", inside)
    np.testing.assert_allclose(got["rmse"], want["rmse"], rtol=1e-9)
    assert set(got["n_stations"]) == {inside.size}
    kinds = set(result.tables["regions"]["kind"])
    assert kinds == {"ar6", "continent", "custom"}


def test_significance_rows_match_paired_bootstrap(run: dict) -> None:
    result: VerifyResult = run["result"]
    sig = result.tables["significance"]
    pairs = set(zip(sig["system"], sig["versus"], strict=True))
    assert pairs == {
        ("A", "persistence"),
        ("B", "persistence"),
        ("E", "persistence"),
        ("A", "B"),
        ("A", "E"),
        ("B", "E"),
    }
    row = _rows(sig, system="B", versus="persistence", variable="t2m").iloc[1]  # lead 6
    card = result.scorecard.set_index(["system", "variable", "lead_hours"])["rmse"]
    assert row["difference"] == pytest.approx(card["B", "t2m", 6] - card["persistence", "t2m", 6])
    fb, obs = _pairs(run, "B", "t2m")
    fp, _ = _pairs(run, "persistence", "t2m")
    want = paired_bootstrap(
        (fb - obs)[:, 1], (fp - obs)[:, 1], n_boot=300, block_length=int(row["block_length"])
    )
    assert row["p_bootstrap"] == pytest.approx(want.p_value, rel=1e-9)
    assert row["ci_low"] == pytest.approx(want.ci_low, rel=1e-9)
    finite = sig["dm_p_value"].dropna()
    assert len(finite) and ((finite >= 0) & (finite <= 1)).all()


def test_outputs_hold_every_table(run: dict) -> None:
    result: VerifyResult = run["result"]
    out = result.scorecard_parquet.parent
    for name in ("accuracy", "contingency", "ensemble", "regions", "significance"):
        back = pd.read_parquet(out / f"scorecard_{name}.parquet")
        assert len(back) == len(result.tables[name]) > 0
        with xr.open_dataset(result.scorecard_netcdf, group=name) as ds:
            assert ds.sizes
    with xr.open_dataset(result.scorecard_netcdf, group="regions") as ds:
        got = ds["rmse"].sel(region_key="custom:box", system="B", variable="t2m").values
    want = _rows(result.tables["regions"], region="box", system="B", variable="t2m")["rmse"]
    np.testing.assert_allclose(got, want.to_numpy())
    html = result.report_path.read_text()
    assert 'alt="region_skill_t2m.png"' in html and '<table id="significance">' in html
    assert '<table id="regions">' in html and '<table id="contingency">' in html
    assert '<table id="ensemble">' in html and '<table id="accuracy">' in html
