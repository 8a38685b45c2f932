"""Multi-level prefetch loader: sampler → reader threads → ordered ready queue → consumer.

Levels and what bounds them:

1. The sampler (:class:`~stratocast.loader.sampler.WindowSampler`) hands out batches of
   sample indices, under a lock, in its own order; each batch gets a sequence number.
2. ``readers`` threads (default 2) each take a free buffer from their own
   :class:`~stratocast.loader.pipeline_pool.BufferPool` (``depth`` buffers split between
   them) *before* taking the next batch from the sampler, fill it with ``BlockReader.read_block``
   (which releases the GIL while it decodes and copies) and normalise it: the shard reader
   fuses that into its copy (one pass, streaming stores), other readers' blocks are normalised
   in place with NumPy ufuncs (which release the GIL too). Taking the buffer first means every
   batch handed out already owns memory, so the oldest unconsumed batch can always finish: no
   deadlock, and never more than ``depth`` buffers. The consumer returns each buffer to its
   owner's pool.
3. Filled batches wait in the ready map until the consumer asks for their sequence number,
   so the consumer sees exactly the sampler's order whatever thread finished first.
4. The consumer gets tensors that view the buffer (CPU), or device tensors copied from pinned
   buffers on a separate CUDA stream (CUDA present and ``device`` a CUDA device). A buffer
   returns to the pool when the consumer asks for the next batch (CPU: the yielded tensors are
   only valid until then: copy what you keep) or when its host→device copy has completed.

Peak host memory of the batches: depth × batch bytes × k with k = 1 for the pools themselves
(at most ``depth`` buffers in all; ``pool.allocated_bytes`` says how much), plus what the
readers allocate transiently while decoding (one block per reader thread at most for the
Zarr reader); ``benchmarks/loader.py`` measures the whole k.

The loader's state is the sampler state after the last batch the *consumer* took, not after
what the threads prefetched, so a checkpoint never skips batches prefetched but not trained
on: a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from stratocast.loader.pipeline_pool import BatchBuffer, PipelineMetrics, ReaderPools
from stratocast.shards.affine import finite_or_zero


class BlockReader(Protocol):
    """A time-major array read by blocks of whole steps (the shard reader, or Zarr)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes_per_step: int

    def read_block(self, t0: int, t1: int, out: np.ndarray) -> int:
        """Fill C-contiguous ``out`` (t1 - t0, *shape[1:]) with steps [t0, t1); bytes read."""
        ...


class Sampler(Protocol):
    """What the loader needs of a sampler (:class:`~stratocast.loader.sampler.WindowSampler`).

    Iterating yields batches of sample indices from the current state on; an iterator that
    ends ends the loader's iteration too (the window sampler is endless).
    """

    batch_size: int

    def __iter__(self) -> Iterator[np.ndarray]: ...

    def state_dict(self) -> dict[str, int]: ...

    def load_state_dict(self, state: dict[str, int]) -> None: ...


@dataclass(frozen=True)
class FieldSpec:
    """One array of the batch: steps [i + lo, i + hi) of ``reader`` for each sample index i.

    ``mean``/``std`` broadcast against one step (``reader.shape[1:]``, e.g. ``(C, 1, 1)``) and
    are applied in place as (x - mean) / std. With ``mask`` set, a float32 array of that name
    marks the finite values, and non-finite values become 0 after normalising (sparse,
    padded observations).
    """

    reader: BlockReader
    offsets: tuple[int, int] = (0, 1)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    mask: str | None = None

    @property
    def steps(self) -> int:
        return self.offsets[1] - self.offsets[0]

    @property
    def fused(self) -> bool:
        """Whether the reader normalises while copying (``read_block(..., affine=)``)."""
        return bool(getattr(self.reader, "fuses_affine", False))


# Small per-batch arrays computed in the reader thread from the sample indices (e.g. clock
# features); they are allocated per batch, so keep them small.
Extras = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass
class _Ready:
    buffer: BatchBuffer | None
    size: int
    state: dict[str, int]
    extras: Mapping[str, np.ndarray]
    error: BaseException | None = None
    end: bool = False  # the sampler ran out: iteration ends here


