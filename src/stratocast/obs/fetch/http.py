"""Download one URL to a local directory: streamed, atomic, retried, verified.

Only the standard library (``urllib.request``) is used so fetching adds no dependency. A
download goes to a temporary file in the destination directory and is renamed into place
only once complete, so an interrupted or truncated transfer never leaves a file that looks
finished. A small sidecar (``.<name>.fetch.json``) records the server's ETag and size so a
later call can skip a file that is already complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stratocast.errors import StratocastError

__all__ = ["FetchError", "FetchRequestError", "fetch", "filename_from_url"]

_CHUNK = 1 << 20
_USER_AGENT = "stratocast-fetch/1"
# 429 and 5xx are the server saying "not now"; other 4xx will not change on retry.
_RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


class FetchRequestError(StratocastError, ValueError):
    """A download request that cannot be made as asked (a bad station id, run time, count)."""


class FetchError(StratocastError, RuntimeError):
    """A download failed for good: names the URL, the HTTP status (if any) and why."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        self.reason = reason
        where = f"HTTP {status}" if status is not None else "no HTTP status"
        super().__init__(f"fetch {url}: {where}: {reason}")


class _Retryable(Exception):
    """A failure worth another attempt (5xx, connection error, truncated body)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def filename_from_url(url: str) -> str:
    """The last path segment of ``url`` (query dropped), the default local file name."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if not name or name in {".", ".."}:
        raise FetchError(url, "URL has no file name in its path; pass filename=")
    return name


def _parse_checksum(url: str, checksum: str) -> tuple[str, str]:
    algo, sep, digest = checksum.partition(":")
    if not sep:
        algo, digest = "sha256", checksum
    algo = algo.lower()
    if algo not in hashlib.algorithms_available:
        raise FetchError(url, f"unknown checksum algorithm {algo!r} in {checksum!r}")
    return algo, digest.lower()


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.fetch.json")


def _read_sidecar(dest: Path) -> dict[str, Any]:
    try:
        meta = json.loads(_sidecar(dest).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _content_length(headers: http.client.HTTPMessage) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _open(
    opener: urllib.request.OpenerDirector, url: str, method: str, timeout: float
) -> http.client.HTTPResponse:
    """Open ``url``; 4xx raises FetchError, 5xx and connection trouble raise _Retryable."""
    # identity encoding: the bytes on disk must be the bytes the server stores (.gz stays .gz)
    req = urllib.request.Request(
        url, method=method, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    )
    try:
        resp: http.client.HTTPResponse = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code in _RETRY_STATUS:
            raise _Retryable(f"server error {err.reason}", err.code) from None
        raise FetchError(url, str(err.reason), err.code) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _Retryable(f"connection failed: {reason}") from None
    return resp


def _is_current(
    opener: urllib.request.OpenerDirector, url: str, dest: Path, timeout: float
) -> bool:
    """True when a HEAD shows ``dest`` already holds what the server has (size, ETag)."""
    try:
        resp = _open(opener, url, "HEAD", timeout)
    except FetchError as err:
        if err.status in {403, 405, 501}:  # servers that refuse HEAD: just download
            return False
        raise
    with resp:
        size = _content_length(resp.headers)
        etag = resp.headers.get("ETag")
    if size is None or size != dest.stat().st_size:
        return False
    stored = _read_sidecar(dest).get("etag")
    return etag is None or stored is None or etag == stored


def _download(
    opener: urllib.request.OpenerDirector, url: str, dest: Path, timeout: float
) -> dict[str, Any]:
    """One GET into a temp file renamed onto ``dest``; the temp file never survives a failure."""
    with _open(opener, url, "GET", timeout) as resp:
        return _stream(resp, url, dest)


def _stream(resp: http.client.HTTPResponse, url: str, dest: Path) -> dict[str, Any]:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            expected = _content_length(resp.headers)
            got = 0
            try:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    got += len(block)
            except (OSError, http.client.HTTPException) as err:
                raise _Retryable(f"connection lost after {got} bytes: {err}", resp.status) from None
            if expected is not None and got != expected:
                raise _Retryable(
                    f"truncated body: {got} of {expected} bytes (Content-Length)", resp.status
                )
            meta = {"url": url, "etag": resp.headers.get("ETag"), "size": got}
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return meta


def fetch(
    url: str,
    dest_dir: str | Path,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    session: urllib.request.OpenerDirector | None = None,
    filename: str | None = None,
    checksum: str | None = None,
    backoff: float = 1.0,
    force: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the local path.

    ``retries`` extra attempts follow 5xx/408/429 answers, connection errors and truncated
    bodies, waiting ``backoff * 2**attempt`` seconds between them; a 4xx other than those, a
    checksum mismatch or exhausted retries raise :class:`FetchError`. ``checksum`` is
    ``"algo:hexdigest"`` (bare hex means sha256): a local file that matches it is kept
    without any request. Otherwise an existing file is kept when a HEAD shows the same size
    (and ETag, when both sides know one); ``force`` always downloads (for endpoints whose
    content changes under one URL). ``session`` is a ``urllib`` opener (proxies, auth).
    """
    if retries < 0:
        raise FetchRequestError(f"retries must be >= 0, got {retries}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (filename or filename_from_url(url))
    want = _parse_checksum(url, checksum) if checksum else None
    opener = session if session is not None else urllib.request.build_opener()

    if dest.is_file() and not force and want is not None and _file_digest(dest, want[0]) == want[1]:
        return dest

    last = _Retryable("no attempt made")
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        try:
            if (
                dest.is_file()
                and not force
                and want is None
                and _is_current(opener, url, dest, timeout)
            ):
                return dest
            meta = _download(opener, url, dest, timeout)
            break
        except _Retryable as err:
            last = err
    else:
        raise FetchError(url, f"{last.reason} (gave up after {retries + 1} attempts)", last.status)

    if want is not None:
        got = _file_digest(dest, want[0])
        if got != want[1]:
            dest.unlink(missing_ok=True)
            raise FetchError(url, f"{want[0]} mismatch: expected {want[1]}, got {got}")
    with contextlib.suppress(OSError):  # the sidecar only saves a re-download later
        _sidecar(dest).write_text(json.dumps(meta))
    return dest
