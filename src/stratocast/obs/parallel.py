"""Dask execution of per-file decoding.

``scheduler="local"`` starts a :class:`dask.distributed.LocalCluster` of ``workers`` single-
threaded processes for the run and stops it afterwards; ``"tcp://host:port"`` (or any address
``Client`` accepts) uses an existing cluster, which the run leaves running. Results come back in
task order, so the run is identical to the serial one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from distributed import Client, LocalCluster

R = TypeVar("R")


@contextmanager
def dask_client(scheduler: str, workers: int) -> Iterator[Client]:
    """A connected client for ``scheduler``; a local cluster lives exactly as long as this."""
    if scheduler == "local":
        # processes, one thread each: the readers (ecCodes) hold the GIL and are not
        # thread-safe; no dashboard: a batch job has nobody to look at it and ports collide
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    if "://" not in scheduler:
        raise ValueError(
            f"scheduler must be 'local' or a cluster address such as 'tcp://host:8786', "
            f"got {scheduler!r}"
        )
    with Client(scheduler) as client:
        yield client


def map_ordered(
    client: Client, fn: Callable[..., R], calls: Iterable[tuple[Any, ...]], shared: Any
) -> Iterator[R]:
    """Yield ``fn(*args, shared)`` for each ``args`` of ``calls``, in order.

    ``shared`` (the station catalogue) is scattered once instead of pickled into every task;
    ``pure=False`` skips hashing arguments into task keys, which would cost more than it saves
    and would merge two tasks for the same path.
    """
    shared_f = client.scatter(shared, broadcast=True) if shared is not None else None
    futures = [client.submit(fn, *args, shared_f, pure=False) for args in calls]
    try:
        for f in futures:
            yield f.result()
    finally:
        client.cancel(futures)
