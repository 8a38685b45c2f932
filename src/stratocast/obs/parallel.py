"""Dask execution of per-file decoding.

``scheduler="local"`` starts a :class:`dask.distributed.LocalCluster` of ``workers`` single-
threaded processes for the run (loopback only, TLS, no dashboard: :func:`local_cluster`) and
stops it afterwards; ``"tcp://host:port"`` (or any address
``Client`` accepts) uses an existing cluster, which the run leaves running. Results come back in
task order, so the run is identical to the serial one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dask
from distributed import Client, LocalCluster
from distributed.security import Security

from stratocast.errors import StratocastError

R = TypeVar("R")


class SchedulerError(StratocastError, ValueError):
    """``ingest.scheduler`` names no cluster."""


# The only HTTP route a run needs (liveness); the default scheduler routes add the bokeh
# dashboard, task/worker JSON, call stacks, Prometheus metrics and a proxy.
_HTTP_ROUTES = ["distributed.http.health"]


@contextmanager
def local_cluster(workers: int) -> Iterator[LocalCluster]:
    """A loopback-only, mutually authenticated Dask cluster for this run.

    ``workers`` single-threaded processes: the readers (ecCodes) hold the GIL and are not
    thread-safe. Dask always starts an HTTP server in the scheduler (``dashboard_address=None``
    still binds 127.0.0.1:8787, and ``False`` binds 0.0.0.0:8787); it gets an ephemeral
    loopback port and the health route only. Every comm port (scheduler, each nanny, each
    worker) is on 127.0.0.1 and speaks TLS with a certificate made for this run: Dask messages
    are pickles, so a plain TCP port would let any local user run code as us.
    """
    routes = {"distributed.scheduler.http.routes": _HTTP_ROUTES}
    routes["distributed.worker.http.routes"] = _HTTP_ROUTES
    with dask.config.set(routes):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            protocol="tls://",
            security=Security.temporary(),
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address=None,
        )
    try:
        yield cluster
    finally:
        cluster.close()


@contextmanager
def dask_client(scheduler: str, workers: int) -> Iterator[Client]:
    """A connected client for ``scheduler``; a local cluster lives exactly as long as this."""
    if scheduler == "local":
        with local_cluster(workers) as cluster, Client(cluster) as client:
            yield client
        return
    if "://" not in scheduler:
        raise SchedulerError(
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
