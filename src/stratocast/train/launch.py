"""Train from a bare train config (no whole-run YAML): the entry point ``torchrun`` runs.

    torchrun --nnodes N --nproc_per_node P -m stratocast.train.launch \\
        --config train.yaml --shards DIR --out DIR [--from-step S | --fresh]

``train.yaml`` holds the ``train:`` section's contents (a TrainConfig). ``stratocast train``
runs the same trainer from a whole-run config and works under torchrun as well.
Exit codes: 0 done, 2 bad config or resume request, the requeue code (143 unless configured)
after a preemption checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from stratocast.config import ConfigError, load_config
from stratocast.train.config import TrainConfig
from stratocast.train.preempt import Preempted


def add_resume_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--from-step",
        type=int,
        default=None,
        metavar="S",
        help="roll back: resume from the checkpoint of step S and delete the later ones "
        "(default: resume from the newest complete checkpoint, if any)",
    )
    g.add_argument(
        "--fresh", action="store_true", help="delete existing checkpoints and start afresh"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stratocast.train.launch", description=__doc__)
    p.add_argument("--config", type=Path, required=True, help="a TrainConfig YAML")
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--progress", action="store_true")
    add_resume_flags(p)
    args = p.parse_args(argv)
    # The training stack (torch) only once there is something to train: ``stratocast``
    # imports this module for add_resume_flags, and its --help and config errors need no torch.
    from stratocast.train.dcp_checkpoint import ResumeError
    from stratocast.train.parallel import ParallelError
    from stratocast.train.trainer import train

    try:
        cfg = load_config(TrainConfig, args.config)
        train(cfg, args.shards, args.out, args.progress, args.from_step, args.fresh)
    except Preempted as stop:
        print(f"stratocast train: {stop}; exit {stop.exit_code} to be requeued", file=sys.stderr)
        return stop.exit_code
    except (ConfigError, ResumeError, ParallelError) as err:
        print(f"stratocast train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
