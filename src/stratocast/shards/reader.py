"""Fast read path over layout-v2 shards: whole time blocks decoded straight into the caller's
buffer.

``ShardArrayReader(root, name).read_block(t0, t1, out)`` fills ``out`` with time steps
``[t0, t1)`` of every other dimension. It parses each shard's Zarr v3 index (``(offset,
nbytes)`` uint64 pairs and their crc32c at the end of the object) itself and

* uncompressed chunks: copies them out of a memory map of the shard object (kept open and
  reused, ``MADV_WILLNEED`` on open): one memcpy per chunk, in NumPy with the GIL released, or
  with ``affine`` one normalising pass with streaming stores (:mod:`stratocast.shards.affine`).
  (``MADV_POPULATE_READ`` per chunk and ``MAP_POPULATE`` were tried: no gain over the kernel's
  fault-around on first touch);
* zstd chunks: decodes with ``numcodecs.zstd.Zstd.decode(src, out=dst)``, which writes into the
  destination and releases the GIL (2 threads decode ≈ 2× one thread); only chunks that do not
  map onto a contiguous piece of ``out`` (an edge chunk, a partial time range, a channel group
  or region tile) go through a scratch buffer.

Checksums: each stored chunk's crc32c (google-crc32c, GIL released above 1 MB) is compared with
the manifest before decoding, the first time this reader touches the chunk of a given shard
file (the record survives the LRU closing and reopening the shard, keyed by device, inode,
mtime and size, so a replaced file is checked again; bytes fetched by range from an object
store without a disk cache are checked on every read). A mismatch, a chunk the store lacks
although the manifest recorded it, a shard object of the wrong size or with a bad index raise
:class:`ShardChecksumError` naming the array, the shard object and the chunk — never fill
values. ``verify=False`` skips the crc (sizes and the index checksum are still checked).

Tiers: a local ``root`` is mapped directly; an fsspec URL (``s3://...``) with a
:class:`~stratocast.shards.tiers.DiskCache` fetches whole shard objects into the cache and maps
them there; without a cache, chunks are fetched by byte range.

Concurrency: ``read_block`` may be called from several threads at once. Open shards are kept in
an LRU (``max_open_shards``: default up to 512 local maps, fewer when the process may open
few files, or 4 with a disk cache since open shards pin cache entries) with reference counts,
so a shard is never unmapped while a thread reads it, and a disk-cache entry stays locked
against eviction while it is open.

Memory accounting: pages of mapped shards count in the process's RSS as file-backed (RssFile,
reclaimable page cache), not anonymous memory; measure loader memory as RssAnon / USS.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import resource
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import google_crc32c
import numpy as np
from numcodecs.zstd import Zstd

from stratocast.shards.affine import Affine, apply_affine
from stratocast.shards.layout import (
    EMPTY_CHUNK,
    MANIFEST,
    MAX_UINT64,
    ArrayManifest,
    ShardChecksumError,
    ShardError,
    check_version,
    parse_arrays,
)
from stratocast.shards.tiers import CachedFile, DiskCache, Location

__all__ = ["ShardArrayReader", "ShardChecksumError"]


def _local_open_limit() -> int:
    """Default open-shard limit for local maps: each map costs only address space and one file
    descriptor (Python's mmap keeps a duplicate), and a random-access epoch over more shards
    than the LRU holds re-opens one per read (measured: a third of the time of an observation
    store of 125 shards with a limit of 64). An eighth of the descriptor limit, 64..512."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return 512
    return max(64, min(512, soft // 8))


class _Shard:
    """One open shard object: its parsed index and a way to its bytes."""

    def __init__(
        self,
        label: str,
        index: list[list[int]],
        read: Callable[[int, int], np.ndarray],
        release: Callable[[], None],
        verified: np.ndarray,
    ) -> None:
        self.label = label
        self.index = index  # [offset, nbytes] per chunk, C order of the shard's chunk grid
        self.read = read  # bytes [a, b) of the object as uint8 (a memory-map view if local)
        self.verified = verified  # shared with the reader: survives closing and re-opening
        self.refs = 0
        self._release = release

    def close(self) -> None:
        # The memory map is referenced only through ``read``: dropping it unmaps the object
        # (and drops a disk-cache entry's lock) at once; nothing reads it any more (refs == 0).
        self.read = _closed
        self._release()


def _closed(a: int, b: int) -> np.ndarray:
    raise ShardError("shard read after the reader closed it")


@dataclass(frozen=True)
class _Inner:
    """Precomputed geometry of one (channel group × tile) position of the chunk grid."""

    grid_flat: int  # position among the chunks of one time chunk (array chunk grid)
    shard_flat: int  # same within a shard's chunk grid
    dst: tuple[slice, ...]  # where it lands in a step of ``out`` (dims 1..)
    src: tuple[slice, ...]  # the part of the chunk inside the array (dims 1..)
    coords: tuple[int, ...]


class ShardArrayReader:
    fuses_affine = True  # read_block(..., affine=(offset, scale)) normalises while copying

    def __init__(
        self,
        root: str | Path,
        name: str,
        *,
        cache: DiskCache | None = None,
        verify: bool = True,
        storage_options: dict[str, Any] | None = None,
        max_open_shards: int | None = None,
    ) -> None:
        if sys.byteorder != "little":
            raise ShardError("the shard reader needs a little-endian host")
        self.name = name
        self.location = Location(root, storage_options)
        self.cache = cache
        self.verify = verify
        if max_open_shards is None:
            # Open shards pin disk-cache entries; elsewhere a map costs only address space.
            max_open_shards = 4 if cache is not None else _local_open_limit()
        self.max_open_shards = max(1, max_open_shards)
        raw = json.loads(self.location.read_bytes(MANIFEST))
        where = self.location.describe(MANIFEST)
        check_version(raw, where)
        arrays = parse_arrays(raw, where)
        if name not in arrays:
            raise ShardError(f"{where}: no array {name!r}; it has {sorted(arrays)}")
        self.spec: ArrayManifest = arrays[name]
        if not self.spec.recorded:
            raise ShardError(
                f"{where}: array {name!r} has no recorded checksums; finish the build "
                "(finalise / record_checksums) first"
            )
        self.shape: tuple[int, ...] = tuple(self.spec.shape)
        self.dtype: np.dtype[Any] = self.spec.np_dtype
        self.nbytes_per_step: int = math.prod(self.shape[1:]) * self.dtype.itemsize
        self._chunk_nbytes = math.prod(self.spec.chunk_shape) * self.dtype.itemsize
        self._checksums: list[int] = list(self.spec.checksums)
        self._inner_per_shard_row = math.prod(self.spec.chunks_per_shard[1:])
        self._codec = Zstd() if self.spec.compression == "zstd" else None
        self._inner = self._inner_geometry()
        self._open: OrderedDict[int, _Shard] = OrderedDict()
        self._opening: dict[int, threading.Lock] = {}
        self._verified: dict[int, tuple[tuple[int, ...], np.ndarray]] = {}
        self._lock = threading.Lock()

    def _inner_geometry(self) -> list[_Inner]:
        spec = self.spec
        grid, cps, cs = spec.chunk_grid[1:], spec.chunks_per_shard[1:], spec.chunk_shape[1:]
        out = []
        for inner in np.ndindex(*grid):
            lo = [c * e for c, e in zip(inner, cs, strict=True)]
            hi = [min(a + e, n) for a, e, n in zip(lo, cs, self.shape[1:], strict=True)]
            out.append(
                _Inner(
                    grid_flat=int(np.ravel_multi_index(inner, grid)) if grid else 0,
                    shard_flat=int(np.ravel_multi_index(inner, cps)) if cps else 0,
                    dst=tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)),
                    src=tuple(slice(0, b - a) for a, b in zip(lo, hi, strict=True)),
                    coords=tuple(inner),
                )
            )
        return out

    # -- shards ---------------------------------------------------------------------------

    def _fail(self, msg: str, shard: str, chunk: tuple[int, ...] | None = None) -> NoReturn:
        raise ShardChecksumError(f"{self.name}: {msg}", array=self.name, shard=shard, chunk=chunk)

    def _open_shard(self, number: int) -> _Shard:
        key = self.spec.shard_key(number)
        label = self.location.describe(key)
        expected = self.spec.shard_nbytes[number]
        cached: CachedFile | None = None
        fd = -1
        if self.cache is not None and self.location.remote:
            cached = self.cache.open(self.location, key, self._shard_version(number))
            fd, size = cached.fd, cached.size
            label = f"{label} (cached as {cached.path})"
        elif not self.location.remote:
            try:
                fd = os.open(self.location.local_path(key), os.O_RDONLY)
            except FileNotFoundError:
                self._fail(f"shard object {label} is missing", label)
            size = os.fstat(fd).st_size
        else:
            size = self.location.size(key)

        def release() -> None:
            if cached is not None:
                cached.close()
            elif fd >= 0:
                os.close(fd)

        try:
            if size != expected:
                self._fail(
                    f"shard object {label} is {size} bytes but the manifest records {expected}: "
                    "truncated or replaced",
                    label,
                )
            if fd >= 0:
                mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
                mm.madvise(mmap.MADV_WILLNEED)  # start readahead of the whole object
                data = np.frombuffer(mm, dtype=np.uint8)

                def read(a: int, b: int) -> np.ndarray:
                    return data[a:b]

                st = os.fstat(fd)
                identity: tuple[int, ...] | None = (st.st_dev, st.st_ino, st.st_mtime_ns, size)
            else:

                def read(a: int, b: int) -> np.ndarray:
                    return np.frombuffer(self.location.read_range(key, a, b), dtype=np.uint8)

                identity = None  # every range request brings new bytes: verify each time
            index = self._parse_index(label, size, read)
        except BaseException:
            release()
            raise
        return _Shard(label, index, read, release, self._verified_map(number, identity))

    def _verified_map(self, number: int, identity: tuple[int, ...] | None) -> np.ndarray:
        """Which chunks of this very file were verified already, kept across re-opening.

        Keyed by the file's identity (device, inode, mtime, size), so a replaced file is
        verified again; a shard closed by the LRU and reopened is not checksummed twice.
        """
        n = math.prod(self.spec.chunks_per_shard)
        if identity is None:
            return np.zeros(n, dtype=bool)
        with self._lock:
            known = self._verified.get(number)
            if known is None or known[0] != identity:
                known = (identity, np.zeros(n, dtype=bool))
                self._verified[number] = known
            return known[1]

    def _shard_version(self, number: int) -> str:
        per_shard = self._inner_per_shard_row * self.spec.chunks_per_shard[0]
        mine = self._checksums[number * per_shard : (number + 1) * per_shard]
        ident = f"{self.spec.shard_nbytes[number]}:{mine}"
        return hashlib.sha256(ident.encode()).hexdigest()[:16]

    def _parse_index(
        self, label: str, size: int, read: Callable[[int, int], np.ndarray]
    ) -> list[list[int]]:
        n = math.prod(self.spec.chunks_per_shard)
        tail_len = 16 * n + 4
        if size < tail_len:
            self._fail(f"shard object {label} is {size} bytes, shorter than its index", label)
        tail = read(size - tail_len, size)
        body, stored = tail[:-4], int(tail[-4:].view("<u4")[0])
        if int(google_crc32c.value(body)) != stored:
            self._fail(f"shard {label}: index fails its crc32c: corrupt or truncated", label)
        index = body.view("<u8").reshape(n, 2)
        present = index[:, 0] != MAX_UINT64
        ends = index[present, 0] + index[present, 1]
        if len(ends) and int(ends.max()) > size - tail_len:
            self._fail(f"shard {label}: index points past the end of the object: truncated", label)
        rows: list[list[int]] = index.tolist()
        return rows

    def _acquire(self, number: int) -> _Shard:
        with self._lock:
            shard = self._open.get(number)
            if shard is None:
                opening = self._opening.setdefault(number, threading.Lock())
            else:
                shard.refs += 1
                self._open.move_to_end(number)
                return shard
        with opening:  # one thread opens (maybe downloads) a shard; others wait for it
            with self._lock:
                shard = self._open.get(number)
                if shard is not None:
                    shard.refs += 1
                    self._open.move_to_end(number)
                    return shard
            shard = self._open_shard(number)
            with self._lock:
                shard.refs = 1
                self._open[number] = shard
                self._opening.pop(number, None)
                self._trim()
            return shard

    def _release(self, shard: _Shard) -> None:
        with self._lock:
            shard.refs -= 1
            self._trim()

    def _trim(self) -> None:
        # Caller holds self._lock. Close least recently used shards nobody is reading.
        excess = len(self._open) - self.max_open_shards
        for number in [k for k, s in self._open.items() if s.refs == 0][: max(excess, 0)]:
            self._open.pop(number).close()

    # -- reading --------------------------------------------------------------------------

    def read_block(self, t0: int, t1: int, out: np.ndarray, affine: Affine | None = None) -> int:
        """Fill ``out`` with steps ``[t0, t1)``; return the stored (compressed) bytes read.

        ``affine = (offset, scale)``, each broadcastable to one step (``shape[1:]``, e.g.
        ``(C, 1, 1)``), stores ``(x - offset) / scale`` instead of ``x``: normalisation fused
        into the copy (one pass, :func:`stratocast.shards.affine.apply_affine`), bit-identical
        to doing it afterwards in NumPy.
        """
        want = (t1 - t0, *self.shape[1:])
        if not 0 <= t0 <= t1 <= self.shape[0]:
            raise ValueError(f"{self.name}: steps [{t0}, {t1}) outside [0, {self.shape[0]})")
        if out.shape != want or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(
                f"{self.name}: out must be C-contiguous {self.dtype}{list(want)}, "
                f"got {out.dtype}{list(out.shape)}"
            )
        if t0 == t1:
            return 0
        step = self.shape[1:]
        aff = None
        if affine is not None:
            aff = (
                np.broadcast_to(np.asarray(affine[0], self.dtype), step),
                np.broadcast_to(np.asarray(affine[1], self.dtype), step),
            )
        cs0, ss0 = self.spec.chunk_shape[0], self.spec.shard_shape[0]
        total = 0
        for number in range(t0 // ss0, (t1 - 1) // ss0 + 1):
            shard = self._acquire(number)
            try:
                lo = max(t0, number * ss0) // cs0
                hi = (min(t1, (number + 1) * ss0) - 1) // cs0
                for ct in range(lo, hi + 1):
                    total += self._read_chunk_row(shard, number, ct, t0, t1, out, aff)
            finally:
                self._release(shard)
        return total

    def _read_chunk_row(
        self,
        shard: _Shard,
        number: int,
        ct: int,
        t0: int,
        t1: int,
        out: np.ndarray,
        aff: Affine | None = None,
    ) -> int:
        """All inner chunks (channel groups × tiles) of time chunk ``ct``."""
        spec = self.spec
        steps = spec.steps_of_chunk(ct)
        ta, tb = max(t0, steps.start), min(t1, steps.stop)
        t_dst = slice(ta - t0, tb - t0)
        t_src = slice(ta - steps.start, tb - steps.start)
        grid_base = ct * len(self._inner)
        shard_base = (ct - number * spec.chunks_per_shard[0]) * self._inner_per_shard_row
        total = 0
        for inner in self._inner:
            li = shard_base + inner.shard_flat
            want = self._checksums[grid_base + inner.grid_flat]
            dst = out[(t_dst, *inner.dst)]
            offset, nbytes = shard.index[li]
            part = None if aff is None else (aff[0][inner.dst], aff[1][inner.dst])
            if offset == MAX_UINT64 or want == EMPTY_CHUNK:
                self._absent_or_empty(shard, ct, inner, offset == MAX_UINT64, want, dst)
                if part is not None:
                    apply_affine(None, dst, part)
                continue
            raw = shard.read(offset, offset + nbytes)
            if self.verify and not shard.verified[li]:
                got = int(google_crc32c.value(raw))
                if got != want:
                    self._fail(
                        f"{self._where(ct, inner)} in shard {shard.label} fails its checksum "
                        f"(crc32c {got:#010x}, manifest {want:#010x})",
                        shard.label,
                        (ct, *inner.coords),
                    )
                shard.verified[li] = True
            self._decode(raw, dst, (t_src, *inner.src), shard, ct, inner, part)
            total += nbytes
        return total

    def _where(self, ct: int, inner: _Inner) -> str:
        steps = self.spec.steps_of_chunk(ct)
        return f"chunk {(ct, *inner.coords)} (time steps {steps.start}..{steps.stop - 1})"

    def _absent_or_empty(
        self, shard: _Shard, ct: int, inner: _Inner, absent: bool, want: int, dst: np.ndarray
    ) -> None:
        coords = (ct, *inner.coords)
        if absent and want == EMPTY_CHUNK:
            dst[...] = self.spec.fill_value  # legitimately empty, as the builder recorded
        elif absent:
            self._fail(
                f"{self._where(ct, inner)} is absent from shard {shard.label} but the manifest "
                "recorded it",
                shard.label,
                coords,
            )
        else:
            self._fail(
                f"{self._where(ct, inner)} is stored in {shard.label} but the manifest records "
                "it as empty",
                shard.label,
                coords,
            )

    def _decode(
        self,
        raw: np.ndarray,
        dst: np.ndarray,
        src_sel: tuple[slice, ...],
        shard: _Shard,
        ct: int,
        inner: _Inner,
        aff: Affine | None = None,
    ) -> None:
        cs = tuple(self.spec.chunk_shape)
        if self._codec is None:
            if len(raw) != self._chunk_nbytes:
                self._fail(
                    f"{self._where(ct, inner)} in shard {shard.label} holds {len(raw)} bytes, "
                    f"not {self._chunk_nbytes}",
                    shard.label,
                    (ct, *inner.coords),
                )
            src = raw.view(self.dtype).reshape(cs)[src_sel]
            if aff is None:
                np.copyto(dst, src)
            else:
                apply_affine(src, dst, aff)
            return
        whole = dst.shape == cs and dst.flags.c_contiguous
        target = dst if whole else np.empty(cs, dtype=self.dtype)
        try:
            self._codec.decode(raw, out=target)
        except (RuntimeError, ValueError) as err:
            self._fail(
                f"{self._where(ct, inner)} in shard {shard.label} does not decode: {err}",
                shard.label,
                (ct, *inner.coords),
            )
        if not whole:
            np.copyto(dst, target[src_sel])
        if aff is not None:
            apply_affine(None, dst, aff)

    def close(self) -> None:
        with self._lock:
            for shard in self._open.values():
                shard.close()
            self._open.clear()

    def __enter__(self) -> ShardArrayReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
