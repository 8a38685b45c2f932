"""Gridded sources by URL (``http(s)://``, ``s3://``, ``gs://``, any fsspec URL), read through
the project's bounded disk cache (:class:`stratocast.shards.tiers.DiskCache`).

* A Zarr store (v2 with or without consolidated ``.zmetadata``, as ARCO-ERA5 and
  WeatherBench2 publish; or v3 ``zarr.json``) opens lazily through :class:`CachedZarrStore`, a
  read-only zarr-python 3 store whose every object — metadata and chunks — is fetched once into
  the cache and read from there: a second read of the same chunk makes no request, and the
  cache never holds more than its byte bound (least recently used objects go first).
* Any other URL is one file (NetCDF, GRIB): downloaded whole into the same cache and opened
  from the cached copy.

Freshness: every open re-reads the store's root metadata (``.zmetadata``, ``zarr.json`` or
``.zgroup``: one small GET and one HEAD) and keys every cached object by the digest of its
bytes and validator (ETag / Last-Modified / generation), so a store rebuilt, appended to or
re-consolidated at the same URL never serves stale chunks; a single file is keyed by its size
and validator the same way. Chunks rewritten in place while the root metadata object is left
untouched (possible only in an unconsolidated store) are not noticed: use a fresh
``cache_dir`` for such a store.

Failures — unreachable host, HTTP 404/403/5xx, a URL that is neither a store nor a file — raise
:class:`GriddedFileError` naming the URL (and the object key) and what failed; the storage
backend's own exception (aiohttp, botocore, google) is the ``__cause__``, never the message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype

from stratocast.cache import default_cache_dir
from stratocast.gridded.errors import GriddedFileError
from stratocast.shards.layout import ShardError
from stratocast.shards.tiers import CachedFile, DiskCache, Location

DEFAULT_CACHE_BYTES = 8 << 30
# probed in this order: v2 consolidated (the main case) first, so it costs one request
_ROOTS = ((".zmetadata", 2, True), ("zarr.json", 3, False), (".zgroup", 2, False))


def is_url(source: Path | str) -> bool:
    """A remote source: a string with a scheme other than ``file://``."""
    return isinstance(source, str) and "://" in source and not source.startswith("file://")


def default_gridded_cache() -> Path:
    return default_cache_dir() / "gridded"


class _Missing(Exception):
    """The object is not there (HTTP 404, NoSuchKey): zarr reads that as 'absent'."""


def _failure(url: str, what: str, exc: BaseException) -> GriddedFileError:
    # Backends raise their own types (aiohttp.ClientError, botocore, google.api_core) with no
    # common base; the message keeps the type name so "connection refused" and "403" stay
    # distinguishable without a traceback.
    detail = str(exc) or "(no message)"
    return GriddedFileError(url, f"{what}: {type(exc).__name__}: {detail}")


class _StoreLocation(Location):
    """A :class:`Location` whose objects are fetched in one request each (no HEAD first:
    Zarr objects are small) and whose root metadata, already read to check freshness, is
    handed to the cache without a second request."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None) -> None:
        try:
            super().__init__(url, dict(storage_options or {}))
        except (ImportError, ValueError, TypeError) as exc:  # unknown scheme, no gcsfs/s3fs
            raise _failure(url, "cannot open a filesystem for this URL", exc) from exc
        self.storage_options = dict(storage_options or {})
        self.prefetched: dict[str, bytes] = {}

    def fetch(self, key: str) -> bytes:
        """``key``'s bytes straight from the remote; :class:`_Missing` when absent."""
        assert self.fs is not None
        try:
            data: bytes = self.fs.cat_file(f"{self.base}/{key}")
        except FileNotFoundError as exc:
            raise _Missing(key) from exc
        except Exception as exc:  # any backend's error: see _failure
            raise _failure(self.url, f"cannot fetch {key}", exc) from exc
        return data

    def download(self, key: str, dest: IO[bytes]) -> int:
        data = self.prefetched.pop(key, None)
        if data is None:
            data = self.fetch(key)
        dest.write(data)
        return len(data)


