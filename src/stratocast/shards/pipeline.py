"""Reading the gridded target for the shard build: whole blocks, batched, pipelined.

:func:`read_block` returns ``shard_steps`` time steps of every channel as one float32 array
``(time, channel, lat, lon)``. A lazy (dask) source built by xarray reads one source chunk per
dask task: with ARCO-ERA5's time chunk of 1 that is one zarr call and a handful of scheduler
tasks per time step and variable, and the per-call overheads (zarr's event-loop round trip,
dask's scheduling) cost several times what decoding the chunk does. So the block's graph is
taken apart before it runs: the tasks that read the source (``dask.array.core.getter`` on the
backend array) are grouped by backend array and by their extent along every axis but the
first, and each group whose first-axis extents are contiguous is read with **one** call over
their union; every task then gets its own slice of that read, and the rest of the graph
(xarray's indexing, region cut, unit scaling, regridding) runs unchanged, in this thread, in
dependency order. Same chunks, same bytes, same operations: the result is identical to
``.load()``; only the number of calls changes.

Memory: at most ``read_budget`` bytes of source chunks are read at once (the block is halved
along time until its reads fit, down to one step), so the working set is bounded by the block
plus ``max(read_budget, one step's source chunks)``, whatever the length of the time axis.

Anything that does not fit this pattern (a source that is not dask-backed, fewer than
``MIN_CHUNKS`` time chunks per block, a task with other arguments, a dask without these
internals) is computed the ordinary way: one ``.load()`` of the block.

:func:`pipelined` runs the build's loop: the next block is read in a background thread
(:func:`read_ahead`) while the current one is checked in the caller's thread and compressed
and written by two writer threads (zstd and crc32c release the GIL), whole shards each.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from stratocast.shards.layout import ShardError

READ_BUDGET = 256 << 20  # bytes of source chunks read in one batched call
MIN_CHUNKS = 8  # time chunks per block and channel from which reads are batched
_DIMS = ("time", "lat", "lon")
_INTS = frozenset({int, np.int64, np.int32, np.intp})  # chunk bounds in a dask graph

T = TypeVar("T")
R = TypeVar("R")


def read_block(
    truth: xr.Dataset,
    channels: Sequence[str],
    lo: int,
    hi: int,
    *,
    read_budget: int = READ_BUDGET,
) -> np.ndarray:
    """Time steps ``lo..hi-1`` of ``channels`` as float32 ``(time, channel, lat, lon)``."""
    n_lat, n_lon = truth.sizes["lat"], truth.sizes["lon"]
    block = np.empty((hi - lo, len(channels), n_lat, n_lon), dtype=np.float32)
    _fill(truth, list(channels), lo, hi, block, read_budget)
    return block


def _fill(
    truth: xr.Dataset,
    channels: list[str],
    lo: int,
    hi: int,
    block: np.ndarray,
    budget: int,
) -> None:
    """Fill ``block`` (steps ``lo..hi-1``) from ``truth``, halving the span while its source
    reads exceed ``budget``."""
    part = truth[channels].isel(time=slice(lo, hi))
    fields = [_ordered(part[c]) for c in channels]
    plan = _batched_plan([f.data for f in fields]) if _worth_batching(fields) else None
    if plan is None:
        # The ordinary path: one load for all channels (a lazy source then fetches shared
        # chunks once, as dask merges the channels' graphs).
        loaded = part.load()
        for k, c in enumerate(channels):
            _put(block, k, _ordered(loaded[c]).values, c)
        return
    if plan.nbytes > budget and hi - lo > 1:
        mid = lo + (hi - lo) // 2
        _fill(truth, channels, lo, mid, block[: mid - lo], budget)
        _fill(truth, channels, mid, hi, block[mid - lo :], budget)
        return
    for k, values in enumerate(plan.run()):
        _put(block, k, values, channels[k])


def _ordered(da: xr.DataArray) -> xr.DataArray:
    return da if da.dims == _DIMS else da.transpose(*_DIMS)


def _worth_batching(fields: Sequence[xr.DataArray]) -> bool:
    """Batching pays where a block spans many source chunks along time (ARCO-ERA5: one per
    step); a source of daily files gives a handful per block, already few calls, and taking
    the graph apart would cost more than it saves. ``.data`` of a variable that is not
    dask-backed would load it, so ``chunks`` is asked first."""
    return all(f.chunks is not None and len(f.chunks[0]) >= MIN_CHUNKS for f in fields)


def _put(block: np.ndarray, k: int, values: np.ndarray, channel: str) -> None:
    if values.shape != block.shape[:1] + block.shape[2:]:
        raise ShardError(
            f"target channel {channel!r}: a block of shape {values.shape}, expected "
            f"{block.shape[:1] + block.shape[2:]} (time, lat, lon)"
        )
    block[:, k] = values  # the float32 cast of astype(np.float32), without a second copy


class _Plan:
    """A culled dask graph whose source reads are grouped into batched calls."""

    def __init__(self, dsk: dict[Any, Any], keys: list[Any], groups: list[_Group]) -> None:
        self.dsk, self.keys, self.groups = dsk, keys, groups

    @property
    def nbytes(self) -> int:
        return sum(g.nbytes for g in self.groups)

    def run(self) -> list[np.ndarray]:
        from dask._task_spec import DataNode
        from dask.array.core import concatenate3, getter

        dsk = dict(self.dsk)
        for g in self.groups:
            union = getter(g.source, g.union)
            for key, rel in g.parts:
                dsk[key] = DataNode(key, union[rel])
        done = _execute(dsk, set(flat_keys(self.keys)))
        return [np.asarray(concatenate3(_nested(k, done))) for k in self.keys]


def flat_keys(keys: Any) -> Iterator[Any]:
    if isinstance(keys, list):
        for k in keys:
            yield from flat_keys(k)
    else:
        yield keys


def _nested(keys: Any, done: dict[Any, Any]) -> Any:
    return [_nested(k, done) for k in keys] if isinstance(keys, list) else done[keys]


def _execute(dsk: dict[Any, Any], wanted: set[Any]) -> dict[Any, Any]:
    """Run the task-spec graph ``dsk`` in dependency order in this thread; return the values
    of ``wanted``. What is left after source reads is tens of thousands of tiny numpy
    indexing tasks at most, for which dask's local scheduler costs far more than the work
    (its per-task bookkeeping and graph ordering): a plain topological loop, dropping each
    value once its last dependent ran."""
    deps = {k: set(node.dependencies) for k, node in dsk.items()}
    users: dict[Any, list[Any]] = {k: [] for k in dsk}
    for k, ds in deps.items():
        for d in ds:
            users[d].append(k)
    waiting = {k: len(ds) for k, ds in deps.items()}
    left = {k: len(u) for k, u in users.items()}
    ready = [k for k, n in waiting.items() if n == 0]
    cache: dict[Any, Any] = {}
    while ready:
        key = ready.pop()
        cache[key] = dsk[key](cache)
        for d in deps[key]:
            left[d] -= 1
            if left[d] == 0 and d not in wanted:
                del cache[d]
        for u in users[key]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    missing = wanted - cache.keys()
    if missing:
        raise ShardError(f"internal: {len(missing)} graph outputs were never computed")
    return {k: cache[k] for k in wanted}


class _Group:
    """Source reads of one backend array that differ only along the first axis."""

    def __init__(self, source: Any, rest: tuple[slice, ...], itemsize: int) -> None:
        self.source, self.rest, self.itemsize = source, rest, itemsize
        self.reads: list[tuple[Any, slice]] = []

    def add(self, key: Any, first: slice) -> None:
        self.reads.append((key, first))

    def contiguous(self) -> bool:
        spans = sorted((s.start, s.stop) for _, s in self.reads)
        return all(a[1] == b[0] for a, b in itertools.pairwise(spans))

    @property
    def union(self) -> tuple[slice, ...]:
        start = min(s.start for _, s in self.reads)
        stop = max(s.stop for _, s in self.reads)
        return (slice(start, stop), *self.rest)

    @property
    def parts(self) -> Iterator[tuple[Any, tuple[slice, ...]]]:
        start = self.union[0].start
        rest = tuple(slice(None) for _ in self.rest)
        for key, s in self.reads:
            yield key, (slice(s.start - start, s.stop - start), *rest)

    @property
    def nbytes(self) -> int:
        first = self.union[0]
        extent = [first.stop - first.start, *(s.stop - s.start for s in self.rest)]
        return math.prod(extent) * self.itemsize


def _plain_slices(index: Any) -> tuple[slice, ...] | None:
    """``index`` as a tuple of step-1 slices with known bounds, else None."""
    if not isinstance(index, tuple) or not index:
        return None
    for s in index:
        if not isinstance(s, slice) or s.step not in (None, 1):
            return None
        if type(s.start) not in _INTS or type(s.stop) not in _INTS:
            return None
    return tuple(slice(int(s.start), int(s.stop)) for s in index)


def _batched_plan(arrays: Sequence[Any]) -> _Plan | None:
    try:
        import dask.array as da
        from dask._task_spec import DataNode, GraphNode, Task, TaskRef, convert_legacy_graph
        from dask.array.core import getter
        from dask.core import flatten
        from dask.highlevelgraph import HighLevelGraph
        from dask.optimization import cull
        from dask.utils import ensure_dict
    except ImportError:  # a dask without the task-spec internals: the ordinary path
        return None
    if not arrays or not all(isinstance(a, da.Array) for a in arrays):
        return None
    keys = [a.__dask_keys__() for a in arrays]
    dsk: dict[Any, Any] = {}
    for a, k in zip(arrays, keys, strict=True):
        # The lazy target's graph spans the whole time axis: cull it layer by layer to this
        # block before materialising it, so the cost is the block's, not the axis's.
        g = a.__dask_graph__()
        if isinstance(g, HighLevelGraph):
            g = g.cull(set(flatten(k)))
        dsk.update(ensure_dict(g))
    dsk, _ = cull(dsk, list(flatten(keys)))
    # Layers may still hold legacy tuple tasks and raw values (the backend arrays): as task
    # specs, as dask's own schedulers see them.
    dsk = convert_legacy_graph(dsk)
    groups: dict[tuple[Any, tuple[tuple[int, int], ...]], _Group] = {}
    for key, task in dsk.items():
        if not (isinstance(task, Task) and task.func is getter and not task.kwargs):
            continue
        if len(task.args) != 2 or not isinstance(task.args[0], TaskRef):
            continue
        if not isinstance(task.args[1], DataNode):
            continue
        index = _plain_slices(task.args[1].value)
        source = dsk.get(task.args[0].key)
        if isinstance(source, DataNode):
            source = source.value
        if index is None or source is None or isinstance(source, GraphNode):
            continue
        itemsize = np.dtype(getattr(source, "dtype", np.float64)).itemsize
        gk = (task.args[0].key, tuple((s.start, s.stop) for s in index[1:]))
        if gk not in groups:
            groups[gk] = _Group(source, index[1:], itemsize)
        groups[gk].add(key, index[0])
    usable = [g for g in groups.values() if len(g.reads) > 1 and g.contiguous()]
    if not usable:
        return None
    return _Plan(dsk, keys, usable)


# ---------------------------------------------------------------------------- pipelining


WRITERS = 2  # shards compressed and written at once (zstd and crc32c release the GIL)


def pipelined(
    items: Sequence[T],
    read: Callable[[T], R],
    check: Callable[[T, R], None],
    write: Callable[[T, R], object],
    writers: int = WRITERS,
) -> None:
    """For each item in order: ``read`` (one item ahead, in a thread), ``check`` (in the
    caller's thread: an error stops everything before that item is written), then ``write``
    in a pool of ``writers`` threads, at most ``writers`` writes in flight.

    Items must be independent to write (whole shards are: each has its own object and
    checksum record); the first error of any stage is raised once the writes already started
    have finished, so no shard is left half-written by this process."""
    in_flight: collections.deque[Future[object]] = collections.deque()
    # closing: on an error the reader thread stops now, not when the traceback is freed
    blocks = contextlib.closing(read_ahead(read, items))
    pool = ThreadPoolExecutor(max_workers=max(1, writers), thread_name_prefix="shards-write")
    with pool, blocks as ahead:
        try:
            for item, value in ahead:
                check(item, value)
                in_flight.append(pool.submit(write, item, value))
                while len(in_flight) >= max(1, writers):
                    in_flight.popleft().result()
            while in_flight:
                in_flight.popleft().result()
        finally:
            for f in in_flight:
                f.cancel()  # not started yet: never begun; the rest finish in the shutdown


# ---------------------------------------------------------------------------- read-ahead


_DONE = object()


def read_ahead(read: Callable[[T], R], items: Sequence[T]) -> Generator[tuple[T, R], None, None]:
    """``(item, read(item))`` in order, ``read`` running one item ahead in a thread.

    At most two results exist at a time besides the one the consumer holds (one waiting in
    the queue, one being read). An error in ``read`` is raised to the consumer at the item
    it belongs to; when the consumer stops early, the thread stops after its current read."""
    if len(items) <= 1:
        for item in items:
            yield item, read(item)
        return
    results: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def work() -> None:
        for item in items:
            if stop.is_set():
                return
            try:
                out: Any = (item, read(item), None)
            except BaseException as exc:  # handed to the consumer, which raises it
                out = (item, None, exc)
            while not stop.is_set():
                try:
                    results.put(out, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if out[2] is not None:
                return
        results.put(_DONE)

    thread = threading.Thread(target=work, name="shards-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            got = results.get()
            if got is _DONE:
                return
            item, value, exc = got
            if exc is not None:
                raise exc
            yield item, value
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                results.get(timeout=0.1)
        thread.join()
