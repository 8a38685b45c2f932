"""Training never silently produces NaN: a period without observations fails before the first
step, and a non-finite loss stops the run at that step, naming the step, the batch's times and
the first non-finite channel, with the last good checkpoint left the newest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
import yaml

from stratocast.errors import StratocastError
from stratocast.shards.build import ShardsConfig, build
from stratocast.shards.layout import Manifest
from stratocast.train import trainer
from stratocast.train.dcp_checkpoint import complete_steps
from stratocast.train.guard import (
    NonFiniteTrainingError,
    TooFewObservationsError,
    describe_nonfinite,
)
from stratocast.train.trainer import ModelConfig, TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
SMALL = ModelConfig(hidden=8, blocks=1, kernel_widths_km=[800.0])
OBS_FROM = "2000-01-11T00"  # the gappy shards hold no observation before this time


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        model=SMALL,
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-17T18",
        steps=8,
        batch_size=2,
        warmup_steps=2,
        history=2,
        rollout=1,
        log_every=1,
        tensorboard=False,
        checkpoint={"every": 2, "keep": 10, "async_save": False},
    )
    base.update(kw)
    return TrainConfig.model_validate(base)


@pytest.fixture(scope="module")
def gappy_shards(
    tmp_path_factory: pytest.TempPathFactory, tiny_truth: xr.Dataset, tiny_obs: pd.DataFrame
) -> Path:
    """The built-in world's shards with every observation before OBS_FROM removed."""
    keep = pd.to_datetime(tiny_obs["time"], utc=True) >= pd.Timestamp(OBS_FROM, tz="UTC")
    root = tmp_path_factory.mktemp("gappy") / "shards"
    cfg = ShardsConfig(stats_start=OBS_FROM, stats_end="2000-01-20T18", shard_steps=16)
    build(cfg, tiny_truth, tiny_obs[keep], root, progress=False)
    return root


