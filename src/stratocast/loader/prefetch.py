"""Batches assembled in a background thread behind a bounded queue (backpressure).

The queue holds at most ``depth`` batches, so host memory stays below
depth × batch bytes whatever the consumer's speed. The loader is stateful: its state is the
sampler state *after the last batch the consumer took*, not after what was prefetched, so a
checkpoint never skips batches that were prefetched but not trained on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stratocast.loader.sampler import WindowSampler

_STOP = object()


@dataclass
class LoaderMetrics:
    batches: int = 0
    wait_s: float = 0.0  # time the consumer waited for a batch
    queue_depth_sum: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        n = max(self.batches, 1)
        return {"loader_wait_s": self.wait_s, "loader_queue_depth": self.queue_depth_sum / n}


class PrefetchLoader:
    def __init__(
        self,
        sampler: WindowSampler,
        make_batch: Callable[[np.ndarray], dict[str, np.ndarray]],
        depth: int = 4,
        pin_memory: bool = False,
    ) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.sampler = sampler
        self.make_batch = make_batch
        self.depth = depth
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.metrics = LoaderMetrics()
        self._consumed = sampler.state_dict()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()

    def _produce(self) -> None:
        try:
            for idx in self.sampler:
                if self._halt.is_set():
                    return
                arrays = self.make_batch(idx)
                batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
                if self.pin_memory:
                    batch = {k: v.pin_memory() for k, v in batch.items()}
                item = (self.sampler.state_dict(), batch)
                while not self._halt.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as err:  # surfaced in the consumer, never swallowed
            self._queue.put(err)
        finally:
            self._queue.put(_STOP)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self.close()
        self.sampler.load_state_dict(self._consumed)
        self._halt.clear()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)
        self._thread.start()
        while True:
            t0 = time.perf_counter()
            self.metrics.queue_depth_sum += self._queue.qsize()
            item = self._queue.get()
            self.metrics.wait_s += time.perf_counter() - t0
            if item is _STOP:
                return
            if isinstance(item, BaseException):
                raise item
            state, batch = item
            self._consumed = state
            self.metrics.batches += 1
            yield batch

    def close(self) -> None:
        if self._thread is not None:
            self._halt.set()
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)
            self._thread = None

    def state_dict(self) -> dict[str, int]:
        return dict(self._consumed)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.close()
        self._consumed = dict(state)
        self.sampler.load_state_dict(self._consumed)
