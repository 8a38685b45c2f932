"""A real S3-compatible server on 127.0.0.1 for tests (moto's threaded server).

Tests of the object-store paths (ingest by URL, the shard tiers) talk to it through s3fs and
boto3 exactly as they would to a bucket in the cloud; nothing is mocked inside the process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CREDENTIALS = {"key": "testing", "secret": "testing"}
_REGION = "us-east-1"


@contextmanager
def local_s3(bucket: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """Start the server, create ``bucket``; yield (fsspec storage_options, boto3 client).

    Needs the dev extras (moto[server], boto3, s3fs); callers skip when they are absent.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        options = {
            **_CREDENTIALS,
            "endpoint_url": endpoint,
            "client_kwargs": {"region_name": _REGION},
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=_CREDENTIALS["key"],
            aws_secret_access_key=_CREDENTIALS["secret"],
            region_name=_REGION,
        )
        client.create_bucket(Bucket=bucket)
        yield options, client
    finally:
        server.stop()
