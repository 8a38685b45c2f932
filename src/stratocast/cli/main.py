"""``stratocast`` command line: one subcommand per stage, and ``demo`` chaining them all."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stratocast.cli import stages
from stratocast.cli.run_config import RunConfig, RunPaths, load_run
from stratocast.config import ConfigError
from stratocast.train import slurm
from stratocast.train.dcp_checkpoint import ResumeError
from stratocast.train.launch import add_resume_flags
from stratocast.train.parallel import ParallelError
from stratocast.train.preempt import Preempted

StageFn = Callable[[RunConfig, RunPaths, bool], Any]

STAGES: dict[str, tuple[StageFn, str]] = {
    "world": (stages.world, "simulate the built-in world and write its observation reports"),
    "ingest": (stages.ingest, "decode, standardise and QC reports into the observation store"),
    "shards": (stages.shards, "build the training shards (Zarr v3) and statistics"),
    "train": (stages.train, "train the forecast model"),
    "forecast": (stages.forecast, "run the deterministic forecast product"),
    "verify": (stages.verify, "score forecasts at held-out stations; write the report"),
}
DEMO_ORDER = ["world", "ingest", "shards", "train", "forecast", "verify"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stratocast", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in [*STAGES.items(), ("demo", (None, "run every stage in order"))]:
        sp = sub.add_parser(name, help=help_text)
        sp.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
        sp.add_argument("--workdir", default=None, help="override the config's workdir")
        sp.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if name == "train":
            add_resume_flags(sp)
        if name == "verify":
            stages.add_verify_arguments(sp)
    slurm.add_parser(sub)
    return p


def demo(cfg: RunConfig, paths: RunPaths, progress: bool) -> Path:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    report = Path()
    for name in DEMO_ORDER:
        fn = STAGES[name][0]
        result = stages.timed(name, lambda fn=fn: fn(cfg, paths, progress), timings)  # type: ignore[misc]
        if name == "verify":
            report = result
    timings["total"] = time.perf_counter() - t0
    paths.workdir.mkdir(parents=True, exist_ok=True)
    (paths.workdir / "timings.json").write_text(json.dumps(timings, indent=1))
    print("\nstage timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"\nReport: {report.resolve()}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "slurm":
        return slurm.command(args)
    if args.command == "verify" and args.forecast is not None:
        return stages.verify_paths_command(args)
    try:
        cfg, paths = load_run(args.config, args.workdir)
        progress = not args.no_progress
        if args.command == "verify" and args.analysis is not None:
            analysis = {"analysis": str(args.analysis)}
            cfg = cfg.model_copy(update={"verify": cfg.verify.model_copy(update=analysis)})
        if args.command == "demo":
            demo(cfg, paths, progress)
        elif args.command == "train":
            stages.train(cfg, paths, progress, from_step=args.from_step, fresh=args.fresh)
        else:
            STAGES[args.command][0](cfg, paths, progress)
    except Preempted as stop:
        # Checkpointed on SIGTERM/SIGUSR1: the requeue code tells the launcher to run us again.
        print(f"stratocast {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except (ConfigError, stages.StageError, ResumeError, ParallelError) as err:
        print(f"stratocast {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
