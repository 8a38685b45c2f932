"""The fast read path against zarr-python's reading of the same arrays, and its integrity
checks (checksums, truncation, missing chunks), serial and from several threads."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr

from stratocast.shards.build import create_array, record_checksums, write_block
from stratocast.shards.layout import EMPTY_CHUNK, ShardChecksumError, ShardError
from stratocast.shards.reader import ShardArrayReader

SHAPE = (23, 3, 8, 10)  # 23 steps: the last shard and (chunk_steps 3) the last chunk are partial
SHARD_STEPS = 6


def _data(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    rng = np.random.default_rng(42)
    # Smooth along the last axis so zstd has something to compress.
    return np.cumsum(rng.standard_normal(shape), axis=-1).astype(np.float32)


def _store(
    root: Path,
    compression: str,
    chunk_steps: int = 1,
    chunk_inner: tuple[int, ...] | None = None,
    data: np.ndarray | None = None,
    skip_empty: bool = False,
) -> np.ndarray:
    data = _data() if data is None else data
    create_array(
        root,
        "x",
        data.shape,
        data.dtype,
        chunk_steps=chunk_steps,
        shard_steps=SHARD_STEPS,
        compression=compression,  # type: ignore[arg-type]
        dimension_names=["time", "channel", "lat", "lon"],
        chunk_inner=chunk_inner,
    )
    # Two writes of uneven size, the second reaching the end of the time axis.
    write_block(root, "x", 0, data[:12], skip_empty=skip_empty)
    write_block(root, "x", 12, data[12:], skip_empty=skip_empty)
    record_checksums(root, "x")
    return data


def _read(reader: ShardArrayReader, t0: int, t1: int) -> np.ndarray:
    out = np.empty((t1 - t0, *reader.shape[1:]), dtype=reader.dtype)
    reader.read_block(t0, t1, out)
    return out


def _shard_index(path: Path, n_chunks: int) -> np.ndarray:
    """The (offset, nbytes) pairs of a shard object, decoded by hand from the Zarr v3 spec."""
    raw = path.read_bytes()
    tail = raw[-(16 * n_chunks + 4) :]
    assert int.from_bytes(tail[-4:], "little") == google_crc32c.value(tail[:-4])
    return np.frombuffer(tail[:-4], dtype="<u8").reshape(n_chunks, 2)


BLOCKS = [(0, 23), (4, 9), (5, 13), (11, 12), (17, 23), (22, 23), (6, 12)]


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize(("chunk_steps", "chunk_inner"), [(1, None), (3, None), (2, (2, 8, 4))])
def test_read_block_equals_zarr_python(
    tmp_path: Path, compression: str, chunk_steps: int, chunk_inner: tuple[int, ...] | None
) -> None:
    data = _store(tmp_path, compression, chunk_steps, chunk_inner)
    ref = zarr.open_array(str(tmp_path / "x"), mode="r")
    assert ref.chunks == (chunk_steps, *(chunk_inner or SHAPE[1:]))
    assert ref.shards is not None and ref.shards[0] == SHARD_STEPS
    with ShardArrayReader(tmp_path, "x") as reader:
        assert reader.shape == SHAPE and reader.dtype == np.float32
        assert reader.nbytes_per_step == 3 * 8 * 10 * 4
        for t0, t1 in BLOCKS:
            expected = ref[t0:t1]
            np.testing.assert_array_equal(expected, data[t0:t1])  # zarr agrees with the input
            np.testing.assert_array_equal(_read(reader, t0, t1), expected)


def test_bytes_read_are_the_stored_chunk_sizes(tmp_path: Path) -> None:
    _store(tmp_path, "none")
    with ShardArrayReader(tmp_path, "x") as reader:
        out = np.empty((5, *SHAPE[1:]), np.float32)
        assert reader.read_block(4, 9, out) == 5 * reader.nbytes_per_step
    _store(tmp_path / "z", "zstd")
    with ShardArrayReader(tmp_path / "z", "x") as reader:
        index = _shard_index(tmp_path / "z" / "x" / "c" / "0" / "0" / "0" / "0", SHARD_STEPS)
        out = np.empty((2, *SHAPE[1:]), np.float32)
        assert reader.read_block(0, 2, out) == int(index[0, 1] + index[1, 1])


def test_manifest_records_geometry_and_checksums(tmp_path: Path) -> None:
    _store(tmp_path, "zstd", chunk_steps=3)
    spec = json.loads((tmp_path / "manifest.json").read_text())["arrays"]["x"]
    assert spec["chunk_shape"] == [3, 3, 8, 10]
    assert spec["shard_shape"] == [6, 3, 8, 10]
    assert len(spec["checksums"]) == math.ceil(23 / 3)
    assert len(spec["shard_nbytes"]) == 4
    # The checksum of the first chunk is that of its stored bytes, located by hand.
    shard0 = tmp_path / "x" / "c" / "0" / "0" / "0" / "0"
    off, n = _shard_index(shard0, 2)[0]
    assert spec["checksums"][0] == google_crc32c.value(shard0.read_bytes()[off : off + n])


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_corrupted_chunk_names_array_shard_and_chunk(tmp_path: Path, compression: str) -> None:
    data = _store(tmp_path, compression)
    shard1 = tmp_path / "x" / "c" / "1" / "0" / "0" / "0"  # steps 6..11
    off, n = _shard_index(shard1, SHARD_STEPS)[2]  # chunk of step 8
    raw = bytearray(shard1.read_bytes())
    raw[off + n // 2] ^= 0xFF
    shard1.write_bytes(bytes(raw))
    with ShardArrayReader(tmp_path, "x") as reader:
        with pytest.raises(ShardChecksumError, match=r"chunk \(8, 0, 0, 0\)") as err:
            _read(reader, 5, 10)
        msg = str(err.value)
        assert "x/c/1/0/0/0" in msg and "time steps 8..8" in msg and "checksum" in msg
        assert err.value.array == "x" and err.value.chunk == (8, 0, 0, 0)
        # Neighbouring steps in the same shard are intact and still read.
        np.testing.assert_array_equal(_read(reader, 6, 8), data[6:8])
        np.testing.assert_array_equal(_read(reader, 9, 12), data[9:12])


def test_corrupted_index_is_named(tmp_path: Path) -> None:
    _store(tmp_path, "zstd")
    shard = tmp_path / "x" / "c" / "2" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[-20] ^= 0x01  # inside the index, not the chunks
    shard.write_bytes(bytes(raw))
    with (
        ShardArrayReader(tmp_path, "x") as reader,
        pytest.raises(ShardChecksumError, match=r"x/c/2/0/0/0.*index fails its crc32c"),
    ):
        _read(reader, 12, 13)


def test_truncated_shard_is_a_clear_error(tmp_path: Path) -> None:
    _store(tmp_path, "none")
    shard = tmp_path / "x" / "c" / "1" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:1000])
    with ShardArrayReader(tmp_path, "x") as reader:
        with pytest.raises(ShardChecksumError, match=r"x/c/1/0/0/0.*truncated"):
            _read(reader, 7, 8)
        _read(reader, 0, 6)  # other shards unaffected


def test_missing_shard_and_missing_chunk_raise(tmp_path: Path) -> None:
    _store(tmp_path, "none")
    (tmp_path / "x" / "c" / "3" / "0" / "0" / "0").unlink()
    with (
        ShardArrayReader(tmp_path, "x") as reader,
        pytest.raises(ShardChecksumError, match=r"x/c/3/0/0/0.*missing"),
    ):
        _read(reader, 20, 21)
    # A chunk absent from the index (zarr would read fill values) is an error too.
    _store(tmp_path / "m", "none")
    shard = tmp_path / "m" / "x" / "c" / "0" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    index = np.frombuffer(raw[-(16 * SHARD_STEPS + 4) : -4], dtype="<u8").copy().reshape(-1, 2)
    index[3] = 2**64 - 1
    body = index.tobytes()
    raw[-(16 * SHARD_STEPS + 4) :] = body + google_crc32c.value(body).to_bytes(4, "little")
    shard.write_bytes(bytes(raw))
    assert np.isnan(zarr.open_array(str(tmp_path / "m" / "x"), mode="r")[3]).all()
    with (
        ShardArrayReader(tmp_path / "m", "x") as reader,
        pytest.raises(ShardChecksumError, match=r"chunk \(3, 0, 0, 0\).*absent"),
    ):
        _read(reader, 0, 6)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_legitimately_empty_chunks_read_as_fill(tmp_path: Path, compression: str) -> None:
    data = _data()
    data[7] = np.nan
    _store(tmp_path, compression, data=data, skip_empty=True)
    spec = json.loads((tmp_path / "manifest.json").read_text())["arrays"]["x"]
    assert spec["checksums"][7] == EMPTY_CHUNK
    assert _shard_index(tmp_path / "x" / "c" / "1" / "0" / "0" / "0", SHARD_STEPS)[1, 0] == (
        2**64 - 1
    )
    with ShardArrayReader(tmp_path, "x") as reader:
        got = _read(reader, 5, 9)
    np.testing.assert_array_equal(got, zarr.open_array(str(tmp_path / "x"), mode="r")[5:9])
    assert np.isnan(got[2]).all() and np.isfinite(got[[0, 1, 3]]).all()


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_concurrent_reads_equal_serial_reads(tmp_path: Path, compression: str) -> None:
    _store(tmp_path, compression, chunk_steps=2)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 20, size=200)
    blocks = [(int(a), int(min(a + rng.integers(1, 8), 23))) for a in starts]
    with ShardArrayReader(tmp_path, "x", max_open_shards=2) as reader:
        serial = [_read(reader, a, b) for a, b in blocks]
    # max_open_shards=2 of 4: shards are closed and reopened while other threads read.
    with ShardArrayReader(tmp_path, "x", max_open_shards=2) as reader, ThreadPoolExecutor(4) as ex:
        parallel = list(ex.map(lambda ab: _read(reader, *ab), blocks))
    for s, p in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(s, p)


def test_out_buffer_and_range_are_checked(tmp_path: Path) -> None:
    _store(tmp_path, "none")
    with ShardArrayReader(tmp_path, "x") as reader:
        with pytest.raises(ValueError, match="outside"):
            reader.read_block(20, 24, np.empty((4, 3, 8, 10), np.float32))
        with pytest.raises(ValueError, match="C-contiguous"):
            reader.read_block(0, 2, np.empty((2, 3, 8, 10), np.float64))
        with pytest.raises(ValueError, match="C-contiguous"):
            reader.read_block(0, 2, np.empty((2, 3, 8, 20), np.float32)[..., ::2])


def test_unrecorded_or_unwritten_arrays_are_refused(tmp_path: Path) -> None:
    create_array(tmp_path, "x", SHAPE, np.float32, shard_steps=SHARD_STEPS)
    write_block(tmp_path, "x", 0, _data()[:12])
    with pytest.raises(ShardError, match=r"2 of 4 shards \(time steps 12..17, 18..22\)"):
        record_checksums(tmp_path, "x")
    with pytest.raises(ShardError, match="no recorded checksums"):
        ShardArrayReader(tmp_path, "x")
    with pytest.raises(ShardError, match="not whole shards"):
        write_block(tmp_path, "x", 3, _data()[3:9])
    with pytest.raises(ShardError, match="does not match"):
        write_block(tmp_path, "x", 0, _data()[:6].astype(np.float64))


def test_a_shard_changed_after_verification_is_checked_again(tmp_path: Path) -> None:
    data = _store(tmp_path, "none")
    shard0 = tmp_path / "x" / "c" / "0" / "0" / "0" / "0"
    with ShardArrayReader(tmp_path, "x", max_open_shards=1) as reader:
        np.testing.assert_array_equal(_read(reader, 0, 12), data[:12])  # shard 0 closed by LRU
        np.testing.assert_array_equal(_read(reader, 0, 6), data[:6])  # reopened, same file
        off, _ = _shard_index(shard0, SHARD_STEPS)[4]
        raw = bytearray(shard0.read_bytes())
        raw[off + 8] ^= 0x40
        tmp = shard0.with_name("tmp")
        tmp.write_bytes(bytes(raw))
        tmp.replace(shard0)  # a new file in place of the verified one
        _read(reader, 12, 18)  # evicts shard 0 from the open set
        with pytest.raises(ShardChecksumError, match=r"chunk \(4, 0, 0, 0\)"):
            _read(reader, 0, 6)


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("chunk_inner", [None, (2, 8, 4)])
def test_fused_normalisation_is_bit_identical_to_numpy(
    tmp_path: Path, compression: str, chunk_inner: tuple[int, ...] | None
) -> None:
    """read_block(..., affine=(mean, std)) gives exactly (x - mean) / std, per channel."""
    data = _store(tmp_path, compression, 1, chunk_inner)
    mean = np.array([250.0, -3.0, 1.0e5], np.float32)[:, None, None]
    std = np.array([8.0, 0.7, 900.0], np.float32)[:, None, None]
    with ShardArrayReader(tmp_path, "x") as reader:
        for t0, t1 in [(0, 1), (4, 9), (5, 17), (20, 23)]:
            out = np.empty((t1 - t0, *SHAPE[1:]), np.float32)
            reader.read_block(t0, t1, out, affine=(mean, std))
            np.testing.assert_array_equal(out, (data[t0:t1] - mean) / std)
