"""Paired block bootstrap and Diebold–Mariano: power, size (calibration) and the DM formula.

The DM statistic (both methods) is checked against a hand computation written out in loops,
the Bartlett variant against statsmodels' OLS-on-a-constant t statistic with a Newey–West HAC
covariance (the HLN default against `scores`: tests/verify/test_verify_references.py).
Size: over 200 seeds of two systems identical in distribution, the number of rejections at
5 % must lie within the central 99.8 % of Binomial(200, 0.05), i.e. in [2, 21].
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from stratocast.verify.significance import (
    block_indices,
    diebold_mariano,
    long_run_variance,
    paired_bootstrap,
    per_init_loss,
    truncated_variance,
)

N_SEEDS = 200
LO, HI = (int(stats.binom.ppf(q, N_SEEDS, 0.05)) for q in (0.001, 0.999))


def _errors(seed: int, scale_b: float, n_init: int = 60, rho: float = 0.0) -> tuple:
    """Errors ``[init, station]``; AR(1) in init time with coefficient ``rho``."""
    rng = np.random.default_rng(seed)
    shape = (n_init, 6)
    noise = rng.standard_normal((2, *shape))
    for t in range(1, n_init):
        noise[:, t] = rho * noise[:, t - 1] + np.sqrt(1 - rho**2) * noise[:, t]
    return noise[0], scale_b * noise[1]


def test_bootstrap_detects_a_clearly_better_system() -> None:
    a, b = _errors(1, scale_b=1.6)
    a[5, 2] = np.nan  # dropped from both systems
    res = paired_bootstrap(a, b, metric="rmse", n_boot=999, seed=3)
    mask = np.isfinite(a)
    expected = np.sqrt(np.mean(a[mask] ** 2)) - np.sqrt(np.mean(b[mask] ** 2))
    assert res.difference == pytest.approx(expected, rel=1e-12)
    assert res.p_value < 0.01
    assert res.ci_low < res.difference < res.ci_high < 0.0
    assert res.block_length == round(60 ** (1 / 3)) and res.n_inits == 60


def test_bootstrap_is_seeded() -> None:
    a, b = _errors(2, scale_b=1.1)
    first = paired_bootstrap(a, b, metric="mae", n_boot=200, seed=9)
    assert first == paired_bootstrap(a, b, metric="mae", n_boot=200, seed=9)
    assert first != paired_bootstrap(a, b, metric="mae", n_boot=200, seed=10)


def test_block_indices_are_circular_runs() -> None:
    idx = block_indices(10, 4, 50, np.random.default_rng(0))
    assert idx.shape == (50, 10)
    steps = np.diff(idx[:, :4], axis=1) % 10
    assert np.all(steps == 1)  # within a block, consecutive inits (wrapping around)


def test_bootstrap_size_when_systems_are_identical() -> None:
    rejections = sum(
        paired_bootstrap(*_errors(seed, 1.0, rho=0.3), n_boot=299, seed=seed).p_value < 0.05
        for seed in range(N_SEEDS)
    )
    assert LO <= rejections <= HI, rejections


def test_dm_detects_a_clearly_better_system() -> None:
    la, lb = per_init_loss(*_errors(4, scale_b=1.6))
    res = diebold_mariano(la, lb, horizon=1)
    assert res.statistic < 0 and res.p_value < 0.01


def test_dm_size_when_systems_are_identical() -> None:
    rejections = 0
    for seed in range(N_SEEDS):
        la, lb = per_init_loss(*_errors(seed, 1.0, rho=0.3))
        rejections += diebold_mariano(la, lb, horizon=2).p_value < 0.05
    assert LO <= rejections <= HI, rejections


def _hand_dm(d: np.ndarray, h: int) -> dict[str, float]:
    """DM pieces written out in loops: autocovariances, both variances, HLN factor."""
    t = d.size
    dbar = sum(d) / t
    gamma = [sum((d[i] - dbar) * (d[i - k] - dbar) for i in range(k, t)) / t for k in range(h)]
    return {
        "dbar": dbar,
        "t": t,
        "bartlett": gamma[0] + 2 * sum((1 - k / h) * gamma[k] for k in range(1, h)),
        "uniform": gamma[0] + 2 * sum(gamma[k] for k in range(1, h)),
        "factor": np.sqrt((t + 1 - 2 * h + h * (h - 1) / t) / t),
    }


def test_dm_statistic_by_hand_both_methods() -> None:
    la = np.array([1.2, 0.7, 2.1, 1.5, 0.9, 1.8, 1.1, 0.6, 1.9, 1.4, 1.0, 2.2])
    lb = np.array([1.0, 1.1, 1.6, 1.9, 1.2, 1.3, 1.5, 0.8, 1.2, 1.9, 1.4, 1.7])
    d, h = la - lb, 3
    hand = _hand_dm(d, h)
    t = hand["t"]
    assert long_run_variance(d, h - 1) == pytest.approx(hand["bartlett"], rel=1e-12)
    assert truncated_variance(d, h - 1) == pytest.approx(hand["uniform"], rel=1e-12)
    # Bartlett, plain: against the normal.
    dm = hand["dbar"] / np.sqrt(hand["bartlett"] / t)
    plain = diebold_mariano(la, lb, horizon=h, method="bartlett")
    assert plain.statistic == pytest.approx(dm, rel=1e-12) and plain.reference == "normal"
    assert plain.p_value == pytest.approx(2 * stats.norm.sf(abs(dm)), rel=1e-12)
    # Bartlett with the HLN factor against t_{T-1} (the former default).
    old = diebold_mariano(la, lb, horizon=h, method="bartlett", hln_factor=True)
    assert old.statistic == pytest.approx(dm * hand["factor"], rel=1e-12)
    assert old.p_value == pytest.approx(2 * stats.t.sf(abs(dm * hand["factor"]), t - 1))
    # HLN (the default): here the uniform-weight variance is negative, so no statistic.
    assert hand["uniform"] < 0
    hln = diebold_mariano(la, lb, horizon=h)
    assert hln.method == "hln" and np.isnan(hln.statistic) and np.isnan(hln.p_value)
    assert "not positive" in hln.note
    # A series where it is positive: the HLN statistic by hand.
    lb2 = lb[::-1].copy()
    hand2 = _hand_dm(la - lb2, h)
    assert hand2["uniform"] > 0
    want = hand2["dbar"] / np.sqrt(hand2["uniform"] / t) * hand2["factor"]
    got = diebold_mariano(la, lb2, horizon=h)
    assert got.statistic == pytest.approx(want, rel=1e-12) and got.reference == "t"
    assert got.p_value == pytest.approx(2 * stats.t.sf(abs(want), t - 1), rel=1e-12)
    # h = 1: both variances are γ0, so HLN equals Bartlett with the factor.
    one = diebold_mariano(la, lb, horizon=1)
    same = diebold_mariano(la, lb, horizon=1, method="bartlett", hln_factor=True)
    assert one.statistic == pytest.approx(same.statistic, rel=1e-12)


def test_dm_constant_differential_has_no_statistic() -> None:
    res = diebold_mariano(np.full(10, 2.0), np.full(10, 1.5), horizon=2)
    assert np.isnan(res.statistic) and res.note == "the loss differential is constant"
    assert res.mean_loss_difference == pytest.approx(0.5)


def test_dm_matches_statsmodels_newey_west() -> None:
    sm = pytest.importorskip("statsmodels.api")
    la, lb = per_init_loss(*_errors(7, scale_b=1.2, n_init=80, rho=0.4))
    d = la - lb
    fit = sm.OLS(d, np.ones_like(d)).fit(
        cov_type="HAC", cov_kwds={"maxlags": 3, "use_correction": False}
    )
    res = diebold_mariano(la, lb, horizon=4, method="bartlett")
    assert res.statistic == pytest.approx(float(fit.tvalues[0]), rel=1e-9)


def test_dm_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="1-D"):
        diebold_mariano(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="lags"):
        diebold_mariano(np.arange(5.0), np.zeros(5), horizon=9)
    with pytest.raises(ValueError, match="method='bartlett' only"):
        diebold_mariano(np.arange(5.0), np.zeros(5), lags=2)
    with pytest.raises(ValueError, match="method"):
        diebold_mariano(np.arange(5.0), np.zeros(5), method="hg")  # type: ignore[arg-type]
