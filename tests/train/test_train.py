from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from stratocast.infer.forecast import ForecastConfig, run_forecast
from stratocast.loader.dataset import ShardStore, WindowSpec
from stratocast.models.checkpoint import CheckpointError, load_checkpoint
from stratocast.models.rollout import cycle_and_rollout
from stratocast.shards.layout import Manifest
from stratocast.train.trainer import ModelConfig, TrainConfig, train

SMALL = ModelConfig(hidden=8, blocks=1, kernel_widths_km=[800.0])


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        model=SMALL,
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-20T18",
        steps=30,
        batch_size=4,
        lr=3e-3,
        warmup_steps=5,
        history=2,
        rollout=1,  # a fixed rollout, so the loss curve compares like with like
        log_every=5,
    )
    base.update(kw)
    return TrainConfig.model_validate(base)


def _losses(out: Path) -> list[float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


@pytest.fixture(scope="module")
def trained(tiny_shards: tuple[Path, Manifest], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train")
    train(_cfg(), tiny_shards[0], out, progress=False)
    return out


def test_training_reduces_the_loss_and_logs_metrics(trained: Path) -> None:
    records = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < 0.85 * losses[0]
    first = records[0]
    for key in ("grad_norm", "lr", "samples_per_s", "loader_wait_s", "loader_queue_depth"):
        assert np.isfinite(first[key])
    assert "t2m" in records[-1]["val_rmse"]


def test_same_seed_same_loss_curve_bitwise(
    trained: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    train(_cfg(), tiny_shards[0], tmp_path / "again", progress=False)
    assert _losses(tmp_path / "again") == _losses(trained)


def test_streaming_loader_trains_bitwise_like_the_in_memory_one(
    trained: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """loader: stream reads each batch from the shards (reader threads, fused normalisation);
    it must deliver exactly the in-memory batches, so the loss curve is bit-identical."""
    train(_cfg(loader="stream", loader_readers=2), tiny_shards[0], tmp_path / "s", progress=False)
    assert _losses(tmp_path / "s") == _losses(trained)
    lines = (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert any(r.get("loader_io_wait_s", -1.0) >= 0.0 for r in records)


def test_checkpoint_describes_itself_and_reproduces_the_model(
    trained: Path, tiny_shards: tuple[Path, Manifest]
) -> None:
    model, card = load_checkpoint(trained / "model.pt")
    geometry = card.geometry
    assert card.model_name == "obs2grid"
    assert geometry.channels == tuple(tiny_shards[1].channels)
    assert card.train_config is not None and card.train_config["steps"] == 30
    assert card.grid_stats == tiny_shards[1].grid_stats  # the statistics it was trained with
    store = ShardStore(tiny_shards[0])
    # the checkpoint holds no station list: the sites come with the observations
    m = tiny_shards[1]
    assert geometry.station_lat.size == 0
    saved = json.loads((trained / "model.json").read_text())["geometry"]
    assert not {"station_lat", "station_lon", "station_elevation"} & set(saved)
    model.set_observation_sites(  # type: ignore[operator]
        np.asarray(m.station_lat), np.asarray(m.station_lon), np.asarray(m.station_elevation)
    )
    spec = WindowSpec(2, 1)
    b = store.batch(np.array([10, 11]), spec)
    with torch.no_grad():
        out = cycle_and_rollout(
            model,  # type: ignore[arg-type]
            torch.from_numpy(b["obs"]),
            torch.from_numpy(b["obs_mask"]),
            torch.from_numpy(b["clock"]),
            1,
        )
    assert out.shape == (2, 3, 6, 16, 32)
    assert torch.isfinite(out).all()


def test_damaged_checkpoint_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=str(bad)):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="run `stratocast train`"):
        load_checkpoint(tmp_path / "missing.pt")


def test_forecast_product_contract(
    trained: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    cfg = ForecastConfig(start="2000-01-16T00", end="2000-01-19T12", horizon_hours=24)
    path = run_forecast(cfg, trained / "model.pt", tiny_shards[0], tmp_path / "f.zarr", False)
    ds = xr.open_zarr(path, consolidated=False)
    assert list(ds["lead_time"].values) == [0, 6, 12, 18, 24]
    assert ds.sizes["init_time"] == 8  # 00 and 12 UTC over four days
    assert set(tiny_shards[1].channels) <= set(ds.data_vars)
    assert ds["t2m"].attrs["units"] == "K"
    t2m = ds["t2m"].values
    assert np.isfinite(t2m).all() and 200 < t2m.mean() < 330  # physical units, not normalised
    assert "orography" in ds


def test_forecast_normalises_with_the_checkpoints_statistics(
    trained: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """Shards rebuilt with other statistics (another stats period, say) forecast the same: the
    model's own statistics normalise its inputs and denormalise its output."""
    other = tmp_path / "rebuilt"
    shutil.copytree(tiny_shards[0], other)
    manifest = json.loads((other / "manifest.json").read_text())
    for stats in (manifest["grid_stats"], manifest["obs_stats"]):
        stats["mean"] = [m + 3.0 for m in stats["mean"]]
        stats["std"] = [s * 2.0 for s in stats["std"]]
    (other / "manifest.json").write_text(json.dumps(manifest))
    cfg = ForecastConfig(start="2000-01-16T00", end="2000-01-17T12", horizon_hours=12)
    a = run_forecast(cfg, trained / "model.pt", tiny_shards[0], tmp_path / "a.zarr", False)
    b = run_forecast(cfg, trained / "model.pt", other, tmp_path / "b.zarr", False)
    da, db = xr.open_zarr(a, consolidated=False), xr.open_zarr(b, consolidated=False)
    for c in tiny_shards[1].channels:
        np.testing.assert_array_equal(da[c].values, db[c].values)


def test_wrong_config_keys_are_named() -> None:
    with pytest.raises(ValueError, match="stepz"):
        TrainConfig.model_validate({"stepz": 3})
    with pytest.raises(ValueError, match="train_end"):
        TrainConfig(train_start="2000-02-01", train_end="2000-01-01")


def test_bf16_autocast_keeps_fp32_master_weights_and_tracks_fp32(
    trained: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    train(_cfg(precision="bf16"), tiny_shards[0], tmp_path / "bf16", progress=False)
    bf16 = _losses(tmp_path / "bf16")
    fp32 = _losses(trained)[: len(bf16)]
    # bf16 has an 8-bit mantissa: per-step losses agree to a few percent, not bitwise
    np.testing.assert_allclose(bf16, fp32, rtol=0.05)
    model, _ = load_checkpoint(tmp_path / "bf16" / "model.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())
