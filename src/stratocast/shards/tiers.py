"""Storage tiers under the shard reader: object store → local disk cache → host memory.

* Object store: any fsspec URL (``s3://bucket/prefix``, ``http://...``, ``gs://...``);
  ``storage_options`` go to fsspec unchanged (endpoint, credentials, ...).
* Local disk cache (:class:`DiskCache`): whole shard objects, bounded in bytes, evicting the
  least recently used. A fill downloads to a temporary file and renames it into place, so a
  reader never sees half an object. It is safe for several threads and processes sharing one
  directory: a per-object lock file makes one of them download while the others wait, eviction
  is serialised by a directory lock, and every open object holds a shared ``flock`` that
  eviction must upgrade to exclusive before unlinking, so a file in use is never removed.
  Recency is the file's mtime, touched on every hit.
* Host memory: the page cache, reached through the reader's memory maps.
* Device: the prefetch pipeline's business.

The bound holds whenever the objects in use at once fit in it: eviction skips files in use,
so ``max_bytes`` should exceed (readers × ``max_open_shards``) × shard size. Downloads in flight
(temporary files) are not counted.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import fsspec

from stratocast.shards.layout import ShardError

_COPY_BLOCK = 8 << 20
_SUFFIX = ".shard"


class Location:
    """A store root: a local directory or an fsspec URL."""

    def __init__(self, root: str | Path, storage_options: dict[str, Any] | None = None) -> None:
        self.remote = isinstance(root, str) and "://" in root and not root.startswith("file://")
        if isinstance(root, str) and self.remote:
            self.fs, path = fsspec.core.url_to_fs(root, **(storage_options or {}))
            self.base = path.rstrip("/")
            self.url = root.rstrip("/")
        else:
            local = str(root).removeprefix("file://")
            self.fs = None
            self.base = str(Path(local))
            self.url = self.base

    def describe(self, key: str) -> str:
        return f"{self.url}/{key}"

    def local_path(self, key: str) -> Path:
        return Path(self.base) / key

    def read_bytes(self, key: str) -> bytes:
        try:
            if self.fs is None:
                return self.local_path(key).read_bytes()
            data: bytes = self.fs.cat_file(f"{self.base}/{key}")
            return data
        except FileNotFoundError as err:
            raise ShardError(f"{self.describe(key)} not found") from err

    def read_range(self, key: str, start: int, end: int) -> bytes:
        if self.fs is None:
            with open(self.local_path(key), "rb") as fh:
                fh.seek(start)
                return fh.read(end - start)
        data: bytes = self.fs.cat_file(f"{self.base}/{key}", start=start, end=end)
        return data

    def size(self, key: str) -> int:
        try:
            if self.fs is None:
                return self.local_path(key).stat().st_size
            return int(self.fs.size(f"{self.base}/{key}"))
        except FileNotFoundError as err:
            raise ShardError(f"shard object {self.describe(key)} not found") from err

    def download(self, key: str, dest: Any) -> int:
        """Copy the whole object into the open binary file ``dest``; return its size."""
        if self.fs is None:
            with open(self.local_path(key), "rb") as src:
                shutil.copyfileobj(src, dest, _COPY_BLOCK)
        else:
            try:
                with self.fs.open(f"{self.base}/{key}", "rb", block_size=_COPY_BLOCK) as src:
                    shutil.copyfileobj(src, dest, _COPY_BLOCK)
            except FileNotFoundError as err:
                raise ShardError(f"shard object {self.describe(key)} not found") from err
        return int(dest.tell())


@dataclass(frozen=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    bytes_fetched: int = 0  # bytes downloaded from the tier above
    evictions: int = 0


class CachedFile:
    """An object in the cache, open and protected from eviction until ``close``."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the shared lock (once any mmap of it is closed too)
            self.fd = -1


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


class DiskCache:
    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"cache max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._stats = CacheStats()
        self._stats_lock = threading.Lock()

    @property
    def stats(self) -> CacheStats:
        with self._stats_lock:
            return self._stats

    def _count(self, **delta: int) -> None:
        with self._stats_lock:
            s = self._stats
            self._stats = replace(s, **{k: getattr(s, k) + v for k, v in delta.items()})

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for p in self.directory.glob(f"*{_SUFFIX}"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue  # evicted by someone else meanwhile
            out.append((st.st_mtime, st.st_size, p))
        return out

    def nbytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def open(self, location: Location, key: str, version: str = "") -> CachedFile:
        """The object ``key`` of ``location``, fetched into the cache if absent.

        ``version`` identifies the content (the reader passes a digest of the manifest's
        checksums for that shard), so a store rebuilt at the same URL never hits stale entries.
        """
        ident = f"{location.describe(key)}\0{version}"
        name = hashlib.sha256(ident.encode()).hexdigest()[:40]
        path = self.directory / f"{name}{_SUFFIX}"
        for _ in range(8):  # each round either returns or refills a just-evicted object
            held = self._open_existing(path)
            if held is not None:
                self._count(hits=1)
                return held
            with _flock(self.directory / f".{name}.lock", fcntl.LOCK_EX):
                if path.exists():
                    continue  # another thread or process filled it while we waited
                self._fill(location, key, path)
            held = self._open_existing(path)
            if held is not None:
                return held
        raise ShardError(f"{self.directory}: {location.describe(key)} keeps being evicted")

    def _open_existing(self, path: Path) -> CachedFile | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            # Eviction may have unlinked it between open and lock: then it is not ours to use.
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                os.close(fd)
                return None
        except FileNotFoundError:
            os.close(fd)
            return None
        os.utime(path)  # recency for LRU
        return CachedFile(path, fd)

    def _fill(self, location: Location, key: str, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                size = location.download(key, fh)
            if size > self.max_bytes:
                raise ShardError(
                    f"{location.describe(key)} is {size} bytes, more than the whole disk cache "
                    f"({self.max_bytes} bytes at {self.directory}); raise max_bytes"
                )
            with _flock(self.directory / ".evict.lock", fcntl.LOCK_EX):
                self._evict(size)
                tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        self._count(misses=1, bytes_fetched=size)

    def _evict(self, incoming: int) -> None:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries) + incoming
        for _, size, p in entries:
            if total <= self.max_bytes:
                return
            try:
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                total -= size
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # in use by a reader: never removed under it
            try:
                if os.fstat(fd).st_ino == os.stat(p).st_ino:
                    p.unlink()
                    total -= size
                    self._count(evictions=1)
            except FileNotFoundError:
                total -= size
            finally:
                os.close(fd)