def _records(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_all_missing_observation_period_fails_before_any_step(
    gappy_shards: Path, tmp_path: Path
) -> None:
    cfg = _cfg(train_start="2000-01-01T00", train_end="2000-01-10T18")
    with pytest.raises(TooFewObservationsError) as err:
        train(cfg, gappy_shards, tmp_path / "out", progress=False)
    msg = str(err.value)
    # 10 days of 6-hourly windows, none with an observation
    assert "2000-01-01T00..2000-01-10T18" in msg and "0 of 40 observation windows" in msg
    assert str(gappy_shards) in msg
    assert isinstance(err.value, StratocastError)
    assert not any("loss" in r for r in _records(tmp_path / "out"))
    assert complete_steps(tmp_path / "out" / "checkpoints") == []


def test_masked_windows_are_counted_and_a_minimum_fraction_is_enforced(
    gappy_shards: Path, tmp_path: Path
) -> None:
    # 2000-01-08T00..01-15T18: 32 windows, the 20 from OBS_FROM on hold observations
    cfg = _cfg(train_start="2000-01-08T00", train_end="2000-01-15T18", steps=1)
    train(cfg, gappy_shards, tmp_path / "ok", progress=False)
    first = next(r for r in _records(tmp_path / "ok") if "loss" in r)
    assert first["obs/train_windows"] == 32 and first["obs/masked_windows"] == 12
    with pytest.raises(TooFewObservationsError, match="20 of 32 observation windows"):
        train(cfg, gappy_shards, tmp_path / "strict", progress=False, min_obs_fraction=0.7)


class _Poison:
    """Wraps the trainer's loader: at batch ``at`` (1-based; one micro-batch per step) sets one
    element of ``key`` to NaN and records the batch's sample indices."""

    def __init__(self, inner: Any, at: int, key: str, where: tuple[int, ...]) -> None:
        self.inner, self.at, self.key, self.where = inner, at, key, where
        self.index: np.ndarray | None = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for n, batch in enumerate(self.inner, start=1):
            if n == self.at:
                batch = dict(batch)
                poisoned = batch[self.key].clone()
                poisoned[self.where] = float("nan")
                batch[self.key] = poisoned
                if self.key == "obs":  # an observation the model is told is present
                    mask = batch["obs_mask"].clone()
                    mask[self.where] = 1.0
                    batch["obs_mask"] = mask
                self.index = batch["index"].numpy().copy()
            yield batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _poisoned_run(
    monkeypatch: pytest.MonkeyPatch, shards: Path, out: Path, key: str, where: tuple[int, ...]
) -> tuple[NonFiniteTrainingError, _Poison]:
    made: list[_Poison] = []
    real = trainer._loader

    def loader(*args: Any, **kw: Any) -> _Poison:
        made.append(_Poison(real(*args, **kw), 5, key, where))
        return made[0]

    monkeypatch.setattr(trainer, "_loader", loader)
    with pytest.raises(NonFiniteTrainingError) as err:
        train(_cfg(), shards, out, progress=False)
    return err.value, made[0]


def test_nan_in_target_stops_at_that_step_naming_channel_and_times(
    monkeypatch: pytest.MonkeyPatch, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    shards, manifest = tiny_shards
    c = 3
    err, poison = _poisoned_run(monkeypatch, shards, tmp_path / "t", "target", (1, 2, c, 4, 5))
    msg = str(err)
    times = manifest.times()
    assert poison.index is not None
    valid = np.datetime_as_string(times[poison.index[1] - 2 + 1 + 2], unit="m")
    assert "training step 5:" in msg
    assert f"target, channel {manifest.channels[c]!r} at {valid}" in msg
    lo, hi = poison.index.min(), poison.index.max()
    assert f"analysis times {np.datetime_as_string(times[lo], unit='m')}.." in msg
    assert f"..{np.datetime_as_string(times[hi], unit='m')} (valid" in msg
    # stopped before step 5's update and checkpoint: the step-4 checkpoint is the newest
    assert complete_steps(tmp_path / "t" / "checkpoints") == [2, 4]
    assert "the newest checkpoint is step 4" in msg
    assert not (tmp_path / "t" / "model.pt").exists()
    logged = [r["step"] for r in _records(tmp_path / "t") if "loss" in r]
    assert logged == [1, 2, 3, 4] and all(
        np.isfinite(r["loss"]) for r in _records(tmp_path / "t") if "loss" in r
    )


def test_nan_in_observations_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    shards, manifest = tiny_shards
    v = 1
    err, poison = _poisoned_run(monkeypatch, shards, tmp_path / "o", "obs", (0, 1, 7, v))
    assert poison.index is not None
    valid = np.datetime_as_string(manifest.times()[poison.index[0]], unit="m")
    msg = str(err)
    assert "training step 5:" in msg
    assert f"observations, variable {manifest.obs_variables[v]!r} (station 7) at {valid}" in msg
    assert complete_steps(tmp_path / "o" / "checkpoints") == [2, 4]


def test_finite_inputs_name_the_first_non_finite_output_stage() -> None:
    times = np.datetime64("2000-01-01T00", "ns") + np.arange(20) * np.timedelta64(6, "h")
    batch = {
        "index": torch.tensor([5, 9]),
        "obs": torch.zeros(2, 2, 3, 2),
        "target": torch.zeros(2, 4, 2, 4, 4),
    }
    pred = torch.zeros(2, 4, 2, 4, 4)
    pred[1, 2, 1, 0, 0] = float("inf")  # forecast step 1 of sample 1, channel "b"
    pred[0, 3, 0, 0, 0] = float("nan")  # later in time: not the first
    msg = describe_nonfinite(
        step=7,
        loss=float("nan"),
        grad_norm=float("nan"),
        batch=batch,
        pred=pred,
        times=times,
        history=2,
        channels=["a", "b"],
        obs_variables=["x", "y"],
    )
    assert msg.startswith("training step 7: non-finite loss nan and gradient norm nan")
    # sample 1 is analysed at index 9: window 1 = index 8, so time 2 is index 10
    valid = np.datetime_as_string(times[10], unit="m")
    assert f"channel 'b' in forecast step 1, valid {valid}" in msg
    assert "inputs finite" in msg


def test_cli_train_on_a_period_without_observations_is_one_line_exit_2(
    gappy_shards: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(gappy_shards, work / "shards")
    run = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    run["workdir"] = str(work)
    run["cache_dir"] = str(tmp_path / "cache")
    run["train"] = {
        **run["train"],
        **_cfg(train_end="2000-01-10T18").model_dump(mode="json"),
    }
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(run))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stratocast.cli.main",
            "train",
            "--no-progress",
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("stratocast train: error: training period 2000-01-01T00..")
    assert "0 of 40 observation windows hold any observation" in lines[0]


_DDP_DRIVER = """
import os, sys
from pathlib import Path
import torch
from stratocast.train import trainer
from stratocast.train.trainer import TrainConfig, train

rank = int(os.environ["RANK"])
real = trainer._loader


class Poison:  # rank 1 only: batch 5 gets a NaN target; rank 0's batches stay finite
    def __init__(self, inner):
        self.inner = inner

    def __iter__(self):
        for n, batch in enumerate(self.inner, start=1):
            if rank == 1 and n == 5:
                batch = dict(batch)
                batch["target"] = batch["target"].clone()
                batch["target"][0, 1, 0, 2, 3] = float("nan")
            yield batch

    def __getattr__(self, name):
        return getattr(self.inner, name)


trainer._loader = lambda *a, **k: Poison(real(*a, **k))
cfg = TrainConfig.model_validate_json(Path(sys.argv[1]).read_text())
try:
    train(cfg, Path(sys.argv[2]), Path(sys.argv[3]), progress=False)
except trainer.NonFiniteTrainingError as err:
    # One file per rank: two ranks printing to one stderr can interleave their lines.
    Path(sys.argv[3]).mkdir(parents=True, exist_ok=True)
    Path(sys.argv[3], f"rank{rank}.txt").write_text(f"RANK{rank}: {err}")
    sys.exit(3)
Path(sys.argv[3], f"rank{rank}.txt").write_text(f"RANK{rank}: finished")
"""


def test_ddp_every_rank_stops_together_at_the_bad_step(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """Under real torchrun (2 ranks, gloo): a NaN on rank 1 alone stops both ranks at that
    step (no rank waits in a collective for the other), with the step-4 checkpoint newest."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip(f"no torchrun next to {sys.executable}")
    cfg = _cfg(batch_size=1, global_batch=2, threads=1, parallel={"procs_per_node": 2})
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    (tmp_path / "driver.py").write_text(_DDP_DRIVER)
    out = tmp_path / "ddp"
    args = [str(tmp_path / "cfg.json"), str(tiny_shards[0]), str(out)]
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            str(tmp_path / "driver.py"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode != 0, proc.stderr[-3000:]
    said = {
        f"RANK{r}": (out / f"rank{r}.txt").read_text()
        for r in (0, 1)
        if (out / f"rank{r}.txt").is_file()
    }
    assert set(said) == {"RANK0", "RANK1"}, proc.stderr[-3000:]
    assert "training step 5:" in said["RANK0"] and "training step 5:" in said["RANK1"]
    assert "target, channel" in said["RANK1"] and "on rank 1" in said["RANK1"]
    # rank 0's own batch was finite: it says the NaN may have come through the reduction
    assert "on rank 0" in said["RANK0"]
    assert "averaged over the 2 ranks" in said["RANK0"], said["RANK0"]
    assert complete_steps(out / "checkpoints") == [2, 4]
