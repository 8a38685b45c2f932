"""Training to a wall-clock budget, and per-channel loss weights."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from stratocast.shards.layout import Manifest
from stratocast.train.loss import LossWeightError, channel_weights, weighted_mse
from stratocast.train.trainer import ModelConfig, TrainConfig, _schedule_step, train


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        model=ModelConfig(hidden=8, blocks=1, kernel_widths_km=[800.0]),
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-20T18",
        batch_size=2,
        warmup_steps=2,
        history=2,
        rollout=3,
        log_every=1,
        tensorboard=False,
        checkpoint={"every": 0},
    )
    base.update(kw)
    return TrainConfig.model_validate(base)


def test_a_time_budget_stops_training_and_stretches_the_schedules(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    cfg = _cfg(steps=1_000_000, time_budget_s=4.0)
    t0 = time.perf_counter()
    path = train(cfg, tiny_shards[0], tmp_path, progress=False)
    wall = time.perf_counter() - t0
    assert path.is_file()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert 1 <= len(steps) < 1_000_000
    # stopped at the budget, not at `steps` (set-up, validation and export come on top)
    assert wall < 4.0 + 60.0
    # the rollout curriculum follows elapsed time: it starts at 1 step and grows
    assert steps[0]["rollout"] == 1
    assert max(r["rollout"] for r in steps) >= 2


def test_schedule_step_maps_the_elapsed_fraction() -> None:
    cfg = _cfg(steps=1000, time_budget_s=100.0)
    assert _schedule_step(cfg, 7, 0.0) == 0
    assert _schedule_step(cfg, 7, 50.0) == 500
    assert _schedule_step(cfg, 7, 99.99) == 999
    assert _schedule_step(cfg, 7, 100.0) is None
    assert _schedule_step(_cfg(steps=1000), 7, 1e9) == 7  # no budget: the step itself


def test_loss_weights_weigh_channels_and_name_unknown_ones() -> None:
    w = channel_weights(["t2m", "z500"], {"t2m": 3.0})
    assert torch.allclose(w, torch.tensor([1.5, 0.5]))  # mean 1
    pred = torch.zeros(1, 1, 2, 2, 2)
    target = torch.zeros_like(pred)
    target[:, :, 0] = 1.0  # error in t2m only
    lat_w = torch.ones(2)
    assert float(weighted_mse(pred, target, lat_w, w)[0]) == pytest.approx(0.75)
    assert float(weighted_mse(pred, target, lat_w)[0]) == pytest.approx(0.5)
    with pytest.raises(LossWeightError, match="q700"):
        channel_weights(["t2m", "z500"], {"q700": 2.0})


def test_loss_weights_for_a_channel_the_shards_lack_fail_before_training(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    with pytest.raises(LossWeightError, match="nope"):
        train(_cfg(steps=2, loss_weights={"nope": 2.0}), tiny_shards[0], tmp_path, progress=False)
