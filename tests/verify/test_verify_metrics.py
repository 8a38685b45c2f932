from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stratocast.verify.baselines import Climatology, persistence
from stratocast.verify.matching import Stations, prepare_obs
from stratocast.verify.metrics import ScoreAccumulator


def _scores_reference(fc: np.ndarray, ob: np.ndarray) -> tuple[float, float, float]:
    """RMSE, MAE, bias from the `scores` package when present, else plain numpy."""
    try:
        import xarray as xr
        from scores.continuous import additive_bias, mae, rmse
    except ImportError:
        err = fc - ob
        return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err))), float(np.mean(err))
    f, o = xr.DataArray(fc), xr.DataArray(ob)
    return float(rmse(f, o)), float(mae(f, o)), float(additive_bias(f, o))


def _accumulate(obs, systems, chunk=2):
    n_init, n_lead, n_st = obs.shape
    acc = ScoreAccumulator(
        list(systems), ["t2m"], np.arange(n_lead) * 6, np.array([f"S{i}" for i in range(n_st)])
    )
    valid = (
        np.datetime64("2024-01-01", "ns")
        + np.arange(n_init)[:, None] * np.timedelta64(12, "h")
        + np.arange(n_lead)[None, :] * np.timedelta64(6, "h")
    )
    for s in range(0, n_init, chunk):  # chunked, as the stage streams initialisations
        acc.update(
            "t2m",
            obs[s : s + chunk],
            {k: v[s : s + chunk] for k, v in systems.items()},
            valid[s : s + chunk],
        )
    return acc


def test_streamed_scores_match_independent_computation():
    rng = np.random.default_rng(3)
    shape = (7, 3, 5)
    obs = rng.standard_normal(shape)
    a = obs + 0.5 + rng.standard_normal(shape)
    b = obs + 2.0 * rng.standard_normal(shape)
    obs[0, 1, 2] = np.nan
    b[3, 0, 4] = np.nan
    card = _accumulate(obs, {"A": a, "B": b}).scorecard("B")
    for lead in range(shape[1]):
        mask = np.isfinite(obs[:, lead]) & np.isfinite(a[:, lead]) & np.isfinite(b[:, lead])
        ref = {}
        for name, fc in {"A": a, "B": b}.items():
            row = card[(card["system"] == name) & (card["lead_hours"] == lead * 6)].iloc[0]
            exp_rmse, exp_mae, exp_bias = _scores_reference(fc[:, lead][mask], obs[:, lead][mask])
            assert row["rmse"] == pytest.approx(exp_rmse, abs=1e-6)
            assert row["mae"] == pytest.approx(exp_mae, abs=1e-6)
            assert row["bias"] == pytest.approx(exp_bias, abs=1e-6)
            assert row["n"] == mask.sum()
            ref[name] = exp_rmse
        row_a = card[(card["system"] == "A") & (card["lead_hours"] == lead * 6)].iloc[0]
        assert row_a["mse_skill"] == pytest.approx(1 - ref["A"] ** 2 / ref["B"] ** 2, abs=1e-9)


def test_missing_value_in_one_system_removes_sample_for_all():
    obs = np.zeros((2, 1, 3))
    a = np.ones_like(obs)
    b = np.full_like(obs, 2.0)
    b[1, 0, 2] = np.nan
    card = _accumulate(obs, {"A": a, "B": b}).scorecard("A")
    assert set(card["n"]) == {5}
    assert card.set_index("system").loc["A", "rmse"] == pytest.approx(1.0)
    assert card.set_index("system").loc["B", "rmse"] == pytest.approx(2.0)
    assert set(card["n_stations"]) == {3}


def _stations(n: int) -> Stations:
    return Stations(np.array([f"S{i}" for i in range(n)]), np.zeros(n), np.zeros(n), np.zeros(n))


def _rows(records) -> pd.DataFrame:
    df = pd.DataFrame(records, columns=["station_id", "time", "variable", "value"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df = df.assign(source="x", lat=0.0, lon=0.0, elevation=0.0, report_id="r")
    return prepare_obs(df, ["t2m"], ["S0", "S1"], "test")["t2m"]


def test_persistence_is_init_time_observation_for_every_lead():
    rows = _rows(
        [
            ("S0", "2024-01-01T00:20", "t2m", 270.0),
            ("S0", "2024-01-01T06:00", "t2m", 999.0),  # later obs never used
            ("S1", "2023-12-31T23:55", "t2m", 280.0),
            ("S0", "2024-01-01T12:00", "t2m", 271.0),
        ]
    )
    inits = pd.DatetimeIndex(["2024-01-01T00:00", "2024-01-01T12:00"], tz="UTC")
    p = persistence(rows, _stations(2), inits, n_leads=4, tolerance=pd.Timedelta(minutes=30))
    np.testing.assert_array_equal(p[0], np.tile([270.0, 280.0], (4, 1)))
    np.testing.assert_array_equal(p[1], np.tile([271.0, np.nan], (4, 1)))


def test_climatology_hour_of_day_with_station_mean_fallback():
    times = pd.date_range("2024-01-01", periods=40, freq="6h", tz="UTC")
    records = [("S0", t, "t2m", 10.0 if t.hour == 0 else 20.0) for t in times]
    records += [("S1", times[0] - pd.Timedelta(minutes=10), "t2m", 5.0)]  # one sample, 23:50
    clim = Climatology.fit(_rows(records), _stations(2), min_samples=5)
    valid = np.array(
        [["2024-02-01T00:00", "2024-02-01T06:00", "2024-02-01T09:00"]], dtype="datetime64[ns]"
    )
    pred = clim.predict(valid)  # [init, lead, station]
    # S0: hours 0 and 6 have 10 samples each; 09 UTC has none → station mean 17.5.
    np.testing.assert_allclose(pred[0, :, 0], [10.0, 20.0, 17.5])
    np.testing.assert_allclose(pred[0, :, 1], [5.0, 5.0, 5.0])  # too few: station mean
