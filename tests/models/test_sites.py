"""The set encoder (obs2grid/sites.py): the sparse pairs and kernels against a dense
reference, learnable length scales, and a trained checkpoint used with another network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from stratocast.infer.config import ForecastConfig
from stratocast.infer.forecast import run_forecast
from stratocast.models.obs2grid import sites as sites_module
from stratocast.models.obs2grid.sites import EARTH_RADIUS_KM, SetToGrid, site_pairs
from stratocast.shards.build import ShardsConfig, build
from stratocast.shards.layout import ShardError
from stratocast.testing.synthetic import synthetic_obs
from stratocast.train.config import TrainConfig
from stratocast.train.trainer import train


def _dense_distance(
    glat: np.ndarray, glon: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> np.ndarray:
    """(G, S) great-circle km by the haversine formula (a second formula, not the code's)."""
    gl, go = np.meshgrid(np.radians(glat), np.radians(glon), indexing="ij")
    p1, l1 = gl.ravel()[:, None], go.ravel()[:, None]
    p2, l2 = np.radians(lat)[None, :], np.radians(lon)[None, :]
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))


def test_sparse_encoder_equals_dense_reference() -> None:
    rng = np.random.default_rng(0)
    glat, glon = np.linspace(-80, 80, 17), np.arange(0, 360, 10.0)
    lat, lon = rng.uniform(-85, 85, 41), rng.uniform(-180, 180, 41)
    cutoff = 3000.0
    pairs = site_pairs(glat, glon, lat, lon, cutoff)
    d = _dense_distance(glat, glon, lat, lon)
    assert len(pairs.site) == int((d < cutoff).sum())  # every pair inside, none outside
    assert len(pairs.site) < 0.25 * d.size  # sparse: a fraction of sites × cells
    enc = SetToGrid((glat.size, glon.size), (300.0, 700.0), cutoff / 3)
    obs = torch.randn(2, 41, 3, dtype=torch.float64)
    mask = (torch.rand(2, 41, 3) > 0.3).double()
    got = enc.double()(obs, mask, pairs)
    w_km = enc.widths_km().detach().numpy()
    np.testing.assert_allclose(w_km, [300.0, 700.0], rtol=1e-5)
    feats = []
    dens = []
    for width in w_km:
        w = np.exp(-0.5 * (d / width) ** 2) * (d < cutoff)  # (G, S)
        num = np.einsum("gs,bsv->bvg", w, (obs * mask).numpy())
        den = np.einsum("gs,bsv->bvg", w, mask.numpy())
        feats.append(num / (den + 1e-3))
        dens.append(np.log1p(den))
    want = np.concatenate([np.stack(feats, 1), np.stack(dens, 1)], axis=1)  # (B, 2K, V, G)
    want = want.reshape(2, -1, glat.size, glon.size)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-4, atol=1e-4)


