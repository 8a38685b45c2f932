"""Preallocated batch buffers and the loader's counters.

The pools are the loader's whole batch memory: each reader thread has its own
:class:`BufferPool` (``depth`` buffers split between the readers), at most that many buffers
are ever allocated, and a reader that finds none free waits (backpressure) instead of
allocating another. So the batch memory is bounded by depth × batch bytes whatever the
consumer's speed. Own pools: a reader allocates and first touches its buffers itself and is
the only thread that ever fills them, so on a multi-socket host they stay on the reader's
memory node, and readers never contend for a shared free list.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

# (shape, dtype) of every array of one batch, by name
BatchLayout = Mapping[str, tuple[tuple[int, ...], np.dtype]]


def layout_nbytes(layout: BatchLayout) -> int:
    return sum(int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in layout.values())


@dataclass
class BatchBuffer:
    """One batch's arrays; with pinned memory the tensors share the arrays' memory."""

    slot: int
    arrays: dict[str, np.ndarray]
    tensors: dict[str, torch.Tensor]
    owner: int = 0  # the reader whose pool it belongs to (the consumer returns it there)


class BufferPool:
    def __init__(
        self, layout: BatchLayout, depth: int, pin_memory: bool = False, owner: int = 0
    ) -> None:
        if depth < 1:
            raise ValueError(f"buffer pool depth must be >= 1, got {depth}")
        self.owner = owner
        self.layout = dict(layout)
        self.depth = depth
        self.pin_memory = pin_memory
        self.batch_nbytes = layout_nbytes(self.layout)
        self.buffers: list[BatchBuffer] = []
        self._free: queue.Queue[int] = queue.Queue()
        self._lock = threading.Lock()
        self._in_use = 0
        self.peak_in_use = 0

    @property
    def allocated(self) -> int:
        return len(self.buffers)

    @property
    def allocated_bytes(self) -> int:
        return self.allocated * self.batch_nbytes

    def _allocate(self) -> BatchBuffer:
        tensors: dict[str, torch.Tensor] = {}
        arrays: dict[str, np.ndarray] = {}
        for name, (shape, dt) in self.layout.items():
            # torch owns the memory (pinned when asked) and NumPy views it, so readers fill it
            # through NumPy while the copy engine reads it through the tensor.
            t = torch.empty(
                shape, dtype=torch.from_numpy(np.empty(0, dt)).dtype, pin_memory=self.pin_memory
            )
            tensors[name] = t
            arrays[name] = t.numpy()
        buf = BatchBuffer(len(self.buffers), arrays, tensors, self.owner)
        self.buffers.append(buf)
        return buf

    def acquire(self, halt: threading.Event, poll_s: float = 0.05) -> BatchBuffer | None:
        """A free buffer, allocating while fewer than ``depth`` exist; None once ``halt`` is set."""
        while not halt.is_set():
            with self._lock:
                buf: BatchBuffer | None
                try:
                    buf = self.buffers[self._free.get_nowait()]
                except queue.Empty:
                    buf = self._allocate() if len(self.buffers) < self.depth else None
                if buf is not None:
                    self._in_use += 1
                    self.peak_in_use = max(self.peak_in_use, self._in_use)
                    return buf
            try:
                slot = self._free.get(timeout=poll_s)
            except queue.Empty:
                continue
            with self._lock:
                self._in_use += 1
                self.peak_in_use = max(self.peak_in_use, self._in_use)
            return self.buffers[slot]
        return None

    def release(self, buf: BatchBuffer) -> None:
        with self._lock:
            self._in_use -= 1
        self._free.put(buf.slot)

    def reset(self) -> None:
        """Mark every buffer free (after the threads that held them have stopped)."""
        with self._lock:
            self._free = queue.Queue()
            for b in self.buffers:
                self._free.put(b.slot)
            self._in_use = 0


class ReaderPools:
    """One :class:`BufferPool` per reader thread; ``depth`` buffers in all, split evenly."""

    def __init__(
        self, layout: BatchLayout, depth: int, readers: int, pin_memory: bool = False
    ) -> None:
        if not 1 <= readers <= depth:
            raise ValueError(f"need 1 <= readers <= depth, got readers={readers}, depth={depth}")
        self.depth = depth
        self.pin_memory = pin_memory
        self.pools = [
            BufferPool(layout, depth // readers + (k < depth % readers), pin_memory, owner=k)
            for k in range(readers)
        ]
        self.batch_nbytes = self.pools[0].batch_nbytes

    def __getitem__(self, reader: int) -> BufferPool:
        return self.pools[reader]

    def release(self, buf: BatchBuffer) -> None:
        self.pools[buf.owner].release(buf)

    def reset(self) -> None:
        for p in self.pools:
            p.reset()

    @property
    def allocated(self) -> int:
        return sum(p.allocated for p in self.pools)

    @property
    def allocated_bytes(self) -> int:
        return self.allocated * self.batch_nbytes

    @property
    def peak_in_use(self) -> int:
        """Sum of the pools' peaks: an upper bound of the buffers in use at any one time."""
        return sum(p.peak_in_use for p in self.pools)


@dataclass
class PipelineMetrics:
    """Counters of one loader; ``snapshot`` is what the training metrics sink logs."""

    batches: int = 0
    wait_s: float = 0.0  # time the consumer waited for a batch
    queue_depth_sum: int = 0  # ready batches seen by the consumer when it asked, summed
    io_wait_s: float = 0.0  # time reader threads spent inside read_block, all threads summed
    fill_s: float = 0.0  # time reader threads spent filling batches (I/O + normalisation)
    bytes_read: int = 0  # bytes read from storage, as the readers report them
    bytes_delivered: int = 0  # batch bytes handed to the consumer
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_fill(self, io_s: float, fill_s: float, nbytes: int) -> None:
        with self._lock:
            self.io_wait_s += io_s
            self.fill_s += fill_s
            self.bytes_read += nbytes

    def snapshot(self) -> dict[str, float]:
        n = max(self.batches, 1)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return {
            "loader_batches": float(self.batches),
            "loader_wait_s": self.wait_s,
            "loader_queue_depth": self.queue_depth_sum / n,
            "loader_io_wait_s": self.io_wait_s,
            "loader_fill_s": self.fill_s,
            "loader_bytes_per_s": self.bytes_delivered / elapsed,
            "loader_read_bytes_per_s": self.bytes_read / elapsed,
        }
