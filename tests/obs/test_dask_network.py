"""The local Dask cluster's network surface: loopback only, no dashboard port, TLS comms.

Dask messages are pickles, so whoever can talk to a comm port can run code in the workers;
the cluster must therefore listen on 127.0.0.1 only and refuse peers without its certificate.
"""

from __future__ import annotations

import asyncio

import psutil
import pytest
from distributed.comm import CommClosedError, connect

from stratocast.obs.parallel import dask_client, map_ordered


def _listening() -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket of this process and its children."""
    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:  # a child that just exited
            continue
        found += [(proc.pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == "LISTEN"]
    return sorted(found)


def _add(a: int, shared: int) -> int:
    return a + shared


def test_local_cluster_listens_on_loopback_only_without_a_dashboard() -> None:
    before = set(_listening())
    with dask_client("local", 2) as client:
        assert list(map_ordered(client, _add, [(1,), (2,)], 10)) == [11, 12]
        opened = set(_listening()) - before
        address = str(client.scheduler_info()["address"])
    assert address.startswith("tls://127.0.0.1:"), address
    assert opened, "the check saw no sockets at all"
    assert {ip for _, ip, _ in opened} == {"127.0.0.1"}, opened
    assert 8787 not in {port for _, _, port in opened}, opened
    # scheduler comm + its HTTP server; per worker process: nanny comm, worker comm, worker
    # HTTP server. Nothing else.
    assert len(opened) <= 2 + 3 * 2, opened
    assert int(address.rsplit(":", 1)[1]) in {port for _, _, port in opened}


def test_local_cluster_refuses_a_peer_without_its_certificate() -> None:
    with dask_client("local", 1) as client:
        port = str(client.scheduler_info()["address"]).rsplit(":", 1)[1]

        async def plain_tcp() -> None:
            comm = await connect(f"tcp://127.0.0.1:{port}", timeout=5)
            await comm.write({"op": "identity"})
            await comm.read()

        # the TLS listener drops a plain-TCP peer during the handshake
        with pytest.raises(CommClosedError):
            asyncio.run(plain_tcp())
