"""Training monitoring: scalars to TensorBoard and JSON lines, device statistics, step timing.

Only rank 0 writes, so N processes produce one event file and one ``metrics.jsonl``, not N
copies that disagree. TensorBoard is optional: without it the JSON lines still carry every
value, and a one-line warning says why the event file is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

# A value is a number, a sequence of numbers (expanded to ``key/step_1``, ``key/step_2``, ...),
# or a mapping of those (expanded to ``key/sub``), e.g. validation RMSE per variable and lead.
ScalarTree = float | torch.Tensor | Sequence[float] | Mapping[str, Any]


def _is_number(v: object) -> bool:
    # A 0-d tensor or numpy scalar converts with float(); bool is excluded because a flag
    # logged as 1.0 is more often a bug than an intent.
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    return hasattr(v, "__float__") and getattr(v, "ndim", 0) == 0


def flatten_scalars(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"loss": [a, b], "val": {"t2m": c}}`` → ``{"loss/step_1": a, "loss/step_2": b,
    "val/t2m": c}``. Raises TypeError naming the key of a value that is not numeric."""
    flat: dict[str, float] = {}
    for key, v in values.items():
        tag = f"{prefix}{key}"
        if _is_number(v):
            flat[tag] = float(v)
        elif isinstance(v, Mapping):
            flat.update(flatten_scalars(v, prefix=f"{tag}/"))
        elif isinstance(v, Sequence | torch.Tensor | np.ndarray) and not isinstance(v, str | bytes):
            for i, x in enumerate(v):
                if not _is_number(x):
                    raise TypeError(f"metric {tag!r}[{i}]: expected a number, got {x!r}")
                flat[f"{tag}/step_{i + 1}"] = float(x)
        else:
            raise TypeError(f"metric {tag!r}: expected a number or a list of numbers, got {v!r}")
    return flat


def _jsonable(v: Any) -> Any:
    if _is_number(v):
        return float(v) if not isinstance(v, int) else v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return [_jsonable(x) for x in v]


class Monitor:
    """Scalars from rank 0 to ``<out>/tensorboard/`` and ``<out>/metrics.jsonl``.

    ``start_step`` > 0 marks a resumed run: records at or after it (written by the
    interrupted run after its last checkpoint, and about to be redone) are dropped from both
    outputs, so the curves have one value per step. ``start_step`` = 0 starts both afresh.
    """

    def __init__(self, out: Path, rank: int, tensorboard: bool = True, start_step: int = 0) -> None:
        self.out = Path(out)
        self.rank = rank
        self._writer: Any = None
        self._jsonl: Any = None
        if rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._jsonl = _open_jsonl(self.out / METRICS_FILE, start_step)
        if tensorboard:
            self._writer = _summary_writer(self.out / TENSORBOARD_DIR, start_step)

    @property
    def active(self) -> bool:
        return self._jsonl is not None

    def scalars(self, step: int, values: Mapping[str, ScalarTree]) -> None:
        if self._jsonl is None:
            return
        flat = flatten_scalars(values)  # validates before anything is written
        record = {"step": step, **{k: _jsonable(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._writer is not None:
            for tag, x in flat.items():
                self._writer.add_scalar(tag, x, global_step=step)
            # A preempted job may be killed soon after; an unflushed event queue would lose
            # exactly the last values before the interruption.
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_jsonl(path: Path, start_step: int) -> Any:
    if start_step > 0 and path.is_file():
        kept = [line for line in path.read_text().splitlines() if _step_of(line) < start_step]
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
        return path.open("a")
    return path.open("w")


def _step_of(line: str) -> float:
    # A torn last line (killed mid-write) has no step: drop it with the redone records.
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def _summary_writer(log_dir: Path, start_step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn(
            "tensorboard is not installed: no TensorBoard event file, metrics.jsonl only "
            "(pip install tensorboard)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    # purge_step hides the events an interrupted run wrote after its last checkpoint.
    return SummaryWriter(log_dir=str(log_dir), purge_step=start_step if start_step > 0 else None)


class _CpuMeter:
    """Process CPU utilisation (all threads) since the previous call, in percent of one core."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def percent(self) -> float:
        wall, cpu = time.perf_counter(), time.process_time()
        dw, dc = wall - self._wall, cpu - self._cpu
        self._wall, self._cpu = wall, cpu
        return 100.0 * dc / dw if dw > 0 else 0.0


_cpu_meter = _CpuMeter()
_GIB = float(1 << 30)


def _host_rss_bytes() -> float | None:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return float(psutil.Process().memory_info().rss)
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return float(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return None


def _gpu_stats() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {}
    dev = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(dev)
    stats = {
        "gpu/mem_used_gib": (total - free) / _GIB,
        "gpu/mem_total_gib": total / _GIB,
        "gpu/torch_allocated_gib": torch.cuda.memory_allocated(dev) / _GIB,
        "gpu/torch_peak_gib": torch.cuda.max_memory_allocated(dev) / _GIB,
    }
    # torch's NVML helpers map the CUDA index to the NVML one under CUDA_VISIBLE_DEVICES.
    if importlib.util.find_spec("pynvml") is not None:
        stats["gpu/util_pct"] = float(torch.cuda.utilization(dev))
    return stats


def device_stats() -> dict[str, float]:
    """GPU utilisation (NVML, when ``nvidia-ml-py`` is installed) and memory of this process's
    CUDA device, plus host RSS and CPU utilisation of this process since the last call.
    CPU-only runs get the host entries only."""
    stats = _gpu_stats()
    rss = _host_rss_bytes()
    if rss is not None:
        stats["host/rss_gib"] = rss / _GIB
    stats["host/cpu_pct"] = _cpu_meter.percent()
    return stats


PHASES = ("data", "forward", "backward", "optimizer", "communication")


class StepTimer:
    """Wall time per training phase, accumulated over steps; ``snapshot()`` gives mean ms per
    step for each phase (``time/<phase>_ms``) and for the whole step (``time/step_ms``).

    With CUDA, each phase boundary synchronises the device: kernels are asynchronous, so
    without it the backward's GPU time would be billed to whatever phase next waits on it.
    ``communication`` is the time of explicit collectives timed by the caller; DDP's bucketed
    all-reduce overlaps the backward and is counted there.
    """

    def __init__(self, sync_cuda: bool | None = None, extra_phases: Sequence[str] = ()) -> None:
        self.sync_cuda = torch.cuda.is_available() if sync_cuda is None else sync_cuda
        self.phases = (*PHASES, *extra_phases)
        self.reset()

    def reset(self) -> None:
        self._totals = dict.fromkeys(self.phases, 0.0)
        self._steps = 0
        self._step_total = 0.0
        self._step_start = time.perf_counter()

    def _sync(self) -> None:
        if self.sync_cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in self._totals:
            raise ValueError(f"unknown phase {name!r}; phases are {', '.join(self.phases)}")
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._totals[name] += time.perf_counter() - t0

    def step(self) -> None:
        """Mark the end of one training step (after the optimizer)."""
        now = time.perf_counter()
        self._step_total += now - self._step_start
        self._step_start = now
        self._steps += 1

    def snapshot(self, reset: bool = True) -> dict[str, float]:
        n = max(self._steps, 1)
        snap = {f"time/{p}_ms": 1e3 * t / n for p, t in self._totals.items()}
        snap["time/step_ms"] = 1e3 * self._step_total / n
        if reset:
            self.reset()
        return snap
