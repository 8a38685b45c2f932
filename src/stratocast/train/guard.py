"""Training guards: no run starts on a period without observations, none goes on after a NaN.

Two checks, both cheap where it matters:

* before training, :func:`obs_coverage` counts the observation windows (time steps) of the
  training period that hold at least one observation, reading only the obs array of that
  period, block by block; :func:`check_obs_coverage` rejects a period where too few do. Empty
  windows are not an error by themselves: the model sees them as masked windows, and their
  count goes to the metrics.
* during training the trainer folds one "is the loss and the gradient norm finite" flag into
  the scalar all-reduce it already does for the loss log, so every rank learns of a non-finite
  step at the same boundary with no extra device sync; only then, on the failure path,
  :func:`describe_nonfinite` inspects the batch to name the step, times and first bad channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stratocast.errors import StratocastError
from stratocast.shards.layout import OBS
from stratocast.shards.reader import ShardArrayReader

# A period where fewer than half the windows hold any observation trains mostly on the
# climatological first guess: almost surely a wrong period or an empty store, not a choice.
DEFAULT_MIN_OBS_FRACTION = 0.5
_BLOCK_BYTES = 64 << 20  # bound on what the coverage count holds in memory at once


class NonFiniteTrainingError(StratocastError, RuntimeError):
    """A training step produced a non-finite loss or gradient norm; raised before the
    optimizer step and before any checkpoint of that step."""


class TooFewObservationsError(StratocastError, ValueError):
    """The training period holds too few observation windows with any observation."""


@dataclass(frozen=True)
class ObsCoverage:
    start: str
    end: str
    windows: int  # time steps of the shards inside [start, end]
    with_obs: int  # of those, windows holding at least one finite observation

    @property
    def masked(self) -> int:
        return self.windows - self.with_obs

    @property
    def fraction(self) -> float:
        return self.with_obs / self.windows if self.windows else 0.0


def obs_coverage(shards: Path, times: np.ndarray, start: str, end: str) -> ObsCoverage:
    """Count the windows of ``[start, end]`` with any observation, reading the obs array of
    that period only, in blocks of at most ``_BLOCK_BYTES``."""
    lo = int(np.searchsorted(times, np.datetime64(start, "ns"), side="left"))
    hi = int(np.searchsorted(times, np.datetime64(end, "ns"), side="right"))
    with_obs = 0
    with ShardArrayReader(shards, OBS) as reader:
        step = max(1, _BLOCK_BYTES // max(1, reader.nbytes_per_step))
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            block = np.empty((b - a, *reader.shape[1:]), dtype=reader.dtype)
            reader.read_block(a, b, block)
            with_obs += int(np.isfinite(block).reshape(b - a, -1).any(axis=1).sum())
    return ObsCoverage(start, end, max(0, hi - lo), with_obs)


def check_obs_coverage(cov: ObsCoverage, min_fraction: float, shards: Path) -> None:
    """Raise :class:`TooFewObservationsError` naming the period and the counts when no window,
    or fewer than ``min_fraction`` of them, holds an observation."""
    if cov.with_obs > 0 and cov.fraction >= min_fraction:
        return
    raise TooFewObservationsError(
        f"training period {cov.start}..{cov.end} in {shards}: {cov.with_obs} of {cov.windows} "
        f"observation windows hold any observation ({cov.masked} masked), fewer than the "
        f"minimum {min_fraction:.0%}; check the period against the observation store (or "
        "lower train.min_obs_fraction)"
    )


def _fmt(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="m"))


def _first_bad(x: torch.Tensor) -> tuple[int, ...] | None:
    """Index of the first non-finite element of ``x`` (row-major), or None."""
    bad = ~torch.isfinite(x.detach())
    if not bool(bad.any()):
        return None
    return tuple(int(i) for i in torch.nonzero(bad)[0].tolist())


def describe_nonfinite(
    *,
    step: int,
    loss: float,
    grad_norm: float,
    batch: Mapping[str, torch.Tensor],
    pred: torch.Tensor | None,
    times: np.ndarray,
    history: int,
    channels: Sequence[str],
    obs_variables: Sequence[str],
    world_size: int = 1,
) -> str:
    """The error message for a non-finite step: the step, the batch's analysis and valid time
    range, and the first non-finite input (observations, then target) or else output channel.

    ``batch`` holds the last micro-batch of the step (``index``: analysis time indices into
    ``times``; ``obs`` (B, T_hist, S, V); ``target`` (B, T, C, H, W)); ``pred`` its output."""
    idx = batch["index"].detach().cpu().numpy().astype(np.int64)
    span = int(batch["target"].shape[1])  # history + rollout steps of this batch

    def valid(sample: int, t: int) -> str:
        return _fmt(times[idx[sample] - history + 1 + t])

    what = []
    if not math.isfinite(loss):
        what.append(f"loss {loss}")
    if not math.isfinite(grad_norm):
        what.append(f"gradient norm {grad_norm}")
    head = (
        f"training step {step}: non-finite {' and '.join(what) or 'value on another rank'}; "
        f"batch of {len(idx)} samples, analysis times {_fmt(times[idx.min()])}.."
        f"{_fmt(times[idx.max()])} (valid {_fmt(times[idx.min() - history + 1])}.."
        f"{_fmt(times[idx.max() - history + span])})"
    )
    where = None
    at = _first_bad(batch["obs"])
    if at is not None:
        b, t, s, v = at
        where = (
            f"first non-finite input: observations, variable {obs_variables[v]!r} "
            f"(station {s}) at {valid(b, t)}"
        )
    if where is None:
        at = _first_bad(batch["target"])
        if at is not None:
            b, t, c = at[:3]
            where = f"first non-finite input: target, channel {channels[c]!r} at {valid(b, t)}"
    if where is None and pred is not None:
        # The first bad time step tells where: an analysis of a later window takes the model's
        # own forecast of the previous analysis as its background.
        bad_t = (~torch.isfinite(pred.detach())).flatten(2).any(dim=2).any(dim=0)
        if bool(bad_t.any()):
            t = int(torch.nonzero(bad_t)[0])
            per_c = (~torch.isfinite(pred.detach()[:, t])).flatten(2).any(dim=2).any(dim=0)
            c = int(torch.nonzero(per_c)[0])
            b = int(torch.nonzero((~torch.isfinite(pred.detach()[:, t, c])).flatten(1).any(1))[0])
            if t == 0:
                stage = "the analysis of the first window (from the climatology)"
            elif t < history:
                stage = f"the analysis of window {t + 1} (from the model's background forecast)"
            else:
                stage = f"forecast step {t - history + 1}"
            where = (
                f"inputs finite; first non-finite output: channel {channels[c]!r} in {stage}, "
                f"valid {valid(b, t)}"
            )
    if where is None:
        where = (
            "inputs and outputs of this rank's batch finite"
            + ("" if what else ", non-finite on another rank")
            + (
                # Under DDP the gradients are averaged over the ranks before the norm is
                # taken, so one rank's NaN shows on every rank's gradient norm.
                (
                    "; the loss is finite: an overflow in the backward pass"
                    if world_size == 1
                    else "; the loss is finite: the gradients averaged over the "
                    f"{world_size} ranks are not (an overflow in the backward pass, or a "
                    "non-finite value on another rank)"
                )
                if what and math.isfinite(loss)
                else ""
            )
        )
    return f"{head}; {where}"
