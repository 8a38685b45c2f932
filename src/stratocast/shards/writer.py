"""Generic writer of sharded arrays in layout v2 (used by the shard build and the benchmarks).

    create_array(root, name, shape, dtype, chunk_steps=1, shard_steps=64,
                 compression="zstd", dimension_names=None, *, chunk_inner=None,
                 fill_value=None) -> ArrayManifest
        A Zarr v3 array at ``root/name`` (sharding codec; time is axis 0) and its geometry
        under ``arrays[name]`` of ``root/manifest.json``. Re-creating an array discards its data.
    write_block(root, name, t0, block, *, skip_empty=False) -> int
        Write whole shards: ``t0`` on a shard boundary, ``len(block)`` a multiple of
        ``shard_steps`` or reaching the end of the time axis. Each shard object is replaced
        atomically, so a writer can be killed and rerun (idempotent); the crc32c of each stored
        chunk goes to a per-shard record next to it. Returns the bytes written.
    record_checksums(root, name) -> ArrayManifest
        Gather the per-shard records into the manifest; fails naming the shards never written
        or whose object differs in size from what its writer recorded.

Every inner chunk is written, also when it holds only the fill value (unless ``skip_empty``:
then it is recorded as legitimately empty), so a reader treats an absent chunk as an error,
never as fill values. Shards are written by this module rather than by zarr-python because the
checksums must be taken from the exact bytes that were stored; zarr-python reads the result.
Local roots only: upload the directory to an object store afterwards.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import google_crc32c
import numpy as np
import zarr
from numcodecs.zstd import Zstd
from zarr.codecs import ZstdCodec

from stratocast.shards.layout import (
    CHECKSUM_DIR,
    EMPTY_CHUNK,
    LAYOUT_VERSION,
    MANIFEST,
    MAX_UINT64,
    ArrayManifest,
    ShardError,
    check_version,
    parse_arrays,
    write_json_atomic,
)

ZSTD_LEVEL = 3
Compression = Literal["zstd", "none"]


@contextmanager
def _manifest_lock(root: Path) -> Iterator[None]:
    # Several writers may register arrays in one root: serialise read-modify-write.
    with open(root / ".manifest.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_raw_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        return {"layout_version": LAYOUT_VERSION, "arrays": {}}
    raw: dict[str, Any] = json.loads(path.read_text())
    check_version(raw, str(path))
    return raw


def register_array(root: Path, name: str, spec: ArrayManifest) -> None:
    """Put ``spec`` under ``arrays[name]`` of ``root/manifest.json``, keeping everything else."""
    with _manifest_lock(root):
        raw = _read_raw_manifest(root)
        raw.setdefault("arrays", {})[name] = asdict(spec)
        write_json_atomic(root / MANIFEST, raw)


def array_manifest(root: Path, name: str) -> ArrayManifest:
    path = root / MANIFEST
    if not path.is_file():
        raise ShardError(f"no manifest at {path}: create the array first")
    raw = _read_raw_manifest(root)
    arrays = parse_arrays(raw, str(path))
    if name not in arrays:
        raise ShardError(f"{path}: no array {name!r}; it has {sorted(arrays)}")
    return arrays[name]


def new_array(
    root: Path,
    name: str,
    shape: Sequence[int],
    dtype: Any,
    chunk_steps: int = 1,
    shard_steps: int = 64,
    compression: Compression = "zstd",
    dimension_names: Sequence[str] | None = None,
    *,
    chunk_inner: Sequence[int] | None = None,
    fill_value: float | int | None = None,
) -> ArrayManifest:
    """Create the Zarr array (metadata only) without registering it in the manifest."""
    shape = [int(s) for s in shape]
    dt = np.dtype(dtype).newbyteorder("<")
    inner = list(shape[1:]) if chunk_inner is None else [int(c) for c in chunk_inner]
    if len(inner) != len(shape) - 1 or min([chunk_steps, *inner], default=1) < 1:
        raise ShardError(f"{name}: chunk extents {inner} do not fit shape {shape}")
    if shard_steps % chunk_steps:
        raise ShardError(f"{name}: shard_steps {shard_steps} is not a multiple of {chunk_steps}")
    if compression not in ("zstd", "none"):
        raise ShardError(f"{name}: unknown compression {compression!r}")
    if fill_value is None:
        fill_value = float("nan") if dt.kind == "f" else 0
    chunk_shape = [chunk_steps, *inner]
    # A shard spans every channel and tile of its time steps; zarr wants whole inner chunks.
    shard_shape = [
        shard_steps,
        *(math.ceil(s / c) * c for s, c in zip(shape[1:], inner, strict=True)),
    ]
    dims = list(dimension_names) if dimension_names else [f"dim{i}" for i in range(len(shape))]
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / name, ignore_errors=True)  # stale shards and checksum records
    zarr.create_array(
        str(root / name),
        shape=tuple(shape),
        chunks=tuple(chunk_shape),
        shards=tuple(shard_shape),
        dtype=dt,
        compressors=ZstdCodec(level=ZSTD_LEVEL) if compression == "zstd" else None,
        fill_value=fill_value,
        dimension_names=dims,
        overwrite=True,
    )
    return ArrayManifest(
        path=name,
        shape=shape,
        dtype=dt.str,
        chunk_shape=chunk_shape,
        shard_shape=shard_shape,
        compression=compression,
        fill_value=fill_value,
        dimension_names=dims,
    )


def create_array(
    root: Path,
    name: str,
    shape: Sequence[int],
    dtype: Any,
    chunk_steps: int = 1,
    shard_steps: int = 64,
    compression: Compression = "zstd",
    dimension_names: Sequence[str] | None = None,
    *,
    chunk_inner: Sequence[int] | None = None,
    fill_value: float | int | None = None,
) -> ArrayManifest:
    spec = new_array(
        root,
        name,
        shape,
        dtype,
        chunk_steps,
        shard_steps,
        compression,
        dimension_names,
        chunk_inner=chunk_inner,
        fill_value=fill_value,
    )
    register_array(root, name, spec)
    return spec


def _is_fill(chunk: np.ndarray, fill: float | int) -> bool:
    if isinstance(fill, float) and math.isnan(fill):
        return bool(np.isnan(chunk).all())
    return bool((chunk == fill).all())


def _encode_shard(
    spec: ArrayManifest, shard: int, data: np.ndarray, skip_empty: bool
) -> tuple[list[bytes], np.ndarray, dict[int, int]]:
    """Encoded chunks in C order, the shard index, and {chunk number: crc32c}."""
    cps = spec.chunks_per_shard
    index = np.full((*cps, 2), MAX_UINT64, dtype="<u8")
    chunks: list[bytes] = []
    crcs: dict[int, int] = {}
    codec = Zstd(level=ZSTD_LEVEL) if spec.compression == "zstd" else None
    offset = 0
    grid = spec.chunk_grid
    for local in np.ndindex(*cps):
        coords = (shard * cps[0] + local[0], *local[1:])
        if coords[0] >= grid[0]:
            continue  # past the end of the time axis: absent, as zarr has it
        lo = [c * e for c, e in zip(local, spec.chunk_shape, strict=True)]
        region = data[
            tuple(
                slice(a, min(a + e, n))
                for a, e, n in zip(lo, spec.chunk_shape, data.shape, strict=True)
            )
        ]
        if region.shape == tuple(spec.chunk_shape):
            block = np.ascontiguousarray(region)
        else:  # edge chunk: zarr stores it whole, padded with the fill value
            block = np.full(spec.chunk_shape, spec.fill_value, dtype=spec.np_dtype)
            block[tuple(slice(0, n) for n in region.shape)] = region
        number = spec.chunk_number(coords)
        if skip_empty and _is_fill(block, spec.fill_value):
            crcs[number] = EMPTY_CHUNK
            continue
        encoded = codec.encode(block) if codec is not None else block.tobytes()
        crcs[number] = int(google_crc32c.value(encoded))
        index[local] = (offset, len(encoded))
        offset += len(encoded)
        chunks.append(encoded)
    return chunks, index, crcs


def write_block(
    root: Path, name: str, t0: int, block: np.ndarray, *, skip_empty: bool = False
) -> int:
    spec = array_manifest(root, name)
    steps = spec.shard_shape[0]
    t1 = t0 + block.shape[0]
    if block.dtype != spec.np_dtype or list(block.shape[1:]) != spec.shape[1:]:
        raise ShardError(
            f"{name}: block {block.dtype}{list(block.shape)} does not match the array "
            f"{spec.dtype}{spec.shape}"
        )
    if t0 % steps or not (t1 == spec.shape[0] or (t1 % steps == 0 and t1 < spec.shape[0])):
        raise ShardError(
            f"{name}: block [{t0}, {t1}) is not whole shards of {steps} steps "
            f"(time axis of {spec.shape[0]})"
        )
    written = 0
    for lo in range(t0, t1, steps):
        written += _write_shard(
            root, spec, lo // steps, block[lo - t0 : lo - t0 + steps], skip_empty
        )
    return written


def _write_shard(
    root: Path, spec: ArrayManifest, shard: int, data: np.ndarray, skip_empty: bool
) -> int:
    chunks, index, crcs = _encode_shard(spec, shard, data, skip_empty)
    index_bytes = index.tobytes()
    tail = index_bytes + np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes()
    path = root / spec.shard_key(shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        for c in chunks:
            fh.write(c)
        fh.write(tail)
    nbytes = sum(len(c) for c in chunks) + len(tail)
    tmp.replace(path)
    record = root / spec.path / CHECKSUM_DIR / f"{shard}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, {"shard": shard, "nbytes": nbytes, "crc32c": crcs})
    return nbytes


def record_checksums(root: Path, name: str) -> ArrayManifest:
    spec = array_manifest(root, name)
    grid = spec.chunk_grid
    checksums = np.full(math.prod(grid), EMPTY_CHUNK - 1, dtype=np.int64)  # sentinel: unset
    shard_nbytes: list[int] = []
    never: list[int] = []
    for shard in range(spec.n_shards):
        rec_path = root / spec.path / CHECKSUM_DIR / f"{shard}.json"
        obj_path = root / spec.shard_key(shard)
        if not rec_path.is_file() or not obj_path.is_file():
            never.append(shard)
            shard_nbytes.append(0)
            continue
        rec = json.loads(rec_path.read_text())
        size = obj_path.stat().st_size
        if size != rec["nbytes"]:
            raise ShardError(
                f"{obj_path}: {size} bytes but its writer recorded {rec['nbytes']}: the write "
                "was interrupted or another build replaced it; rerun that part"
            )
        shard_nbytes.append(size)
        for number, crc in rec["crc32c"].items():
            checksums[int(number)] = crc
    if never:
        steps = spec.shard_shape[0]
        spans = [f"{s * steps}..{min((s + 1) * steps, spec.shape[0]) - 1}" for s in never[:5]]
        raise ShardError(
            f"{root / spec.path}: {len(never)} of {spec.n_shards} shards (time steps "
            f"{', '.join(spans)}) were never loaded; run the missing `load_part`s / write_block"
        )
    if (checksums == EMPTY_CHUNK - 1).any():
        raise ShardError(f"{root / spec.path}: checksum records do not cover every chunk")
    spec.shard_nbytes = shard_nbytes
    spec.checksums = checksums.tolist()
    register_array(root, name, spec)
    return spec