class PipelineLoader:
    """Endless iterator of batches (dicts of tensors), in the sampler's order."""

    def __init__(
        self,
        sampler: Sampler,
        fields: Mapping[str, FieldSpec],
        *,
        depth: int = 4,
        readers: int = 2,
        extras: Extras | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.sampler = sampler
        self.fields = dict(fields)
        self.readers = readers
        self.extras = extras
        self.device = torch.device(device) if device is not None else None
        cuda = self.device is not None and self.device.type == "cuda" and torch.cuda.is_available()
        self._stream = torch.cuda.Stream(self.device) if cuda else None
        self.pool = ReaderPools(self._layout(), depth, readers, pin_memory=cuda)
        self.metrics = PipelineMetrics()
        self._consumed = sampler.state_dict()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ready: dict[int, _Ready] = {}
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []
        self._iter: Iterator[np.ndarray] | None = None
        self._next_seq = 0
        self._generation = 0

    @property
    def depth(self) -> int:
        return self.pool.depth

    def _layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        b = self.sampler.batch_size
        layout: dict[str, tuple[tuple[int, ...], np.dtype]] = {"index": ((b,), np.dtype(np.int64))}
        for name, f in self.fields.items():
            if f.steps < 1:
                raise ValueError(f"field {name!r}: offsets {f.offsets} select no step")
            if (f.mean is None) != (f.std is None):
                raise ValueError(f"field {name!r}: give both mean and std, or neither")
            normalised = f.mean is not None or f.mask is not None
            if normalised and not np.issubdtype(f.reader.dtype, np.floating):
                raise ValueError(f"field {name!r}: cannot normalise dtype {f.reader.dtype}")
            shape = (b, f.steps, *f.reader.shape[1:])
            layout[name] = (shape, np.dtype(f.reader.dtype))
            if f.mask is not None:
                layout[f.mask] = (shape, np.dtype(np.float32))
        return layout

    # -- reader threads ------------------------------------------------------------------------

    def _fill(self, buf: BatchBuffer, idx: np.ndarray) -> None:
        io_s = 0.0
        nbytes = 0
        t_fill = time.perf_counter()
        buf.arrays["index"][: len(idx)] = idx
        for name, f in self.fields.items():
            dest = buf.arrays[name]
            n_steps = f.reader.shape[0]
            for j, i in enumerate(idx.tolist()):
                t0, t1 = i + f.offsets[0], i + f.offsets[1]
                if t0 < 0 or t1 > n_steps:
                    raise IndexError(
                        f"field {name!r}: sample {i} needs steps [{t0}, {t1}) outside the "
                        f"array's {n_steps} steps"
                    )
                out = dest[j]
                fused = f.mean is not None and f.std is not None and f.fused
                t = time.perf_counter()
                if fused:
                    # the reader normalises while it copies (ShardArrayReader, one pass)
                    affine = (f.mean, f.std)
                    nbytes += f.reader.read_block(t0, t1, out, affine=affine)  # type: ignore[call-arg]
                else:
                    nbytes += f.reader.read_block(t0, t1, out)
                io_s += time.perf_counter() - t
                # Per sample, while the block is still in cache; ufuncs release the GIL.
                if f.mean is not None and f.std is not None and not fused:
                    np.subtract(out, f.mean, out=out)
                    np.divide(out, f.std, out=out)
                if f.mask is not None:
                    finite_or_zero(out, buf.arrays[f.mask][j])
        self.metrics.add_fill(io_s, time.perf_counter() - t_fill, nbytes)

    def _publish(self, seq: int, item: _Ready) -> None:
        with self._cond:
            self._ready[seq] = item
            self._cond.notify_all()

    def _work(self, reader: int) -> None:
        pool = self.pool[reader]
        while not self._halt.is_set():
            buf = pool.acquire(self._halt)
            if buf is None:
                return
            with self._lock:
                if self._halt.is_set() or self._iter is None:
                    self.pool.release(buf)
                    return
                seq = self._next_seq
                self._next_seq += 1
                try:
                    idx = next(self._iter)
                    state = self.sampler.state_dict()
                except StopIteration:
                    self.pool.release(buf)
                    self._halt.set()
                    self._ready[seq] = _Ready(None, 0, {}, {}, end=True)
                    self._cond.notify_all()
                    return
                except BaseException as err:  # surfaced in the consumer, never swallowed
                    self.pool.release(buf)
                    self._halt.set()
                    self._ready[seq] = _Ready(None, 0, {}, {}, err)
                    self._cond.notify_all()
                    return
            try:
                self._fill(buf, idx)
                extra = dict(self.extras(idx)) if self.extras is not None else {}
            except (
                BaseException
            ) as err:  # the original error, message and type, reaches the consumer
                self.pool.release(buf)
                self._publish(seq, _Ready(None, 0, {}, {}, err))
                return
            self._publish(seq, _Ready(buf, len(idx), state, extra))

    # -- consumer ------------------------------------------------------------------------------

    def _start(self) -> None:
        self.close()
        self.sampler.load_state_dict(self._consumed)
        self.pool.reset()
        self._halt.clear()
        self._ready = {}
        self._next_seq = 0
        self._generation += 1
        self._iter = iter(self.sampler)
        self.metrics.started = time.perf_counter()
        self._threads = [
            threading.Thread(target=self._work, args=(k,), name=f"loader-reader-{k}", daemon=True)
            for k in range(self.readers)
        ]
        for t in self._threads:
            t.start()

    def _take(self, seq: int) -> _Ready:
        t0 = time.perf_counter()
        with self._cond:
            self.metrics.queue_depth_sum += len(self._ready)
            while seq not in self._ready:
                if not any(t.is_alive() for t in self._threads):
                    raise RuntimeError(f"loader: reader threads stopped before batch {seq}")
                self._cond.wait(timeout=0.1)
            item = self._ready.pop(seq)
        self.metrics.wait_s += time.perf_counter() - t0
        return item

    def _to_consumer(
        self, buf: BatchBuffer, item: _Ready
    ) -> tuple[dict[str, torch.Tensor], torch.cuda.Event | None]:
        host = {k: v[: item.size] for k, v in buf.tensors.items()}
        extras = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in item.extras.items()}
        if self._stream is None or self.device is None:
            return {**host, **extras}, None
        with torch.cuda.stream(self._stream):
            moved = {k: v.to(self.device, non_blocking=True) for k, v in host.items()}
            moved.update({k: v.to(self.device) for k, v in extras.items()})
            done = torch.cuda.Event()
            done.record(self._stream)
        current = torch.cuda.current_stream(self.device)
        current.wait_event(done)  # the GPU waits, not the CPU
        for t in moved.values():
            t.record_stream(current)  # the caching allocator must not reuse it early
        return moved, done

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._start()
        generation = self._generation
        held: tuple[BatchBuffer, torch.cuda.Event | None] | None = None
        seq = 0
        try:
            while True:
                item = self._take(seq)
                seq += 1
                if held is not None:
                    buf, done = held
                    if done is not None:
                        done.synchronize()  # the copy engine has read the pinned buffer
                    self.pool.release(buf)
                    held = None
                if item.end:
                    return
                if item.error is not None or item.buffer is None:
                    raise item.error or RuntimeError(f"loader: batch {seq - 1} has no buffer")
                batch, done = self._to_consumer(item.buffer, item)
                held = (item.buffer, done)
                self._consumed = item.state
                self.metrics.batches += 1
                self.metrics.bytes_delivered += sum(
                    t.element_size() * t.nelement() for t in batch.values()
                )
                yield batch
        finally:
            # A stale iterator collected late must not stop a newer iteration's threads.
            if generation == self._generation:
                self.close()

    def close(self) -> None:
        """Stop the reader threads; the state stays at the last batch the consumer took."""
        self._halt.set()
        for t in self._threads:
            t.join()
        self._threads = []
        self._iter = None

    def state_dict(self) -> dict[str, int]:
        return dict(self._consumed)

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.close()
        self._consumed = {k: int(v) for k, v in state.items()}
        self.sampler.load_state_dict(self._consumed)

    def __enter__(self) -> PipelineLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
