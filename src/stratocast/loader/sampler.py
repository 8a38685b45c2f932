"""Seeded, rank-aware, resumable sampling of window indices.

Every rank draws the same permutation for an epoch (seed + epoch) and takes a disjoint strided
slice of it, so ranks never see the same sample and the order depends only on
(seed, epoch, world size). The state is two integers, so a resumed run replays exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stratocast.errors import StratocastError


class SamplerError(StratocastError, ValueError):
    """The configured period and batch cannot make a batch (the message says which to change)."""


@dataclass
class SamplerState:
    epoch: int = 0
    position: int = 0  # batches already served in this epoch, on this rank


class WindowSampler:
    def __init__(
        self,
        indices: np.ndarray,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if len(indices) < batch_size * world_size:
            raise SamplerError(
                f"{len(indices)} samples cannot fill one batch of {batch_size} on each of "
                f"{world_size} ranks; use a longer period or a smaller batch"
            )
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.state = SamplerState()

    @property
    def batches_per_epoch(self) -> int:
        # Drop the ragged tail so every rank runs the same number of steps (no DDP hang).
        return len(self.indices) // (self.batch_size * self.world_size)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        order = self.indices
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(order))
            order = order[perm]
        n = self.batches_per_epoch * self.batch_size * self.world_size
        mine = order[:n][self.rank :: self.world_size]
        return [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Endless: epochs follow each other, starting where the state says."""
        while True:
            batches = self.epoch_batches(self.state.epoch)
            while self.state.position < len(batches):
                b = batches[self.state.position]
                self.state.position += 1
                yield b
            self.state = SamplerState(self.state.epoch + 1, 0)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.state.epoch, "position": self.state.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.state = SamplerState(int(state["epoch"]), int(state["position"]))
