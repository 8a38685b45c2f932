"""``stratocast`` command line: one subcommand per stage, and ``demo`` chaining them all."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from stratocast.cli import products_cmd, stages
from stratocast.cli.run_config import RunConfig, RunPaths, load_run
from stratocast.config import format_validation, quote
from stratocast.errors import StratocastError
from stratocast.serve import cli as serve_cli
from stratocast.train import slurm
from stratocast.train.launch import add_resume_flags
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
DEMO_ORDER = ["world", "ingest", "shards", "train", "forecast", "verify", "operate"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stratocast", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in [*STAGES.items(), ("demo", (None, "run every stage in order"))]:
        sp = sub.add_parser(name, help=help_text)
        _add_debug(sp)
        sp.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
        sp.add_argument("--workdir", default=None, help="override the config's workdir")
        sp.add_argument("--no-progress", action="store_true", help="hide progress bars")
        if name == "train":
            add_resume_flags(sp)
        if name == "verify":
            stages.add_verify_arguments(sp)
        if name == "ingest":
            sp.add_argument(
                "--reference-time",
                type=datetime.fromisoformat,
                default=None,
                help="month and year (ISO time, UTC) for METAR/SYNOP text files whose names "
                "carry no date; a source's own options.reference_time wins",
            )
    for name, help_text, add in (
        ("cycle", "run one product cycle (idempotent)", products_cmd.add_cycle_arguments),
        ("operate", "run every product on its schedule", products_cmd.add_operate_arguments),
    ):
        sp = sub.add_parser(name, help=help_text)
        _add_debug(sp)
        sp.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
        sp.add_argument("--workdir", default=None, help="override the config's workdir")
        add(sp)
    sp = sub.add_parser("serve", help="serve the published products over HTTP")
    _add_debug(sp)
    sp.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    sp.add_argument("--workdir", default=None, help="override the config's workdir")
    serve_cli.add_arguments(sp)
    slurm.add_parser(sub)
    _add_debug(sub.choices["slurm"])
    return p


def _add_debug(sp: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too. Its own action with a SUPPRESS default, so the
    sub-parser never resets a ``--debug`` given before the subcommand."""
    sp.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )


def demo(cfg: RunConfig, paths: RunPaths, progress: bool) -> Path:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    report = Path()
    for name in DEMO_ORDER:
        fn = products_cmd.demo_stage if name == "operate" else STAGES[name][0]
        result = stages.timed(name, lambda fn=fn: fn(cfg, paths, progress), timings)  # type: ignore[misc]
        if name == "verify":
            report = result
    timings["total"] = time.perf_counter() - t0
    paths.workdir.mkdir(parents=True, exist_ok=True)
    (paths.workdir / "timings.json").write_text(json.dumps(timings, indent=1))
    print("\nstage timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"\nReport: {report.resolve()}")
    return report


def _one_line(text: str) -> str:
    """Every error is one line on stderr: a multi-line message becomes ``a; b; c``."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "(no message)"


def _os_error(err: OSError, context: str | None) -> str:
    """``ENOSPC: No space left on device: /x/y`` from any OSError, with the path(s) it names;
    when it names none (a failed write or close; pyarrow and zarr often drop it), what the
    command was writing to (``context``)."""
    code = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
    what = _one_line(err.strerror or str(err))
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    if paths:
        where = ": " + " -> ".join(str(p) for p in paths)
    else:
        where = f" ({context})" if context is not None else ""
    return f"{code + ': ' if code else ''}{what}{where}"


def _describe(err: BaseException, context: str | None = None) -> tuple[str, int]:
    """The one-line message and exit code for an error that ended a command."""
    if isinstance(err, StratocastError):  # before OSError: some project errors are OSErrors
        return f"error: {_one_line(str(err))}", 2
    if isinstance(err, OSError):
        return f"error: {_os_error(err, context)}", 2
    if isinstance(err, ValidationError):  # a config built outside load_config (named by class)
        return f"error: {_one_line(format_validation(err, err.title))}", 2
    if isinstance(err, yaml.YAMLError):
        return f"error: cannot parse YAML: {_one_line(str(err))}", 2
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", 130
    # Anything else is a bug: still one line, and the way to see where it came from.
    return f"internal error: {type(err).__name__}: {quote(str(err), 300)} (rerun with --debug)", 1


def _run(args: argparse.Namespace, where: list[str]) -> int:
    """Run the command; ``where`` receives what it writes to, for errors that name no path."""
    if args.command == "slurm":
        where.append(f"writing {args.out.resolve()}")
        return slurm.command(args)
    if args.command == "verify" and args.forecast is not None:
        where.append(f"writing under {args.out}")
        return stages.verify_paths_command(args)
    cfg, paths = load_run(args.config, args.workdir)
    where.append(f"in the run's workdir {paths.workdir}")
    if args.command == "cycle":
        return products_cmd.cycle(cfg, paths, args)
    if args.command == "verify" and args.product is not None:
        return products_cmd.verify_product(cfg, paths, args)
    if args.command == "operate":
        return products_cmd.operate(cfg, paths, args)
    if args.command == "serve":
        return serve_cli.serve(paths.products, args.config, args)
    progress = not args.no_progress
    if args.command == "verify" and args.analysis is not None:
        analysis = {"analysis": str(args.analysis)}
        cfg = cfg.model_copy(update={"verify": cfg.verify.model_copy(update=analysis)})
    if args.command == "ingest" and args.reference_time is not None:
        ref = {"reference_time": args.reference_time}
        cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update=ref)})
    if args.command == "demo":
        demo(cfg, paths, progress)
    elif args.command == "train":
        stages.train(cfg, paths, progress, from_step=args.from_step, fresh=args.fresh)
    else:
        STAGES[args.command][0](cfg, paths, progress)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends here: one line on stderr and exit 2 (1: a bug),
    the traceback too with ``--debug``."""
    args = _parser().parse_args(argv)
    where: list[str] = []
    try:
        return _run(args, where)
    except Preempted as stop:
        # Checkpointed on SIGTERM/SIGUSR1: the requeue code tells the launcher to run us again.
        print(f"stratocast {args.command}: {stop}", file=sys.stderr)
        return stop.exit_code
    except (Exception, KeyboardInterrupt) as err:
        if args.debug:
            traceback.print_exc()
        message, code = _describe(err, where[0] if where else None)
        print(f"stratocast {args.command}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