def test_dense_and_sparse_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small problems take one dense product, large ones the sparse pairs: same features,
    same width gradients (finite: no 0 · inf from cells beyond the cutoff)."""
    rng = np.random.default_rng(4)
    glat, glon = np.linspace(-80, 80, 13), np.arange(0, 360, 15.0)
    pairs = site_pairs(glat, glon, rng.uniform(-80, 80, 30), rng.uniform(0, 360, 30), 3000.0)
    obs = torch.randn(2, 30, 2)
    mask = (torch.rand(2, 30, 2) > 0.4).float()
    got = {}
    for name, limit in (("dense", 10**9), ("sparse", 0)):
        monkeypatch.setattr(sites_module, "DENSE_MAX", limit)
        assert pairs.dense == (name == "dense")
        enc = SetToGrid((13, 24), (300.0, 700.0), 1000.0)
        out = enc(obs, mask, pairs)
        out.square().sum().backward()
        assert enc.raw_width.grad is not None and torch.isfinite(enc.raw_width.grad).all()
        got[name] = (out.detach(), enc.raw_width.grad.clone())
    torch.testing.assert_close(got["sparse"][0], got["dense"][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["sparse"][1], got["dense"][1], rtol=1e-3, atol=1e-5)


def test_length_scales_learn_and_stay_below_the_cap() -> None:
    glat, glon = np.linspace(-60, 60, 9), np.arange(0, 360, 20.0)
    pairs = site_pairs(glat, glon, np.array([10.0, -20.0]), np.array([30.0, 200.0]), 4500.0)
    enc = SetToGrid((9, 18), (300.0, 900.0), 1500.0)
    obs, mask = torch.randn(1, 2, 1), torch.ones(1, 2, 1)
    enc(obs, mask, pairs).sum().backward()
    assert enc.raw_width.grad is not None and bool((enc.raw_width.grad != 0).all())
    with torch.no_grad():
        enc.raw_width.fill_(50.0)
    assert float(enc.widths_km().detach().max()) <= 1500.0
    with pytest.raises(ValueError, match="below the cap"):
        SetToGrid((9, 18), (300.0, 1600.0), 1500.0)
    with pytest.raises(ValueError, match="for 3 sites, but 2"):
        enc(torch.zeros(1, 3, 1), torch.ones(1, 3, 1), pairs)


def test_trained_model_forecasts_from_another_network(
    tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame, tmp_path: Path
) -> None:
    """Trained on one network; forecast from 70 % of it plus new stations never seen."""
    cfg = ShardsConfig(stats_start="2000-01-01T00", stats_end="2000-01-15T18", shard_steps=16)
    build(cfg, tiny_truth, tiny_obs, tmp_path / "a", progress=False)
    ids = sorted(tiny_obs["station_id"].unique())
    kept = tiny_obs[tiny_obs["station_id"].isin(ids[: int(0.7 * len(ids))])]
    new = synthetic_obs(tiny_truth, n_stations=12, seed=9)
    new["station_id"] = "N" + new["station_id"].astype(str)
    other = build(cfg, tiny_truth, pd.concat([kept, new]), tmp_path / "b", progress=False)
    assert set(other.station_ids) - set(ids) == set(new["station_id"]) and len(new) > 0
    tcfg = TrainConfig.model_validate(
        {
            "model": {"hidden": 8, "blocks": 1, "kernel_widths_km": [600.0]},
            "train_start": "2000-01-01T00",
            "train_end": "2000-01-15T18",
            "val_start": "2000-01-16T00",
            "val_end": "2000-01-17T18",
            "steps": 3,
            "batch_size": 2,
            "warmup_steps": 0,
            "history": 2,
            "rollout": 1,
            "tensorboard": False,
            "checkpoint": {"every": 3, "keep": 1, "async_save": False},
        }
    )
    ckpt = train(tcfg, tmp_path / "a", tmp_path / "train", progress=False)
    fcfg = ForecastConfig(start="2000-01-18T00", end="2000-01-19T00", horizon_hours=12)
    out = {}
    for name in ("a", "b"):
        path = run_forecast(fcfg, ckpt, tmp_path / name, tmp_path / f"fc-{name}.zarr", False)
        out[name] = xr.open_zarr(path, consolidated=False)["t2m"].values
        assert np.isfinite(out[name]).all()
    assert not np.array_equal(out["a"], out["b"])  # the other network's reports were used
    # a checkpoint and shards that disagree on what is observed: both sides named
    c = ShardsConfig(**{**cfg.model_dump(), "obs_variables": ["t2m", "msl"]})
    build(c, tiny_truth, tiny_obs, tmp_path / "c", progress=False)
    with pytest.raises(
        ShardError,
        match=r"observed variables \['t2m', 'u10', 'v10', 'msl'\]; "
        r"the shards at .*c have \['t2m', 'msl'\]",
    ):
        run_forecast(fcfg, ckpt, tmp_path / "c", tmp_path / "fc-c.zarr", False)


def test_kernel_sum_backward_is_the_true_gradient() -> None:
    """The dense path's hand-written backward against finite differences (float64)."""
    gen = torch.Generator().manual_seed(2)
    dist = torch.rand(12, 5, generator=gen, dtype=torch.float64) * 2000.0
    widths = torch.tensor([300.0, 800.0], dtype=torch.float64, requires_grad=True)
    data = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda w, x: sites_module._KernelSum.apply(dist, w, x), (widths, data)
    )