def _span(size: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    """[start, stop) of an object of ``size`` bytes that zarr's byte request asks for."""
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        return byte_range.start, min(byte_range.end, size)
    if isinstance(byte_range, OffsetByteRequest):
        return byte_range.offset, size
    if isinstance(byte_range, SuffixByteRequest):
        return max(size - byte_range.suffix, 0), size
    raise ValueError(f"unexpected byte range {byte_range!r}")


class CachedZarrStore(Store):
    """A read-only Zarr store at ``url`` whose objects are read through ``cache``.

    Blocking cache fills run in worker threads, so zarr's concurrent chunk reads stay
    concurrent; the cache's file locks keep several threads and processes sharing one
    directory to one download per object.
    """

    def __init__(
        self,
        location: _StoreLocation,
        cache: DiskCache,
        *,
        version: str,
        zarr_format: int,
        consolidated: bool,
    ) -> None:
        super().__init__(read_only=True)
        self._is_open = True
        self.location = location
        self.cache = cache
        self.version = version
        self.zarr_format = zarr_format
        self.consolidated = consolidated
        self._missing: set[str] = set()  # 404s seen: sparse arrays ask for them repeatedly

    @property
    def url(self) -> str:
        return self.location.url

    # Picklable (dask's process schedulers ship the store inside the graph): the cache is
    # reopened by directory and bound on the other side, the filesystem re-made by fsspec.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["cache"] = (self.cache.directory, self.cache.max_bytes)
        state["location"] = (self.location.url, self.location.storage_options)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        directory, max_bytes = state.pop("cache")
        url, options = state.pop("location")
        self.__dict__.update(state)
        self.cache = DiskCache(directory, max_bytes)
        self.location = _StoreLocation(url, options)

    def __eq__(self, value: object) -> bool:
        return (
            isinstance(value, CachedZarrStore)
            and value.url == self.url
            and value.version == self.version
            and value.cache.directory == self.cache.directory
        )

    def __hash__(self) -> int:
        return hash((self.url, self.version))

    def __repr__(self) -> str:
        return f"CachedZarrStore({self.url!r}, cache={str(self.cache.directory)!r})"

    # ------------------------------------------------------------------ reads

    def read(self, key: str, byte_range: ByteRequest | None = None) -> bytes | None:
        """``key``'s bytes (or the requested part) from the cache; None if the store lacks it."""
        if key in self._missing:
            return None
        try:
            held: CachedFile = self.cache.open(self.location, key, self.version)
        except _Missing:
            self._missing.add(key)
            return None
        except ShardError as exc:  # an object larger than the whole cache, eviction races
            raise GriddedFileError(self.url, f"{key}: {exc}") from exc
        try:
            start, stop = _span(held.size, byte_range)
            return os.pread(held.fd, max(stop - start, 0), start)
        finally:
            held.close()

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        data = await asyncio.to_thread(self.read, key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.read, key, RangeByteRequest(0, 0)) is not None

    # ------------------------------------------------------------------ listing

    @property
    def supports_listing(self) -> bool:
        return True

    def _listing(self, prefix: str, *, recursive: bool) -> list[str]:
        """Keys (recursive) or immediate children under ``prefix``, relative to the root."""
        fs = self.location.fs
        assert fs is not None
        base = self.location.base
        where = f"{base}/{prefix}".rstrip("/")
        try:
            names = fs.find(where) if recursive else fs.ls(where, detail=False)
        except FileNotFoundError:
            return []
        except Exception as exc:  # any backend's error: see _failure
            raise _failure(self.url, f"cannot list {prefix or '/'}", exc) from exc
        out = set()
        for name in map(str, names):
            rel = name.rstrip("/").removeprefix(base).lstrip("/")
            if not rel or "?" in rel:  # an HTML listing's sort links
                continue
            out.add(rel if recursive else rel.rsplit("/", 1)[-1])
        return sorted(out)

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        for name in await asyncio.to_thread(self._listing, prefix, recursive=False):
            yield name

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for key in await asyncio.to_thread(self._listing, prefix, recursive=True):
            if key.startswith(prefix):
                yield key

    def list(self) -> AsyncIterator[str]:
        return self.list_prefix("")

    # ------------------------------------------------------------------ no writes

    @property
    def supports_writes(self) -> bool:
        return False

    @property
    def supports_deletes(self) -> bool:
        return False

    async def set(self, key: str, value: Buffer) -> None:
        raise GriddedFileError(self.url, f"read-only store: cannot write {key}")

    async def delete(self, key: str) -> None:
        raise GriddedFileError(self.url, f"read-only store: cannot delete {key}")


@dataclass
class RemoteSource:
    """What a URL turned out to be: a Zarr store, or one file now in the cache."""

    url: str
    kind: str  # "zarr" or "file"
    store: CachedZarrStore | None = None
    file: CachedFile | None = None  # held open (safe from eviction) until closed


def open_remote(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> RemoteSource:
    """Find out what ``url`` is and make it readable through the disk cache."""
    url = url.rstrip("/")
    directory = cache_dir if cache_dir is not None else default_gridded_cache()
    try:
        cache = DiskCache(directory, cache_bytes)
    except (OSError, ValueError) as exc:
        raise _failure(url, f"cannot use cache directory {directory}", exc) from exc
    location = _StoreLocation(url, storage_options)
    for name, zarr_format, consolidated in _ROOTS:
        try:
            root = location.fetch(name)
        except _Missing:
            continue
        if name == "zarr.json":
            consolidated = _v3_consolidated(url, root)
        location.prefetched[name] = root
        # content and validator: a store rewritten in place gets a new ETag/mtime even where
        # its metadata reads the same
        stamp = _stamp(_info(url, location, name)).encode()
        store = CachedZarrStore(
            location,
            cache,
            version=hashlib.sha256(root + b"\0" + stamp).hexdigest()[:16],
            zarr_format=zarr_format,
            consolidated=consolidated,
        )
        return RemoteSource(url, "zarr", store=store)
    return RemoteSource(url, "file", file=_cache_file(url, storage_options, cache))


def _v3_consolidated(url: str, root: bytes) -> bool:
    try:
        meta = json.loads(root)
    except ValueError as exc:
        raise _failure(url, "zarr.json is not JSON", exc) from exc
    return isinstance(meta, dict) and isinstance(meta.get("consolidated_metadata"), dict)


def _info(url: str, location: Location, name: str) -> dict[str, Any]:
    assert location.fs is not None
    try:
        info: dict[str, Any] = location.fs.info(f"{location.base}/{name}")
    except FileNotFoundError as exc:
        raise GriddedFileError(
            url, "not found: no file here and no Zarr store (.zmetadata, zarr.json, .zgroup)"
        ) from exc
    except Exception as exc:  # any backend's error: see _failure
        raise _failure(url, f"cannot read {name}", exc) from exc
    return info


def _stamp(info: Mapping[str, Any]) -> str:
    """Size and the backend's validator (HTTP ETag/Last-Modified, S3 ETag, GCS md5/generation,
    local mtime): what changes when an object is rewritten."""
    keys = ("ETag", "etag", "md5Hash", "generation", "Last-Modified", "LastModified", "mtime")
    return f"{info.get('size')}:" + ":".join(str(info[k]) for k in keys if info.get(k))


def _cache_file(
    url: str, storage_options: Mapping[str, Any] | None, cache: DiskCache
) -> CachedFile:
    parent, _, name = url.rpartition("/")
    if not is_url(parent):
        raise GriddedFileError(url, "no Zarr store here and no file name in the URL")
    location = _StoreLocation(parent, storage_options)
    info = _info(url, location, name)
    if info.get("type") == "directory":
        raise GriddedFileError(url, "a directory but not a Zarr store (no .zmetadata/zarr.json)")
    try:
        # plain Location.download: streamed in blocks, a file may be larger than memory
        return cache.open(Location(parent, dict(storage_options or {})), name, _stamp(info))
    except ShardError as exc:
        raise GriddedFileError(url, str(exc)) from exc
    except Exception as exc:  # any backend's error: see _failure
        raise _failure(url, "download failed", exc) from exc
