"""Slurm: an sbatch script that trains on N nodes × G GPUs and survives preemption.

The script runs one task per node; each task is a torchrun agent (``python -m
stratocast.train.slurm``, see :func:`launch`) that starts G training processes and meets the
other nodes at a c10d rendezvous on the job's first node.

Preemption path::

    Slurm ──SIGUSR1 (B:, lead s before the limit)──▶ batch shell (trap)
        ──kill -USR1 srun──▶ srun forwards to the step's processes (agent and trainers)
        trainers: checkpoint at the next step boundary, exit with the requeue code
        agent: passes the trainers' exit code through ──▶ srun exits with it
        batch shell: requeue code ⇒ ``scontrol requeue $SLURM_JOB_ID``

``--signal=B:USR1@lead`` (the batch shell only), not ``--signal=USR1@lead`` (every process
of every step): the batch shell is the one place that decides about the requeue, so it must
know the signal came; and a stock torchrun agent does not handle SIGUSR1, so a signal sent
straight to it would kill it (default action) and lose the trainers' exit code.

A requeued job runs the same script again (``--open-mode=append`` keeps one log); the trainer
resumes from its latest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from stratocast.config import ConfigError, parse_config, read_yaml
from stratocast.errors import StratocastError

RDZV_PORT = 29500
_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")


class SlurmError(StratocastError, ValueError):
    """The requested job does not fit the config, or an option is malformed."""


@dataclass(frozen=True)
class SlurmJob:
    """What the sbatch script asks Slurm for. ``gpus_per_node`` = 0: CPU nodes running
    ``procs_per_node`` processes each (default: the config's ``train.parallel``)."""

    config: Path
    nodes: int
    gpus_per_node: int
    procs_per_node: int | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    signal_lead_s: int = 120
    job_name: str = "stratocast-train"
    cpus_per_task: int | None = None
    # write a copy of the config whose train.parallel matches nodes × procs instead of failing
    override_parallel: bool = False
    workdir: str | None = None
    log_dir: Path = Path("slurm-logs")
    chdir: Path = field(default_factory=Path.cwd)
    python: str = sys.executable
    port: int = RDZV_PORT
    extra_train_args: tuple[str, ...] = ()

    @property
    def procs(self) -> int:
        return self.gpus_per_node if self.gpus_per_node > 0 else (self.procs_per_node or 1)


@dataclass(frozen=True)
class Plan:
    """The checked job: the config the script trains with and its requeue exit code."""

    job: SlurmJob
    config: Path
    requeue_exit_code: int
    derived_config: dict[str, Any] | None = None  # to write beside the script (override)


def _check_options(job: SlurmJob) -> None:
    if job.nodes < 1:
        raise SlurmError(f"--nodes must be >= 1, got {job.nodes}")
    if job.gpus_per_node < 0:
        raise SlurmError(f"--gpus-per-node must be >= 0, got {job.gpus_per_node}")
    if job.gpus_per_node > 0 and job.procs_per_node not in (None, job.gpus_per_node):
        raise SlurmError(
            f"--procs-per-node {job.procs_per_node} with --gpus-per-node {job.gpus_per_node}: "
            "one process per GPU; --procs-per-node is for CPU nodes (--gpus-per-node 0)"
        )
    if job.procs_per_node is not None and job.procs_per_node < 1:
        raise SlurmError(f"--procs-per-node must be >= 1, got {job.procs_per_node}")
    if job.signal_lead_s < 1:
        raise SlurmError(f"--signal-lead-s must be >= 1, got {job.signal_lead_s}")
    if job.time is not None and not _TIME.match(job.time):
        raise SlurmError(f"--time {job.time!r}: expected [D-]HH:MM:SS, HH:MM or MM")
    if not 1 <= job.port <= 65535:
        raise SlurmError(f"--port {job.port} is not a TCP port")


def plan(job: SlurmJob) -> Plan:
    """Check the job against the config's ``train.parallel``; errors name both sides."""
    from stratocast.cli.run_config import RunConfig

    _check_options(job)
    path = job.config.resolve()
    raw = read_yaml(path)
    cfg = parse_config(RunConfig, raw, str(path))
    par = cfg.train.parallel
    procs = job.gpus_per_node or job.procs_per_node or par.procs_per_node
    job = replace(job, procs_per_node=procs)
    requeue = cfg.train.checkpoint.requeue_exit_code
    if (par.nodes, par.procs_per_node) == (job.nodes, procs):
        return Plan(job, path, requeue)
    asked = f"{job.nodes} node(s) x {procs} process(es) = {job.nodes * procs}"
    if not job.override_parallel:
        raise SlurmError(
            f"{path}: train.parallel is {par.nodes} node(s) x {par.procs_per_node} "
            f"process(es) = {par.world_size}, but the job asks for {asked}; change "
            "train.parallel or pass --override-parallel to train with a copy of the config "
            "set to the job's dimensions"
        )
    derived = dict(raw)
    train = dict(derived.get("train") or {})
    train["parallel"] = {**(train.get("parallel") or {}), "nodes": job.nodes}
    train["parallel"]["procs_per_node"] = procs
    derived["train"] = train
    try:  # the new world size may break a rule such as the global batch size
        parse_config(RunConfig, derived, f"{path} with train.parallel set to {asked}")
    except ConfigError as err:
        raise SlurmError(str(err)) from None
    return Plan(job, path, requeue, derived_config=derived)


def _sbatch_lines(job: SlurmJob) -> list[str]:
    logs = (job.chdir / job.log_dir).resolve()
    opts: list[tuple[str, object | None]] = [
        ("job-name", job.job_name),
        ("nodes", job.nodes),
        ("ntasks-per-node", 1),  # one torchrun agent per node; it starts the processes
        ("gpus-per-node", job.gpus_per_node or None),
        ("cpus-per-task", job.cpus_per_task),
        ("time", job.time),
        ("partition", job.partition),
        ("account", job.account),
        ("requeue", ""),
        ("signal", f"B:USR1@{job.signal_lead_s}"),
        ("open-mode", "append"),
        ("output", logs / "%x-%j.out"),
        ("error", logs / "%x-%j.err"),
        ("chdir", job.chdir.resolve()),
    ]
    return [f"#SBATCH --{k}" + (f"={_q(v)}" if v != "" else "") for k, v in opts if v is not None]


def _q(v: object) -> str:
    return shlex.quote(str(v))


def render(p: Plan, config_for_script: Path) -> str:
    """The sbatch script text for a checked plan."""
    job = p.job
    # one line per flag and its value; $-variables expand in the batch shell, the rest quoted
    lines = [
        f"{_q(job.python)} -m stratocast.train.slurm",
        "--nnodes=$SLURM_NNODES",
        f"--nproc-per-node={job.procs}",
        "--rdzv-id=$SLURM_JOB_ID --rdzv-backend=c10d",
        "--rdzv-endpoint=$head_node:$rdzv_port",
        f"-m stratocast.cli.main train --config {_q(config_for_script)} --no-progress",
    ]
    if job.workdir:
        lines.append(f"--workdir {_q(job.workdir)}")
    lines += [_q(a) for a in job.extra_train_args]
    cmd = " \\\n    ".join(lines)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "\n".join(
        [
            "#!/bin/bash",
            f"# Written by `stratocast slurm` from {p.config} at {stamp}.",
            "# Submit with `sbatch <this file>`. A requeued job re-runs it unchanged; the",
            "# trainer resumes from its latest complete checkpoint.",
            *_sbatch_lines(job),
            "",
            "set -uo pipefail  # not -e: the training step's exit code is inspected below",
            f"REQUEUE_EXIT_CODE={p.requeue_exit_code}",
            'log() { echo "[$(date -u +%FT%TZ)] stratocast-slurm: $*"; }',
            "",
            "step_pid=''",
            "interrupted=0",
            "forward_usr1() {",
            "    interrupted=1",
            '    log "SIGUSR1: asking the trainers to checkpoint and exit"',
            '    if [ -n "$step_pid" ]; then kill -USR1 "$step_pid" 2>/dev/null; fi',
            "}",
            "trap forward_usr1 USR1",
            "",
            'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "# A requeued run may land on the same head node seconds after the previous one",
            "# exited, while its rendezvous socket is still held or in TIME_WAIT: each restart",
            "# takes the next port.",
            f"rdzv_port=$(( {job.port} + ${{SLURM_RESTART_COUNT:-0}} % 100 ))",
            'log "job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}, nodes'
            ' $SLURM_JOB_NODELIST, rendezvous $head_node:$rdzv_port"',
            "",
            "# srun in the background: bash runs a trap only between commands, and `wait` is",
            "# interruptible where a foreground srun is not.",
            f"srun --kill-on-bad-exit=1 {cmd} &",
            "step_pid=$!",
            "while :; do",
            "    interrupted=0",
            '    wait "$step_pid"',
            "    rc=$?",
            '    [ "$interrupted" = 1 ] || break  # else the trap cut the wait short: wait again',
            "done",
            "",
            'if [ "$rc" -eq "$REQUEUE_EXIT_CODE" ]; then',
            '    log "trainers checkpointed (exit $rc): requeueing job $SLURM_JOB_ID"',
            '    scontrol requeue "$SLURM_JOB_ID"',
            "    exit 0",
            "fi",
            'log "training step ended with exit code $rc"',
            'exit "$rc"',
            "",
        ]
    )


def write_sbatch(job: SlurmJob, out: Path) -> Path:
    """Check ``job``, write the script to ``out`` (and, with ``override_parallel``, the
    adjusted config to ``<out stem>.config.yaml`` beside it); returns ``out``."""
    import yaml

    p = plan(job)
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    config_for_script = p.config
    if p.derived_config is not None:
        config_for_script = out.with_suffix(".config.yaml")
        header = f"# {p.config} with train.parallel set by `stratocast slurm`\n"
        config_for_script.write_text(header + yaml.safe_dump(p.derived_config, sort_keys=False))
    out.write_text(render(p, config_for_script))
    out.chmod(0o755)
    (p.job.chdir / p.job.log_dir).resolve().mkdir(parents=True, exist_ok=True)
    return out


# --- the per-node launcher: torchrun, with SIGUSR1/SIGTERM passed to the trainers -----------

_PASS_THROUGH = (signal.SIGUSR1, signal.SIGTERM)


def _forward_to_children(signum: int, frame: FrameType | None) -> None:
    # Inside a Slurm step the signal already reached every process of the step (srun and
    # scancel signal the whole step, whatever the proctrack plugin); a second copy could land
    # while a trainer exits, after its handler is gone, and kill it with the signal.
    if "SLURM_STEP_ID" in os.environ:
        return
    import psutil

    for child in psutil.Process().children(recursive=False):
        with contextlib.suppress(psutil.NoSuchProcess):  # it exited meanwhile
            child.send_signal(signum)


def exit_code_of(failures: dict[int, Any]) -> int:
    """One code for the node's failed workers: the exit code of those that exited normally
    when they agree (the trainers' requeue code passes through), else 1.

    Workers killed by a signal (negative codes) are ignored when others exited normally: the
    agent tears the remaining workers down with SIGTERM as soon as the first one exits, and
    with a preemption that first exit comes after the collective checkpoint save (which ends
    in a barrier), so the others are only being stopped on their way out. A real failure
    (exit 1, a crash) still gives 1, and so do workers that all died by a signal.
    """
    codes = {int(f.exitcode) for f in failures.values()}
    normal = {c for c in codes if c > 0}
    if len(normal) == 1 and 0 < (code := normal.pop()) < 256:
        return code
    return 1


def launch(argv: Sequence[str]) -> int:
    """``torchrun`` (same arguments) with two changes for preemptible jobs:

    - SIGUSR1 and SIGTERM are passed on to the trainers (outside Slurm: by the agent; inside a
      Slurm step they reach every process anyway), which checkpoint and exit; the agent does
      not shut them down itself (stock torchrun ignores USR1 — its default action kills
      the agent — and gives trainers only 30 s after a TERM before killing them).
    - the trainers' exit code comes back as the agent's (stock torchrun exits 1 whatever it
      was), so the batch script can tell "checkpointed, requeue me" from a failure.
    """
    # Before the slow torch import: a signal arriving meanwhile must not kill the agent.
    for sig in _PASS_THROUGH:
        signal.signal(sig, _forward_to_children)
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(list(argv))
    handled = [s.strip() for s in str(args.signals_to_handle).split(",")]
    names = {s.name for s in _PASS_THROUGH}
    args.signals_to_handle = ",".join(s for s in handled if s and s not in names)
    os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = args.signals_to_handle
    try:
        run(args)
    except ChildFailedError as err:
        code = exit_code_of(err.failures)
        print(f"stratocast launch: trainers exited with code {code}", file=sys.stderr)
        return code
    return 0


# --- `stratocast slurm` ----------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """Register ``stratocast slurm`` on the CLI's subparsers."""
    sp = sub.add_parser("slurm", help="write an sbatch script that trains on N nodes x G GPUs")
    sp.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    sp.add_argument("--nodes", type=int, required=True)
    sp.add_argument("--gpus-per-node", type=int, required=True, help="0: CPU nodes")
    sp.add_argument(
        "--procs-per-node", type=int, default=None, help="CPU nodes: processes per node"
    )
    sp.add_argument("--time", default=None, help="time limit, [D-]HH:MM:SS")
    sp.add_argument("--partition", default=None)
    sp.add_argument("--account", default=None)
    sp.add_argument("--signal-lead-s", type=int, default=120, help="USR1 this long before")
    sp.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per node's task")
    sp.add_argument("--job-name", default="stratocast-train")
    sp.add_argument("--workdir", default=None, help="override the config's workdir")
    sp.add_argument("--log-dir", type=Path, default=Path("slurm-logs"))
    sp.add_argument("--port", type=int, default=RDZV_PORT, help="rendezvous port")
    sp.add_argument(
        "--override-parallel",
        action="store_true",
        help="train with a copy of the config whose train.parallel matches the job",
    )
    sp.add_argument("--out", type=Path, default=Path("train.sbatch"))


def command(args: Any) -> int:
    job = SlurmJob(
        config=args.config,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        procs_per_node=args.procs_per_node,
        time=args.time,
        partition=args.partition,
        account=args.account,
        signal_lead_s=args.signal_lead_s,
        job_name=args.job_name,
        cpus_per_task=args.cpus_per_task,
        override_parallel=args.override_parallel,
        workdir=args.workdir,
        log_dir=args.log_dir,
        port=args.port,
    )
    try:
        out = write_sbatch(job, args.out)
    except (SlurmError, ConfigError) as err:
        print(f"stratocast slurm: error: {err}", file=sys.stderr)
        return 2
    print(f"sbatch script: {out}  (submit: sbatch {shlex.quote(str(out))})")
    return 0


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
