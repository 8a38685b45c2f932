"""Training-state checkpoints with torch.distributed.checkpoint (DCP): resumable and re-shardable.

Layout under ``<out>/checkpoints/``::

    step-00000200/          one complete checkpoint
        .metadata, *.distcp   model + optimizer (DCP: each rank writes its shards)
        meta.json             step, world size, micro-batch, train config
        rank-00000.json ...   per rank: loader (sampler) state and RNG states
        COMPLETE              written last, by rank 0
    .tmp-step-00000300/     a save in progress (ignored; removed by the next save)

Atomic: every rank writes into the temporary directory; after a barrier rank 0 writes
``COMPLETE`` and renames the directory into place, so a crash while saving leaves the previous
checkpoints untouched and loading only ever considers directories with the marker.

Re-sharding: DCP stores tensors with their global shapes, so a checkpoint written by N ranks
(DDP or FSDP) loads into M ranks with either strategy. RNG states are per rank: rank r takes
rank r's states when it existed, else it is seeded from (seed, rank). The data position
follows the rule in :func:`loader_state_for`.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from pydantic import Field
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from stratocast.config import ComponentConfig
from stratocast.errors import StratocastError
from stratocast.train.parallel import DistInfo
from stratocast.train.preempt import REQUEUE_EXIT_CODE

COMPLETE = "COMPLETE"
_PREFIX = "step-"
_TMP_PREFIX = ".tmp-step-"


class CheckpointConfig(ComponentConfig):
    every: int = Field(default=250, ge=0)  # steps between periodic saves; 0: only end/signal
    keep: int = Field(default=2, ge=1)  # complete checkpoints kept (the newest)
    # dcp.async_save on GPUs (training continues while the previous state is written);
    # always synchronous on CPU, where staging the copy would cost as much as writing it.
    async_save: bool = True
    requeue_exit_code: int = Field(default=REQUEUE_EXIT_CODE, ge=1, le=255)


class ResumeError(StratocastError, RuntimeError):
    pass


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"{_PREFIX}{step:08d}"


def complete_steps(root: Path) -> list[int]:
    """Steps of the complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    steps = [
        int(p.name[len(_PREFIX) :])
        for p in root.iterdir()
        if p.name.startswith(_PREFIX) and (p / COMPLETE).is_file()
    ]
    return sorted(steps)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": np_state["state"]["key"].tolist(),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def loader_state_for(
    saved: list[dict[str, int]], saved_batch: int, batch: int, rank: int, world_size: int
) -> dict[str, int]:
    """The sampler state rank ``rank`` of ``world_size`` resumes from.

    Same world size and micro-batch: each rank takes its own saved state (exact). Otherwise:
    the epoch's permutation depends only on (seed, epoch), and after ``p`` batches per rank
    the ranks together consumed exactly its first ``p x saved_batch x saved_world`` samples. The
    new ranks continue the same epoch at the first of those not yet consumed, rounded down to
    a whole new global batch (``batch x world_size``): no sample is skipped, at most one global
    batch minus one is seen twice, and none when the global batch is unchanged.
    """
    if len(saved) == world_size and saved_batch == batch:
        return dict(saved[rank])
    epochs = {s["epoch"] for s in saved}
    if len(epochs) != 1:
        raise ResumeError(f"ranks were saved in different epochs {sorted(epochs)}")
    consumed = min(s["position"] for s in saved) * saved_batch * len(saved)
    return {"epoch": epochs.pop(), "position": consumed // (batch * world_size)}


@dataclass
class Restored:
    step: int
    meta: dict[str, Any]
    loader_state: dict[str, int]
    rng_state: dict[str, Any] | None  # None: this rank did not exist when it was saved


@dataclass
class _Pending:
    step: int
    tmp: Path
    future: Future[Any] | None


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns on every call without a process group; one process is a supported case."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


class Checkpointer:
    """Saves and restores the whole training state; every rank calls every method."""

    def __init__(self, root: Path, cfg: CheckpointConfig, dist_info: DistInfo) -> None:
        self.root = root
        self.cfg = cfg
        self.dist = dist_info
        self._pending: _Pending | None = None
        self.use_async = cfg.async_save and dist_info.device.type == "cuda"

    def _barrier(self) -> None:
        if self.dist.distributed:
            dist.barrier()

    def save(
        self,
        step: int,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader_state: dict[str, int],
        meta: dict[str, Any],
    ) -> None:
        self.wait()
        tmp = self.root / f"{_TMP_PREFIX}{step:08d}"
        if self.dist.is_main:
            for stale in self.root.glob(f"{_TMP_PREFIX}*"):
                shutil.rmtree(stale)  # a save that crashed: never complete, never loaded
            tmp.mkdir(parents=True)
        self._barrier()
        model_sd, optim_sd = get_state_dict(module, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        rank_file = tmp / f"rank-{self.dist.rank:05d}.json"
        rank_file.write_text(json.dumps({"loader": loader_state, "rng": _rng_state()}))
        if self.dist.is_main:
            full_meta = {**meta, "step": step, "world_size": self.dist.world_size}
            (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1))
        if self.use_async:
            response = dcp.async_save(state, checkpoint_id=tmp)
            # Newer torch answers with staging and upload futures; the upload is what counts.
            future: Future[Any] = getattr(response, "upload_completion", response)  # type: ignore[arg-type]
            self._pending = _Pending(step, tmp, future)
        else:
            with _quiet_single_process():
                dcp.save(state, checkpoint_id=tmp)
            self._pending = _Pending(step, tmp, None)
            self.wait()

    def wait(self) -> None:
        """Finish the save in flight (if any): all ranks done → marker → rename → prune."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.future is not None:
            pending.future.result()
        self._barrier()
        if self.dist.is_main:
            (pending.tmp / COMPLETE).write_text(f"{pending.step}\n")
            final = checkpoint_dir(self.root, pending.step)
            if final.exists():  # the same step saved again after a roll back
                shutil.rmtree(final)
            pending.tmp.rename(final)
            for old in complete_steps(self.root)[: -self.cfg.keep]:
                shutil.rmtree(checkpoint_dir(self.root, old))
        self._barrier()

    def restore(
        self,
        step: int,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
    ) -> Restored:
        path = checkpoint_dir(self.root, step)
        if not (path / COMPLETE).is_file():
            have = complete_steps(self.root)
            raise ResumeError(
                f"no complete checkpoint for step {step} in {self.root}; complete ones: {have}"
            )
        meta = json.loads((path / "meta.json").read_text())
        model_sd, optim_sd = get_state_dict(module, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        with _quiet_single_process():  # fills the two dicts in place, resharded to this run
            dcp.load(state, checkpoint_id=path)
        set_state_dict(module, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
        saved_world = int(meta["world_size"])
        ranks = [json.loads((path / f"rank-{r:05d}.json").read_text()) for r in range(saved_world)]
        loader = loader_state_for(
            [r["loader"] for r in ranks],
            int(meta["batch_size"]),
            batch_size,
            self.dist.rank,
            self.dist.world_size,
        )
        rng = ranks[self.dist.rank]["rng"] if self.dist.rank < saved_world else None
        return Restored(step=step, meta=meta, loader_state=loader, rng_state=rng)

    def drop_after(self, step: int) -> list[int]:
        """Roll back: delete the checkpoints newer than ``step`` (rank 0), return their steps."""
        later = [s for s in complete_steps(self.root) if s > step]
        if self.dist.is_main:
            for s in later:
                shutil.rmtree(checkpoint_dir(self.root, s))
        self._barrier()
        return later
