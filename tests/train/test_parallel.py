"""Multi-process training under real ``torchrun --nproc_per_node=2`` on gloo (CPU).

Every run uses the same tiny model and shards; the single-process reference runs in this
process with the same global batch (4 = 1 x 4 = 2 ranks x 2).
"""

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
import yaml

from stratocast.shards.layout import Manifest
from stratocast.train.dcp_checkpoint import complete_steps
from stratocast.train.trainer import ModelConfig, TrainConfig, train

STEPS = 12
SMALL = ModelConfig(hidden=8, blocks=1, kernel_widths_km=[800.0])
TORCHRUN = Path(sys.executable).with_name("torchrun")

# fp32 throughout, so a 2-rank run differs from one process only in the order of reductions
# (per-rank batch means then an all-reduce, instead of one mean over 4 samples): a few fp32
# ulps (1.2e-7 relative each) per step. Adam divides by sqrt(v), which can amplify such
# differences for weights with tiny gradients, and they compound over steps; measured here
# (DDP and FSDP, 12 steps, loss 1.29 -> 1.11): 1.3e-7 at most. 1e-5 (~100 ulps) leaves a wide
# margin, while a real error (a wrong batch split, gradients summed instead of averaged, a
# skipped or repeated sample) changes the loss at the 1e-3 level or more.
RTOL = 1e-5


def _cfg(world: int, strategy: str = "ddp", **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        model=SMALL,
        train_start="2000-01-01T00",
        train_end="2000-01-15T18",
        val_start="2000-01-16T00",
        val_end="2000-01-17T18",
        steps=STEPS,
        batch_size=4 // world,
        global_batch=4,
        lr=1e-2,
        warmup_steps=2,
        history=2,
        rollout=1,
        log_every=1,
        threads=1,
        prefetch_depth=2,
        tensorboard=False,
        parallel={"procs_per_node": world, "strategy": strategy},
        checkpoint={"every": 2, "keep": 20},
    )
    base.update(kw)
    return TrainConfig.model_validate(base)


def _records(out: Path) -> dict[int, dict[str, object]]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in lines if "loss" in r}


def _losses(out: Path, after: int = 0) -> list[float]:
    return [float(r["loss"]) for s, r in sorted(_records(out).items()) if s > after]  # type: ignore[arg-type]


def _command(cfg: TrainConfig, shards: Path, out: Path, *extra: str) -> list[str]:
    cfg_path = out.with_suffix(".yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    args = ["--config", str(cfg_path), "--shards", str(shards), "--out", str(out), *extra]
    launch = ["-m", "stratocast.train.launch", *args]
    return [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", *launch]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(cfg: TrainConfig, shards: Path, out: Path, *extra: str) -> None:
    proc = subprocess.run(
        _command(cfg, shards, out, *extra), env=_env(), capture_output=True, text=True, timeout=240
    )
    if proc.returncode != 0:
        # the first failing rank's traceback is usually early; the agent's summary is last
        err = proc.stderr
        shown = err if len(err) <= 8000 else f"{err[:4000]}\n[...]\n{err[-4000:]}"
        pytest.fail(f"torchrun failed ({proc.returncode}):\n{shown}")


@pytest.fixture(scope="module")
def single(tiny_shards: tuple[Path, Manifest], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    train(_cfg(1), tiny_shards[0], out, progress=False)
    return out


@pytest.fixture(scope="module")
def ddp(tiny_shards: tuple[Path, Manifest], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    _torchrun(_cfg(2, "ddp"), tiny_shards[0], out)
    return out


@pytest.mark.slow
def test_ddp_matches_one_process_with_the_same_global_batch(single: Path, ddp: Path) -> None:
    one, two = _losses(single), _losses(ddp)
    assert len(two) == STEPS
    np.testing.assert_allclose(two, one, rtol=RTOL)
    assert two[-1] < two[0]  # it trains
    first = _records(ddp)[1]
    for key in ("grad_norm", "samples_per_s", "time/forward_ms", "time/grad_allreduce_ms"):
        assert np.isfinite(float(first[key])), key  # type: ignore[arg-type]


@pytest.mark.slow
def test_fsdp_matches_one_process_with_the_same_global_batch(
    single: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "fsdp"
    _torchrun(_cfg(2, "fsdp"), tiny_shards[0], out)
    np.testing.assert_allclose(_losses(out), _losses(single), rtol=RTOL)
    # the inference export is the gathered (unsharded) model
    assert (out / "model.safetensors").is_file() and (out / "model.pt").is_file()


@pytest.mark.slow
def test_kill_9_then_restart_continues_the_uninterrupted_curve_exactly(
    ddp: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    cfg = _cfg(2, "ddp")
    proc = subprocess.Popen(
        _command(cfg, tiny_shards[0], out),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not complete_steps(out / "checkpoints") and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, no chance to clean up
    proc.wait()
    saved = complete_steps(out / "checkpoints")
    assert saved and saved[-1] < STEPS, f"not killed mid-training: checkpoints {saved}"
    resumed_from = saved[-1]
    _torchrun(cfg, tiny_shards[0], out)
    # Same seed, world size and data position: bitwise the uninterrupted run's values.
    assert _losses(out, after=resumed_from) == _losses(ddp, after=resumed_from)
    assert sorted(_records(out)) == list(range(1, STEPS + 1))  # one record per step


@pytest.mark.slow
def test_two_rank_checkpoint_loads_in_one_process(
    ddp: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "from2"
    shutil.copytree(ddp, out)
    train(_cfg(1), tiny_shards[0], out, progress=False, from_step=6)
    assert complete_steps(out / "checkpoints")[0] <= 6
    np.testing.assert_allclose(_losses(out, after=6), _losses(ddp, after=6), rtol=RTOL)


@pytest.mark.slow
def test_one_process_checkpoint_loads_in_two_fsdp_ranks(
    single: Path, tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out = tmp_path / "from1"
    shutil.copytree(single, out)
    _torchrun(_cfg(2, "fsdp"), tiny_shards[0], out, "--from-step", "6")
    np.testing.assert_allclose(_losses(out, after=6), _losses(single, after=6), rtol=RTOL)
