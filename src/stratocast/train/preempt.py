"""Preemption: a signal only sets a flag; the trainer saves at the next step boundary and exits.

Saving inside the handler would interrupt a step half-way (and a collective on one rank only),
so the handler records the signal and the training loop acts on it once the current step is
complete, after all ranks agreed (a signal may reach the ranks at different steps).

Exit code: ``REQUEUE_EXIT_CODE`` = 143 (128 + SIGTERM, what a shell reports for a process
that SIGTERM ended) for SIGTERM and SIGUSR1 alike, configurable as
``train.checkpoint.requeue_exit_code``. A launcher (the Slurm script) treats it as
"checkpointed, requeue me"; any other non-zero code is a failure.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

REQUEUE_EXIT_CODE = 143
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """Training stopped on a signal after saving the checkpoint for ``step``."""

    def __init__(self, step: int, signal_name: str, exit_code: int) -> None:
        super().__init__(f"preempted by {signal_name}: checkpoint saved at step {step}")
        self.step = step
        self.signal_name = signal_name
        self.exit_code = exit_code


class PreemptionFlag:
    """Installs handlers for SIGTERM and SIGUSR1 while active (a context manager)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    @property
    def raised(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> PreemptionFlag:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            # Once preempted the process is on its way out with the requeue code; a second
            # signal (Slurm and the launcher may both deliver one) must not kill it first
            # with the default action, so the flag handler stays installed.
            signal.signal(sig, self._handle if self.raised else handler)
        self._previous.clear()
