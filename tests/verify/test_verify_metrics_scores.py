"""Every metric against the independent `scores` package (and xskillscore) on the same inputs.

Inputs: random fields with NaNs, and real hourly series of 6 ISD-Lite stations in France
(2017; temperature, dewpoint, wind, 1-h precipitation) with synthetic forecast errors.
Agreement is to 1e-6 (relative and absolute). The streaming path (7 chunks, merged) must equal
the one-shot result.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from numpy.typing import NDArray

from stratocast.verify.metrics import (
    ContingencyAccumulator,
    ContinuousAccumulator,
    EnsembleAccumulator,
    GriddedAccumulator,
    ScoreAccumulator,
    accuracy_within,
    common_mask,
    contingency_scores,
    crps_ensemble,
    ets,
    far,
    frequency_bias,
    latitude_weights,
    mae,
    mean_error,
    pod,
    rmse,
    skill_score,
    spread_skill_ratio,
    weighted_acc,
    weighted_rmse,
    wrap_degrees,
)

scores = pytest.importorskip("scores")
from scores.categorical import BinaryContingencyManager  # noqa: E402
from scores.continuous import mae as s_mae  # noqa: E402
from scores.continuous import mean_error as s_mean_error  # noqa: E402
from scores.continuous import mse as s_mse  # noqa: E402
from scores.continuous import percent_within_x  # noqa: E402
from scores.continuous import rmse as s_rmse  # noqa: E402
from scores.functions import create_latitude_weights  # noqa: E402
from scores.probability import crps_for_ensemble  # noqa: E402

RTOL = ATOL = 1e-6
DIMS = ("init", "lead", "station")
ISD = Path(__file__).resolve().parents[3] / "shared" / "data" / "isd_lite"
FloatArray = NDArray[np.float64]


def _da(values: np.ndarray, dims: tuple[str, ...] = DIMS) -> xr.DataArray:
    return xr.DataArray(values, dims=dims)


def _random_case(seed: int = 0) -> tuple[FloatArray, FloatArray, FloatArray]:
    """obs, system A, system B: [init=21, lead=4, station=9], NaNs in all three."""
    rng = np.random.default_rng(seed)
    shape = (21, 4, 9)
    obs = 280.0 + 8.0 * rng.standard_normal(shape)
    a = obs + 0.4 + 1.5 * rng.standard_normal(shape)
    b = obs - 0.2 + 2.5 * rng.standard_normal(shape)
    for arr in (obs, a, b):
        arr[rng.random(shape) < 0.07] = np.nan
    return obs, a, b


def _read_isd(path: Path) -> dict[str, FloatArray]:
    """ISD-Lite columns (fixed width, -9999 missing, T/Td/ws/precip in tenths)."""
    with gzip.open(path, "rt") as fh:
        rows = np.array([line.split() for line in fh], dtype=np.float64)
    rows[rows == -9999] = np.nan
    return {
        "t2m": rows[:, 4] / 10.0 + 273.15,
        "d2m": rows[:, 5] / 10.0 + 273.15,
        "wd10": rows[:, 7],
        "ws10": rows[:, 8] / 10.0,
        "tp1h": rows[:, 10] / 10.0,
    }


@pytest.fixture(scope="module")
def stations() -> dict[str, FloatArray]:
    """Real variables ``[station, hour]`` (first 2000 rows of each French station)."""
    files = sorted(ISD.glob("07*-2017.gz"))
    if not files:
        pytest.skip(f"no ISD-Lite data under {ISD}")
    series = [_read_isd(f) for f in files]
    n = min(2000, *(s["t2m"].size for s in series))
    return {k: np.stack([s[k][:n] for s in series]) for k in series[0]}


def _noisy(obs: FloatArray, scale: float, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    return obs + scale * rng.standard_normal(obs.shape)


def _masked(*arrays: FloatArray) -> list[xr.DataArray]:
    """DataArrays with the common mask applied, for the `scores` side."""
    mask = common_mask(*arrays)
    return [_da(np.where(mask, x, np.nan)) for x in arrays]


def test_common_mask_broadcasts_and_drops_any_nan() -> None:
    obs = np.array([[1.0, np.nan, 3.0]])
    sys_a = np.array([[1.0], [np.nan]])
    np.testing.assert_array_equal(
        common_mask(obs, sys_a), [[True, False, True], [False, False, False]]
    )


def test_continuous_scores_match_scores_package() -> None:
    obs, a, b = _random_case()
    o_x, a_x, b_x = _masked(obs, a, b)
    mask = common_mask(obs, a, b)
    for fc, f_x in ((a, a_x), (b, b_x)):
        np.testing.assert_allclose(
            rmse(fc, obs, axis=(0, 2), mask=mask),
            s_rmse(f_x, o_x, preserve_dims="lead"),
            rtol=RTOL,
            atol=ATOL,
        )
        np.testing.assert_allclose(
            mae(fc, obs, axis=(0, 2), mask=mask),
            s_mae(f_x, o_x, preserve_dims="lead"),
            rtol=RTOL,
            atol=ATOL,
        )
        np.testing.assert_allclose(
            mean_error(fc, obs, axis=(0, 2), mask=mask),
            s_mean_error(f_x, o_x, preserve_dims="lead"),
            rtol=RTOL,
            atol=ATOL,
        )
        for thr in (1.7, 5.6):
            expected = percent_within_x(f_x, o_x, thr, preserve_dims="lead") / 100.0
            np.testing.assert_allclose(
                accuracy_within(fc, obs, thr, axis=(0, 2), mask=mask),
                expected,
                rtol=RTOL,
                atol=ATOL,
            )
    # MSE skill of A against B, both on the common mask.
    skill = skill_score(
        rmse(a, obs, axis=(0, 2), mask=mask) ** 2, rmse(b, obs, axis=(0, 2), mask=mask) ** 2
    )
    ref = 1.0 - s_mse(a_x, o_x, preserve_dims="lead") / s_mse(b_x, o_x, preserve_dims="lead")
    np.testing.assert_allclose(skill, ref, rtol=RTOL, atol=ATOL)


def test_real_station_scores_match_scores_package(stations: dict[str, FloatArray]) -> None:
    dims = ("station", "time")
    for var, scale, thresholds in (("t2m", 1.8, (1.7, 5.6)), ("ws10", 1.2, (1.0, 3.0))):
        obs = stations[var]
        fc = np.maximum(_noisy(obs, scale, 1), 0.0) if var == "ws10" else _noisy(obs, scale, 1)
        acc = ContinuousAccumulator((obs.shape[0],), thresholds)
        for part in np.array_split(np.arange(obs.shape[1]), 7):
            chunk = ContinuousAccumulator((obs.shape[0],), thresholds)
            acc.merge(chunk.update(fc[:, part], obs[:, part], axis=1))
        res = acc.result()
        f_x, o_x = xr.DataArray(fc, dims=dims), xr.DataArray(obs, dims=dims)
        np.testing.assert_allclose(
            res["rmse"], s_rmse(f_x, o_x, preserve_dims="station"), rtol=RTOL, atol=ATOL
        )
        np.testing.assert_allclose(
            res["mae"], s_mae(f_x, o_x, preserve_dims="station"), rtol=RTOL, atol=ATOL
        )
        np.testing.assert_allclose(
            res["bias"], s_mean_error(f_x, o_x, preserve_dims="station"), rtol=RTOL, atol=ATOL
        )
        for thr in thresholds:
            expected = percent_within_x(f_x, o_x, thr, preserve_dims="station") / 100.0
            np.testing.assert_allclose(res[f"accuracy_{thr:g}"], expected, rtol=RTOL, atol=ATOL)


def test_wind_direction_errors_wrap(stations: dict[str, FloatArray]) -> None:
    np.testing.assert_allclose(wrap_degrees([350.0 - 10.0, 10.0 - 350.0, 90.0]), [-20, 20, 90])
    obs = np.where(stations["ws10"] > 0, stations["wd10"], np.nan)  # calm: no direction
    fc = np.mod(_noisy(obs, 40.0, 2), 360.0)
    f_x, o_x = xr.DataArray(fc), xr.DataArray(obs)
    np.testing.assert_allclose(rmse(fc, obs, circular=True), s_rmse(f_x, o_x, is_angular=True))
    np.testing.assert_allclose(mae(fc, obs, circular=True), s_mae(f_x, o_x, is_angular=True))
    expected = percent_within_x(f_x, o_x, 30.0, is_angular=True) / 100.0
    np.testing.assert_allclose(
        accuracy_within(fc, obs, 30.0, circular=True), expected, rtol=RTOL, atol=ATOL
    )
    # Bias: `scores` has no angular mean error; the hand formula on the wrapped differences.
    d = (fc - obs + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(
        mean_error(fc, obs, circular=True), np.nanmean(d), rtol=RTOL, atol=ATOL
    )


def _scores_categorical(fc: FloatArray, obs: FloatArray, thr: float) -> dict[str, float]:
    valid = np.isfinite(fc) & np.isfinite(obs)
    f_ev = xr.DataArray(np.where(valid, fc >= thr, np.nan))
    o_ev = xr.DataArray(np.where(valid, obs >= thr, np.nan))
    table = BinaryContingencyManager(f_ev, o_ev).transform()
    return {
        "ets": float(table.equitable_threat_score()),
        "pod": float(table.probability_of_detection()),
        "far": float(table.false_alarm_ratio()),
        "frequency_bias": float(table.frequency_bias()),
        "pofd": float(table.probability_of_false_detection()),
        "csi": float(table.threat_score()),
    }


def test_categorical_scores_match_scores_package(stations: dict[str, FloatArray]) -> None:
    obs = stations["tp1h"]
    rng = np.random.default_rng(4)
    # A forecast that often gets rain right, sometimes misses or invents it.
    fc = np.where(rng.random(obs.shape) < 0.85, obs * rng.lognormal(0, 0.5, obs.shape), 0.0)
    fc = np.where(rng.random(obs.shape) < 0.02, rng.exponential(3.0, obs.shape), fc)
    thresholds = (0.1, 1.0, 5.0)
    one = contingency_scores(fc, obs, thresholds)
    acc = ContingencyAccumulator((), thresholds)
    for part in np.array_split(np.arange(obs.shape[1]), 7):
        acc.merge(ContingencyAccumulator((), thresholds).update(fc[:, part], obs[:, part]))
    streamed = acc.result()
    for i, thr in enumerate(thresholds):
        ref = _scores_categorical(fc, obs, thr)
        for name, value in ref.items():
            np.testing.assert_allclose(
                one[name][i], value, rtol=RTOL, atol=ATOL, err_msg=f"{name} @ {thr}"
            )
            np.testing.assert_allclose(streamed[name][i], value, rtol=RTOL, atol=ATOL, err_msg=name)
        np.testing.assert_allclose(ets(fc, obs, thr), ref["ets"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(pod(fc, obs, thr), ref["pod"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(far(fc, obs, thr), ref["far"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(
            frequency_bias(fc, obs, thr), ref["frequency_bias"], rtol=RTOL, atol=ATOL
        )
    assert one["hits"][0] > 20 and one["misses"][0] > 0 and one["false_alarms"][0] > 0


def _ensemble_case() -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(5)
    obs = 10.0 * rng.standard_normal((30, 3, 8))
    ens = obs[..., None] + 0.5 + 2.0 * rng.standard_normal((30, 3, 8, 10))
    obs[rng.random(obs.shape) < 0.05] = np.nan
    ens[3, 1, 2, 4] = np.nan  # one missing member drops that pair
    return ens, obs


@pytest.mark.parametrize("method", ["fair", "ecdf"])
def test_crps_matches_scores_package(method: str) -> None:
    ens, obs = _ensemble_case()
    valid = np.isfinite(obs) & np.all(np.isfinite(ens), axis=-1)
    e_x = xr.DataArray(np.where(valid[..., None], ens, np.nan), dims=(*DIMS, "member"))
    o_x = _da(np.where(valid, obs, np.nan))
    ref = crps_for_ensemble(e_x, o_x, "member", method=method, preserve_dims=["lead"])
    got = crps_ensemble(ens, obs, method=method, axis=(0, 2))  # type: ignore[arg-type]
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


def test_crps_ecdf_matches_xskillscore() -> None:
    xs = pytest.importorskip("xskillscore")
    ens, obs = _ensemble_case()
    valid = np.isfinite(obs) & np.all(np.isfinite(ens), axis=-1)
    e_x = xr.DataArray(ens[valid], dims=("pair", "member"))
    ref = xs.crps_ensemble(xr.DataArray(obs[valid], dims="pair"), e_x, member_dim="member")
    np.testing.assert_allclose(crps_ensemble(ens, obs, method="ecdf"), ref, rtol=RTOL, atol=ATOL)


def test_spread_skill_and_streaming_match_one_shot() -> None:
    ens, obs = _ensemble_case()
    valid = np.isfinite(obs) & np.all(np.isfinite(ens), axis=-1)
    e_x = xr.DataArray(np.where(valid[..., None], ens, np.nan), dims=(*DIMS, "member"))
    o_x = _da(np.where(valid, obs, np.nan))
    # Independent: xarray's ddof=1 variance and `scores` RMSE of the ensemble mean.
    spread = np.sqrt(e_x.var("member", ddof=1).mean(("init", "station")))
    skill = s_rmse(e_x.mean("member"), o_x, preserve_dims="lead")
    got = spread_skill_ratio(ens, obs, axis=(0, 2))
    np.testing.assert_allclose(got, spread / skill, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        spread_skill_ratio(ens, obs, axis=(0, 2), corrected=True),
        spread / skill * np.sqrt(11 / 10),
        rtol=RTOL,
        atol=ATOL,
    )
    one = EnsembleAccumulator(10, (3,)).update(ens, obs, axis=(0, 2)).result()
    acc = EnsembleAccumulator(10, (3,))
    for part in np.array_split(np.arange(obs.shape[0]), 7):
        acc.merge(EnsembleAccumulator(10, (3,)).update(ens[part], obs[part], axis=(0, 2)))
    for key, value in acc.result().items():
        np.testing.assert_allclose(value, one[key], rtol=1e-12, err_msg=key)


def _grid_case() -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    rng = np.random.default_rng(6)
    lat = np.linspace(-87.5, 87.5, 36)
    lon = np.arange(0.0, 360.0, 10.0)
    clim = 250.0 + 40.0 * np.cos(np.deg2rad(lat))[:, None] + 0.0 * lon[None, :]
    analysis = clim + 5.0 * rng.standard_normal((14, 36, 36))
    forecast = analysis + 1.0 + 3.0 * rng.standard_normal((14, 36, 36))
    forecast[2, 5:8, 10:20] = np.nan  # a hole: zero weight there, for that field only
    return forecast, analysis, np.broadcast_to(clim, analysis.shape).copy(), lat


def test_latitude_weights_are_scores_cos_weights_without_pole_rows() -> None:
    """Cell-area weights are cos φ (``scores``' weights) normalised to mean 1 on an evenly
    spaced grid without pole rows (the 1.5° grid's cell centres, 120 rows): to 1e-12. With
    pole rows they are not (tests/verify/test_verify_references.py)."""
    lat = np.linspace(-89.25, 89.25, 120)
    w = latitude_weights(lat)
    assert w.mean() == pytest.approx(1.0, rel=1e-14)
    ref = create_latitude_weights(xr.DataArray(lat))
    np.testing.assert_allclose(w, ref / ref.mean(), rtol=1e-12, atol=1e-12)


def test_gridded_rmse_matches_scores_weighted_mse() -> None:
    forecast, analysis, _, lat = _grid_case()
    dims = ("time", "lat", "lon")
    weights = create_latitude_weights(xr.DataArray(lat, dims="lat"))
    mse_t = s_mse(
        xr.DataArray(forecast, dims=dims),
        xr.DataArray(analysis, dims=dims),
        preserve_dims="time",
        weights=weights,
    )
    np.testing.assert_allclose(
        weighted_rmse(forecast, analysis, lat), np.sqrt(mse_t.mean()), rtol=RTOL, atol=ATOL
    )
    acc = GriddedAccumulator(lat)
    for part in np.array_split(np.arange(14), 7):
        acc.merge(GriddedAccumulator(lat).update(forecast[part], analysis[part]))
    res = acc.result()
    np.testing.assert_allclose(res["rmse"], np.sqrt(mse_t.mean()), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res["rmse_time_mean"], np.sqrt(mse_t).mean(), rtol=RTOL, atol=ATOL)


def test_gridded_acc_matches_wb2_formula_by_hand() -> None:
    """ACC per field: Σ L f′o′ / sqrt(Σ L f′² Σ L o′²), then the time mean; L = cos φ / mean cos φ,
    which the cell-area weights are on this evenly spaced grid without pole rows."""
    forecast, analysis, clim, lat = _grid_case()
    cos = np.cos(np.deg2rad(lat))
    per_time = []
    for t in range(forecast.shape[0]):
        num = s_fa = s_oa = 0.0
        for i in range(lat.size):
            li = cos[i] / cos.mean()
            for j in range(forecast.shape[2]):
                fa = forecast[t, i, j] - clim[t, i, j]
                oa = analysis[t, i, j] - clim[t, i, j]
                if np.isnan(fa):
                    continue
                num += li * fa * oa
                s_fa += li * fa * fa
                s_oa += li * oa * oa
        per_time.append(num / np.sqrt(s_fa * s_oa))
    expected = np.mean(per_time)
    np.testing.assert_allclose(
        weighted_acc(forecast, analysis, clim, lat), expected, rtol=RTOL, atol=ATOL
    )
    acc = GriddedAccumulator(lat)
    for part in np.array_split(np.arange(14), 7):
        acc.merge(GriddedAccumulator(lat).update(forecast[part], analysis[part], clim[part]))
    np.testing.assert_allclose(acc.result()["acc"], expected, rtol=RTOL, atol=ATOL)


def test_continuous_streaming_in_seven_chunks_equals_one_shot() -> None:
    obs, a, b = _random_case(7)
    mask = common_mask(obs, a, b)
    one = ContinuousAccumulator((4,), (1.7, 5.6)).update(a, obs, axis=(0, 2), mask=mask).result()
    acc = ContinuousAccumulator((4,), (1.7, 5.6))
    for part in np.array_split(np.arange(obs.shape[0]), 7):
        chunk = ContinuousAccumulator((4,), (1.7, 5.6))
        acc.merge(chunk.update(a[part], obs[part], axis=(0, 2), mask=mask[part]))
    for key, value in acc.result().items():
        np.testing.assert_allclose(value, one[key], rtol=1e-12, err_msg=key)


def test_score_accumulator_merge_equals_single_pass() -> None:
    obs, a, b = _random_case(8)
    leads, ids = np.arange(4) * 6, np.array([f"S{i}" for i in range(9)])
    valid = np.datetime64("2024-01-01", "ns") + (
        np.arange(21)[:, None] * np.timedelta64(12, "h")
        + np.arange(4)[None, :] * np.timedelta64(6, "h")
    )
    whole = ScoreAccumulator(["A", "B"], ["t2m"], leads, ids)
    whole.update("t2m", obs, {"A": a, "B": b}, valid)
    merged = ScoreAccumulator(["A", "B"], ["t2m"], leads, ids)
    for part in np.array_split(np.arange(21), 7):
        chunk = ScoreAccumulator(["A", "B"], ["t2m"], leads, ids)
        chunk.update("t2m", obs[part], {"A": a[part], "B": b[part]}, valid[part])
        merged.merge(chunk)
    left, right = whole.scorecard("B"), merged.scorecard("B")
    for col in ("n", "rmse", "mae", "bias", "mse_skill"):
        np.testing.assert_allclose(left[col], right[col], rtol=1e-12, err_msg=col)
    assert (left["valid_start"] == right["valid_start"]).all()


def test_merge_refuses_different_accumulators() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        ContinuousAccumulator((), (1.0,)).merge(ContinuousAccumulator((), (2.0,)))
    with pytest.raises(ValueError, match="keeps"):
        ContinuousAccumulator((3,)).update(np.zeros((2, 4)), np.zeros((2, 4)), axis=0)
