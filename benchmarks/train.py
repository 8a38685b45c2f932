"""Training throughput and memory by parallel layout, through `stratocast train` itself.

    python benchmarks/train.py [--shards runs/demo/shards] [--steps 60] [--rounds 3]

One run compares, at the same global batch:
  * samples/s of 1 process x 2 threads against 2 DDP processes x 1 thread (torchrun, gloo);
  * samples/s of 2 FSDP processes against 2 DDP processes;
  * peak memory (RSS of all training processes, or the CUDA allocator's peak when the trainer
    logs it) with activation checkpointing on against off (1 process x 2 threads).
Variants run in interleaved rounds (the machine is shared and noisy); medians and ratios are
printed and written to ``<out>/train_bench.json``. samples/s is the trainer's own figure
(global batch x steps / wall time between log records), the first record (warm-up) dropped.
Without ``--shards`` (or if it is absent) a synthetic 32x64 world is built once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    name: str
    procs: int
    threads: int
    strategy: str = "ddp"
    activation_checkpointing: bool = False


VARIANTS = (
    Variant("1proc_x_2threads", 1, 2),
    Variant("ddp_2procs_x_1thread", 2, 1),
    Variant("fsdp_2procs_x_1thread", 2, 1, "fsdp"),
    Variant("1proc_x_2threads_actckpt", 1, 2, activation_checkpointing=True),
)


def synthetic_shards(root: Path) -> tuple[Path, dict[str, str]]:
    from stratocast.shards.build import ShardsConfig, build
    from stratocast.testing.synthetic import synthetic_obs, synthetic_truth

    truth = synthetic_truth(n_time=200, n_lat=32, n_lon=64)
    obs = synthetic_obs(truth, n_stations=200)
    cfg = ShardsConfig(stats_start="2000-01-01T00", stats_end="2000-02-10T18", shard_steps=32)
    build(cfg, truth, obs, root / "shards", progress=False)
    dates = {
        "train_start": "2000-01-01T00",
        "train_end": "2000-02-10T18",
        "val_start": "2000-02-11T00",
        "val_end": "2000-02-15T18",
    }
    return root / "shards", dates


def run_config(base: dict[str, Any], v: Variant, args: argparse.Namespace) -> dict[str, Any]:
    cfg = json.loads(json.dumps(base))
    train = cfg["train"]
    train.update(
        steps=args.steps,
        batch_size=args.global_batch // v.procs,  # same global batch in every variant
        threads=v.threads,
        log_every=args.log_every,
        val_every=0,
        parallel={
            "nodes": 1,
            "procs_per_node": v.procs,
            "strategy": v.strategy,
            "activation_checkpointing": v.activation_checkpointing,
        },
        checkpoint={"every": 0},
    )
    return cfg


def _tree_rss(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def run_once(v: Variant, cfg: dict[str, Any], shards: Path, work: Path) -> dict[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "shards").symlink_to(shards.resolve())
    (work / "run.yaml").write_text(yaml.safe_dump(cfg))
    train = ["-m", "stratocast.cli.main", "train", "--config", str(work / "run.yaml")]
    train += ["--workdir", str(work), "--no-progress"]
    if v.procs > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={v.procs}"]
        cmd = [sys.executable, *launcher, *train]
    else:
        cmd = [sys.executable, *train]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{v.name}: `{' '.join(cmd)}` exited {proc.returncode}:\n{out}")
    records = [json.loads(x) for x in (work / "train" / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if "samples_per_s" in r][1:]
    if not rates:
        raise RuntimeError(f"{v.name}: fewer than two log records; raise --steps")
    gpu_peak = [r["gpu/torch_peak_gib"] for r in records if "gpu/torch_peak_gib" in r]
    return {
        "samples_per_s": statistics.median(rates),
        "peak_rss_gib": peak / 2**30,
        "gpu_peak_gib": max(gpu_peak) if gpu_peak else float("nan"),
        "wall_s": time.perf_counter() - t0,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    ap.add_argument("--shards", type=Path, default=None, help="default: a synthetic world")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--global-batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-train"))
    args = ap.parse_args()
    base = yaml.safe_load(args.config.read_text())
    tmp = Path(tempfile.mkdtemp(prefix="stratocast-bench-train-"))
    if args.shards is not None and args.shards.is_dir():
        shards = args.shards
    else:
        shards, dates = synthetic_shards(tmp)
        base["train"].update(dates)
    results: dict[str, list[dict[str, float]]] = {v.name: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS:
            res = run_once(v, run_config(base, v, args), shards, args.out / v.name)
            results[v.name].append(res)
            print(
                f"round {r} {v.name:<28} {res['samples_per_s']:8.1f} samples/s  "
                f"peak RSS {res['peak_rss_gib']:.2f} GiB  {res['wall_s']:.0f} s",
                flush=True,
            )
    med = {
        name: {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    mem = (
        "gpu_peak_gib"
        if med["1proc_x_2threads"]["gpu_peak_gib"] == med["1proc_x_2threads"]["gpu_peak_gib"]
        else "peak_rss_gib"
    )  # NaN != NaN: no GPU figures, use host RSS
    ratios = {
        "ddp_2x1_over_1x2_samples_per_s": _ratio(
            med["ddp_2procs_x_1thread"]["samples_per_s"], med["1proc_x_2threads"]["samples_per_s"]
        ),
        "fsdp_over_ddp_samples_per_s": _ratio(
            med["fsdp_2procs_x_1thread"]["samples_per_s"],
            med["ddp_2procs_x_1thread"]["samples_per_s"],
        ),
        f"actckpt_on_over_off_{mem}": _ratio(
            med["1proc_x_2threads_actckpt"][mem], med["1proc_x_2threads"][mem]
        ),
    }
    print("\nmedians:")
    for name, m in med.items():
        print(f"  {name:<28} " + "  ".join(f"{k} {val:.3f}" for k, val in m.items()))
    print("ratios:")
    for k, val in ratios.items():
        print(f"  {k:<44} {val:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": results,
        "medians": med,
        "ratios": ratios,
    }
    (args.out / "train_bench.json").write_text(json.dumps(report, indent=1))
    print(f"\nwritten: {args.out / 'train_bench.json'}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
