"""Checkpoints (DCP), resume, roll back, preemption and the parallel config, in one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stratocast.loader.sampler import WindowSampler
from stratocast.models.checkpoint import load_checkpoint
from stratocast.shards.layout import Manifest
from stratocast.train.dcp_checkpoint import (
    COMPLETE,
    ResumeError,
    checkpoint_dir,
    complete_steps,
    loader_state_for,
)
from stratocast.train.parallel import ParallelError
from stratocast.train.preempt import REQUEUE_EXIT_CODE
from stratocast.train.trainer import ModelConfig, TrainConfig, train

SMALL = ModelConfig(hidden=8, blocks=1, kernel_widths_km=[800.0])


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        model=SMALL,
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-17T18",
        steps=6,
        batch_size=4,
        lr=1e-2,
        warmup_steps=2,
        history=2,
        rollout=1,
        log_every=1,
        threads=1,
        tensorboard=False,
        checkpoint={"every": 2, "keep": 2},
    )
    base.update(kw)
    return TrainConfig.model_validate(base)


def _losses(out: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


@pytest.fixture(scope="module")
def run(tiny_shards: tuple[Path, Manifest], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "run"
    train(_cfg(), tiny_shards[0], out, progress=False)
    return out


def test_keeps_the_last_k_complete_checkpoints_and_ignores_incomplete_ones(run: Path) -> None:
    root = run / "checkpoints"
    assert complete_steps(root) == [4, 6]  # every 2 steps, keep 2
    meta = json.loads((checkpoint_dir(root, 6) / "meta.json").read_text())
    assert meta["step"] == 6 and meta["world_size"] == 1
    assert meta["train_config"]["lr"] == 1e-2
    # What a crash mid-save leaves: a temporary directory, or one without the marker.
    (root / ".tmp-step-00000008").mkdir()
    (root / ".tmp-step-00000008" / "__0_0.distcp").write_bytes(b"torn")
    checkpoint_dir(root, 10).mkdir()
    assert complete_steps(root) == [4, 6]
    (root / ".tmp-step-00000008" / "__0_0.distcp").unlink()
    (root / ".tmp-step-00000008").rmdir()
    checkpoint_dir(root, 10).rmdir()


def test_roll_back_redoes_the_same_steps_bitwise_and_replaces_later_checkpoints(
    run: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "rolled"
    shutil.copytree(run, out)
    later = checkpoint_dir(out / "checkpoints", 6) / "meta.json"
    before = later.stat().st_mtime_ns
    train(_cfg(), tiny_shards[0], out, progress=False, from_step=4)
    assert complete_steps(out / "checkpoints") == [4, 6]
    assert later.stat().st_mtime_ns > before  # step 6 was deleted and trained again
    assert _losses(out) == _losses(run)  # one record per step, steps 5-6 bitwise equal


def test_roll_forward_resumes_exactly(
    run: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "forward"
    shutil.copytree(run, out)
    shutil.rmtree(checkpoint_dir(out / "checkpoints", 6))
    train(_cfg(), tiny_shards[0], out, progress=False)  # resumes from step 4
    assert _losses(out) == _losses(run)
    with pytest.raises(ResumeError, match="--from-step 3: no complete checkpoint"):
        train(_cfg(), tiny_shards[0], out, progress=False, from_step=3)


def test_a_changed_config_refuses_to_resume_until_fresh(
    run: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "changed"
    shutil.copytree(run, out)
    with pytest.raises(ResumeError, match="lr"):
        train(_cfg(lr=5e-3), tiny_shards[0], out, progress=False)
    train(_cfg(lr=5e-3, steps=2), tiny_shards[0], out, progress=False, fresh=True)
    assert complete_steps(out / "checkpoints") == [2]


def test_safetensors_export_describes_itself_and_equals_model_pt(run: Path) -> None:
    pt_model, pt_card = load_checkpoint(run / "model.pt")
    st_model, st_card = load_checkpoint(run / "model.safetensors")
    pt_geo, st_geo = pt_card.geometry, st_card.geometry
    assert st_card.model_name == "obs2grid" and st_card.model_options["hidden"] == 8
    assert st_card.history == 2 and st_card.val_rmse is not None
    assert st_card.grid_stats == pt_card.grid_stats and st_card.obs_stats == pt_card.obs_stats
    assert st_geo.channels == pt_geo.channels
    assert st_geo.station_lat.size == pt_geo.station_lat.size == 0  # sites are run-time input
    for (k1, a), (k2, b) in zip(
        pt_model.state_dict().items(), st_model.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(a, b)


def test_activation_checkpointing_changes_memory_not_results(
    run: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    cfg = _cfg(steps=3, parallel={"activation_checkpointing": True})
    train(cfg, tiny_shards[0], tmp_path / "ac", progress=False)
    ac = _losses(tmp_path / "ac")
    assert [ac[s] for s in (1, 2)] == [_losses(run)[s] for s in (1, 2)]  # recompute is exact


def test_parallel_dimensions_are_checked(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match=r"global_batch 16 != batch_size 4 x grad_accum 2"):
        _cfg(grad_accum=2, global_batch=16)
    assert _cfg(grad_accum=2, global_batch=8, parallel={"nodes": 1}).effective_global_batch == 8
    cfg = _cfg(parallel={"nodes": 2, "procs_per_node": 4})
    with pytest.raises(ParallelError, match=r"2 node\(s\) x 4 .* = 8, but WORLD_SIZE is 1"):
        train(cfg, tiny_shards[0], tmp_path / "x", progress=False)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ParallelError, match="WORLD_SIZE is 3"):
        train(_cfg(), tiny_shards[0], tmp_path / "y", progress=False)


def test_loader_position_rule_across_world_sizes() -> None:
    """2 ranks x batch 2, 3 batches each, then 1 rank x batch 4: the new rank continues the
    epoch's permutation exactly after the 12 samples already consumed."""
    idx = np.arange(100, 140)
    perm = np.random.default_rng([7, 0]).permutation(40)  # the epoch's order, by hand
    assert loader_state_for([{"epoch": 0, "position": 3}] * 2, 2, 4, 0, 1) == {
        "epoch": 0,
        "position": 3,
    }
    s = WindowSampler(idx, 4, seed=7)
    s.load_state_dict({"epoch": 0, "position": 3})
    np.testing.assert_array_equal(next(iter(s)), idx[perm[12:16]])
    # not a whole new global batch: round down (replay, never skip)
    assert loader_state_for([{"epoch": 1, "position": 5}] * 2, 2, 3, 0, 2) == {
        "epoch": 1,
        "position": 3,  # 20 consumed // 6 per global batch
    }
    same = [{"epoch": 2, "position": 1}, {"epoch": 2, "position": 1}]
    assert loader_state_for(same, 2, 2, 1, 2) == same[1]


def test_sigterm_checkpoints_the_step_and_exits_with_the_requeue_code(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "term"
    cfg_path = tmp_path / "term.yaml"
    cfg = _cfg(steps=100_000, checkpoint={"every": 0})
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "stratocast.train.launch", "--config", str(cfg_path)]
    cmd += ["--shards", str(tiny_shards[0]), "--out", str(out)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    logged = 0
    while logged < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        logged = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
    last_logged = json.loads(metrics.read_text().splitlines()[-1])["step"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == REQUEUE_EXIT_CODE
    saved = complete_steps(out / "checkpoints")
    assert len(saved) == 1
    meta = json.loads((checkpoint_dir(out / "checkpoints", saved[0]) / "meta.json").read_text())
    assert meta["preempted_by"] == "SIGTERM"
    # The step in flight when the signal came is finished and saved: last_logged + 1, or + 2
    # if one more step completed between reading the log and sending the signal.
    assert last_logged + 1 <= saved[0] <= last_logged + 2
    assert (checkpoint_dir(out / "checkpoints", saved[0]) / COMPLETE).is_file()
