"""A real HTTP server on 127.0.0.1 serving a directory, for tests of anything read by URL.

It answers GET and HEAD (fsspec's HTTP filesystem asks HEAD for sizes) and single byte-range
requests (``Range: bytes=a-b``, ``a-``, ``-n``: 206 with ``Content-Range``; 416 past the end)
like an object store, with an ETag and Last-Modified that change whenever a file is
rewritten, and logs every request so a test can assert how many reached it (a
cache hit must not). Directories get the standard library's HTML listing, which fsspec's HTTP
``ls`` parses.

    with serve_directory(tmp_path) as srv:
        url = f"{srv.url}/store.zarr"
        ...
        assert srv.count("GET", prefix="/store.zarr/t2m/") == 0
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ServedDirectory:
    """A directory being served: its base URL and the log of requests that reached it."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        self._log: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self._log.append((method, path))

    @property
    def requests(self) -> list[tuple[str, str]]:
        """A copy of the log so far: (method, URL path without query), in arrival order."""
        with self._lock:
            return list(self._log)

    def count(self, method: str | None = None, *, prefix: str = "") -> int:
        """Requests so far with this method (any when None) whose path starts with prefix."""
        return sum(
            1 for m, p in self.requests if (method is None or m == method) and p.startswith(prefix)
        )

    def clear(self) -> None:
        with self._lock:
            self._log.clear()


def _handler(served: ServedDirectory) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(served.root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, *, body: bool) -> None:
            served.record(self.command, unquote(self.path.split("?", 1)[0]))
            local = Path(self.translate_path(self.path))
            if not local.is_file():
                # directories (listing, redirect to the slash form) and 404s as the stdlib does
                super().do_GET() if body else super().do_HEAD()
                return
            stat = local.stat()
            size = stat.st_size
            span = self._range(size)
            if span is None:
                return  # 416 already sent
            start, end = span
            partial = (start, end) != (0, size)
            self.send_response(206 if partial else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            # validators as object stores give them: change whenever the file is rewritten
            self.send_header("ETag", f'"{stat.st_mtime_ns:x}-{size:x}"')
            self.send_header("Last-Modified", self.date_time_string(int(stat.st_mtime)))
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if body:
                with local.open("rb") as fh:
                    fh.seek(start)
                    _copy(fh, self.wfile, end - start)

        def _range(self, size: int) -> tuple[int, int] | None:
            """[start, end) asked for by a single-range header; the whole file otherwise."""
            header = self.headers.get("Range")
            match = _RANGE.match(header.strip()) if header else None
            if match is None:  # none, or a multi-range: answer with the whole file (allowed)
                return 0, size
            first, last = match.groups()
            if first == "" and last == "":
                return 0, size
            if first == "":  # suffix: the last n bytes
                start, end = max(size - int(last), 0), size
            else:
                start = int(first)
                end = min(int(last) + 1, size) if last else size
            if start >= size or start >= end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return start, end

    return Handler


def _copy(src: Any, dst: Any, n: int) -> None:
    while n > 0:
        block = src.read(min(n, 1 << 20))
        if not block:
            return
        dst.write(block)
        n -= len(block)


@contextmanager
def serve_directory(root: Path) -> Iterator[ServedDirectory]:
    """Serve ``root`` on an ephemeral port of 127.0.0.1 until the block ends."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    served = ServedDirectory(Path(root), int(httpd.server_address[1]))
    httpd.RequestHandlerClass = _handler(served)
    # daemon: a test that fails inside the block must not leave the interpreter hanging
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


__all__ = ["ServedDirectory", "serve_directory"]
