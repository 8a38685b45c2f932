"""Seeded mutation of real observation files, and the checks a mutated file must pass.

Shared by the reader fuzz suite (``tests/obs/test_fuzz_sources.py``, a few mutants per sample
in CI) and ``benchmarks/robustness.py`` (thousands). Everything is deterministic given
``(sample file name, seed)``, so a failure is reproduced with::

    from stratocast.testing.fuzz import mutate
    m = mutate(data, "text", seed=17, name="collective.txt")

Mutations are the damage real files get: bit and byte errors on a line, lost or repeated
bytes, cut-off transfers, repeated or reordered lines, and, for text formats, one digit of a
group changed (the plausible-but-wrong value a checksum-free format cannot detect) or a whole
group zeroed (``Q0000``), slashed (``/////``) or set to nines. BUFR mutants damage one message:
bits of its data section (4), its section lengths, its header fields, or cut it short. NetCDF
(HDF5) mutants get bit flips inside one variable's stored data or in the metadata between
(superblock, object headers, heaps), truncation, and edits made through HDF5 itself, so the
file stays readable and the reader's per-variable and per-element paths are what is tested:
values set to NaN, inf, huge or negative, a wrong or unknown ``units``, a hostile
``scale_factor``/``add_offset``, a coordinate or data variable removed, a clashing
``standard_name`` or ``cell_methods``, a blanked station id.

The section walk here is written independently of the project's BUFR code on purpose: a
fuzzer that shared the decoder's parsing would share its blind spots.

:func:`check_records` states what a reader must do with any input (see :class:`Problem`).
"""

from __future__ import annotations

import gzip
import io
import math
import random
import resource
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache, partial
from pathlib import Path
from typing import Any, Literal

from stratocast.obs.base import (
    ObsSource,
    Rejection,
    Report,
    SourceFileError,
    TextTally,
    Unparsed,
    text_chars,
)
from stratocast.obs.stations import StationCatalogue

Format = Literal["text", "gzip_text", "bufr", "netcdf"]
Op = Callable[[bytearray, random.Random], str]

# --------------------------------------------------------------------------- byte level


def _flip_bits(buf: bytearray, rng: random.Random) -> str:
    if not buf:
        return "flip: empty"
    pos = rng.randrange(len(buf))
    mask = 1 << rng.randrange(8)
    if rng.random() < 0.3:  # a burst: several bits of one byte
        mask |= rng.randrange(1, 256)
    old = buf[pos]
    buf[pos] ^= mask
    return f"flip byte {pos} 0x{old:02x}->0x{buf[pos]:02x}"


_NOISE = b"0123456789/=+-MQAZ \n\r\t\x00\x01\x7f\x80\xff"


def _insert_bytes(buf: bytearray, rng: random.Random) -> str:
    pos = rng.randrange(len(buf) + 1)
    n = rng.choice((1, 1, 2, 4, 16))
    ins = bytes(rng.choice(_NOISE) if rng.random() < 0.7 else rng.randrange(256) for _ in range(n))
    buf[pos:pos] = ins
    return f"insert {ins!r} at {pos}"


def _delete_bytes(buf: bytearray, rng: random.Random) -> str:
    if not buf:
        return "delete: empty"
    pos = rng.randrange(len(buf))
    n = min(rng.choice((1, 1, 2, 5, 40)), len(buf) - pos)
    del buf[pos : pos + n]
    return f"delete {n} bytes at {pos}"


def _truncate(buf: bytearray, rng: random.Random) -> str:
    at = rng.randrange(len(buf) + 1)
    del buf[at:]
    return f"truncate at {at}"


# --------------------------------------------------------------------------- text level


def _lines(buf: bytearray) -> list[bytes]:
    return bytes(buf).splitlines(keepends=True)


def _set_lines(buf: bytearray, lines: list[bytes]) -> None:
    buf[:] = b"".join(lines)


def _duplicate_line(buf: bytearray, rng: random.Random) -> str:
    lines = _lines(buf)
    if not lines:
        return "duplicate line: no lines"
    i = rng.randrange(len(lines))
    j = rng.randrange(len(lines) + 1)
    line = lines[i] if lines[i].endswith(b"\n") else lines[i] + b"\n"
    lines.insert(j, line)
    _set_lines(buf, lines)
    return f"duplicate line {i + 1} before line {j + 1}"


def _shuffle_lines(buf: bytearray, rng: random.Random) -> str:
    lines = _lines(buf)
    if len(lines) < 2:
        return "shuffle lines: fewer than 2"
    if lines[-1] and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    start = rng.randrange(len(lines) - 1)
    stop = min(len(lines), start + rng.choice((2, 3, 8)))
    window = lines[start:stop]
    rng.shuffle(window)
    lines[start:stop] = window
    _set_lines(buf, lines)
    return f"shuffle lines {start + 1}-{stop}"


def _tokens(buf: bytearray, digits: bool) -> list[tuple[int, int]]:
    """(start, end) byte spans of whitespace-separated groups (with a digit, if asked)."""
    spans, start = [], None
    for i, c in enumerate(bytes(buf) + b" "):
        if c in b" \t\r\n\x0b\x0c":
            if start is not None:
                if not digits or any(48 <= b <= 57 for b in buf[start:i]):
                    spans.append((start, i))
                start = None
        elif start is None:
            start = i
    return spans


def _digit_substitution(buf: bytearray, rng: random.Random) -> str:
    spans = _tokens(buf, digits=True)
    if not spans:
        return "digit substitution: no group with digits"
    a, b = rng.choice(spans)
    places = [i for i in range(a, b) if 48 <= buf[i] <= 57]
    i = rng.choice(places)
    old = chr(buf[i])
    new = rng.choice([d for d in "0123456789" if d != old])
    group = bytes(buf[a:b]).decode("latin-1")
    buf[i] = ord(new)
    return f"digit {old}->{new} in group {group!r} at byte {i}"


def _group_rewrite(buf: bytearray, rng: random.Random) -> str:
    spans = _tokens(buf, digits=True)
    if not spans:
        return "group rewrite: no group with digits"
    a, b = rng.choice(spans)
    group = bytes(buf[a:b]).decode("latin-1")
    fill = rng.choice("09/")
    for i in range(a, b):
        if 48 <= buf[i] <= 57:
            buf[i] = ord(fill)
    return f"group {group!r} at byte {a}: every digit -> {fill!r}"


def _group_drop_or_repeat(buf: bytearray, rng: random.Random) -> str:
    spans = _tokens(buf, digits=False)
    if not spans:
        return "group drop: no group"
    a, b = rng.choice(spans)
    group = bytes(buf[a:b])
    if rng.random() < 0.5:
        del buf[a:b]
        return f"drop group {group.decode('latin-1')!r} at byte {a}"
    buf[b:b] = b" " + group
    return f"repeat group {group.decode('latin-1')!r} at byte {a}"


_TEXT_OPS: tuple[tuple[Op, float], ...] = (
    (_flip_bits, 2.0),
    (_insert_bytes, 1.0),
    (_delete_bytes, 1.0),
    (_truncate, 0.5),
    (_duplicate_line, 1.0),
    (_shuffle_lines, 1.0),
    (_digit_substitution, 3.0),
    (_group_rewrite, 1.5),
    (_group_drop_or_repeat, 1.0),
)

# --------------------------------------------------------------------------- BUFR level


@dataclass(frozen=True)
class BufrSections:
    """Byte offsets of one message in a file: ``(start, end)`` per section present."""

    start: int  # of "BUFR"
    end: int  # after "7777" (as declared by section 0; may lie past the file when corrupt)
    sections: dict[int, tuple[int, int]]


def bufr_sections(data: bytes) -> list[BufrSections]:
    """The messages of ``data`` and their sections, as far as the lengths can be followed.

    A message whose lengths do not add up keeps only the sections that could be located.
    """
    out: list[BufrSections] = []
    pos = data.find(b"BUFR")
    while pos >= 0 and pos + 8 <= len(data):
        total = int.from_bytes(data[pos + 4 : pos + 7], "big")
        edition = data[pos + 7]
        secs: dict[int, tuple[int, int]] = {0: (pos, pos + 8)}
        at = pos + 8
        for s in (1, 2, 3, 4):
            if s == 2:
                # the "optional section 2 present" flag: byte 10 of section 1 (edition 4), 8 (3)
                flag_at = secs[1][0] + (9 if edition >= 4 else 7)
                if not 0 <= flag_at < len(data) or not data[flag_at] & 0x80:
                    continue
            n = _len_at(data, at)
            if n < 4 or at + n > len(data):
                break
            secs[s] = (at, at + n)
            at += n
        out.append(BufrSections(pos, pos + max(total, 8), secs))
        nxt = data.find(b"BUFR", pos + max(total, 4))
        pos = nxt if nxt > pos else data.find(b"BUFR", pos + 4)
    return out


def _len_at(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "big") if at + 3 <= len(data) else 0


def _pick_message(buf: bytearray, rng: random.Random, need: int) -> BufrSections | None:
    msgs = [m for m in bufr_sections(bytes(buf)) if need in m.sections]
    return rng.choice(msgs) if msgs else None


def _bufr_data_flip(buf: bytearray, rng: random.Random) -> str:
    m = _pick_message(buf, rng, 4)
    if m is None:
        return _flip_bits(buf, rng)
    a, b = m.sections[4]
    a += 4  # the data bits start after the 3-byte length and the reserved byte
    if a >= b:
        return "section 4 flip: no data bits"
    flips = []
    for _ in range(rng.choice((1, 1, 1, 2, 8))):
        bit = rng.randrange((b - a) * 8)
        buf[a + bit // 8] ^= 0x80 >> (bit % 8)
        flips.append(bit)
    return f"message at byte {m.start}: flip section-4 data bits {flips}"


def _bufr_length(buf: bytearray, rng: random.Random) -> str:
    msgs = bufr_sections(bytes(buf))
    if not msgs:
        return _delete_bytes(buf, rng)
    m = rng.choice(msgs)
    s = rng.choice(sorted(m.sections))
    at = m.sections[s][0] + (4 if s == 0 else 0)
    old = _len_at(bytes(buf), at)
    new = rng.choice(
        (0, 1, 3, old + rng.choice((-8, -2, -1, 1, 2, 8)), rng.randrange(1 << 24), (1 << 24) - 1)
    )
    new = min(max(new, 0), (1 << 24) - 1)
    buf[at : at + 3] = new.to_bytes(3, "big")
    return f"message at byte {m.start}: section {s} length {old} -> {new}"


def _bufr_header_flip(buf: bytearray, rng: random.Random) -> str:
    # sections 1 and 3: dates, table versions, subset count, compression flag, descriptors
    m = _pick_message(buf, rng, 3)
    if m is None:
        return _flip_bits(buf, rng)
    s = rng.choice((1, 3, 3))
    a, b = m.sections[s]
    pos = rng.randrange(a + 3, b) if b > a + 3 else a
    old = buf[pos]
    buf[pos] ^= 1 << rng.randrange(8)
    return f"message at byte {m.start}: section {s} byte {pos} 0x{old:02x}->0x{buf[pos]:02x}"


def _bufr_truncate_message(buf: bytearray, rng: random.Random) -> str:
    msgs = [m for m in bufr_sections(bytes(buf)) if m.end <= len(buf)]
    if not msgs:
        return _truncate(buf, rng)
    m = rng.choice(msgs)
    cut = rng.randrange(m.start + 1, m.end)
    del buf[cut : m.end]  # the next message follows the cut directly
    return f"message at byte {m.start}: cut at {cut} (message ends {m.end})"


def _bufr_duplicate_message(buf: bytearray, rng: random.Random) -> str:
    msgs = [m for m in bufr_sections(bytes(buf)) if m.end <= len(buf)]
    if not msgs:
        return _insert_bytes(buf, rng)
    m = rng.choice(msgs)
    buf[m.end : m.end] = buf[m.start : m.end]
    return f"message at byte {m.start}: repeated"


_BUFR_OPS: tuple[tuple[Op, float], ...] = (
    (_bufr_data_flip, 4.0),
    (_bufr_length, 2.0),
    (_bufr_header_flip, 2.0),
    (_bufr_truncate_message, 1.5),
    (_bufr_duplicate_message, 0.5),
    (_flip_bits, 1.0),
    (_insert_bytes, 0.5),
    (_delete_bytes, 0.5),
    (_truncate, 0.5),
)

# --------------------------------------------------------------------------- NetCDF level


def _h5_datasets(buf: bytearray) -> list[tuple[str, int, int]]:
    """(name, file offset, bytes) of every contiguously stored numeric HDF5 dataset; [] when the
    bytes do not open as HDF5 (an earlier mutation broke them)."""
    import h5py

    out: list[tuple[str, int, int]] = []
    try:
        with h5py.File(io.BytesIO(bytes(buf)), "r") as f:
            for name, obj in f.items():
                # variable-length strings are heap references, metadata rather than data
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind != "O":
                    offset = obj.id.get_offset()
                    size = obj.id.get_storage_size()
                    if offset is not None and size > 0:
                        out.append((str(name), int(offset), int(size)))
    except Exception:  # any failure: the caller falls back to a blind byte mutation
        return []
    return out


def _nc_data_flip(buf: bytearray, rng: random.Random) -> str:
    sets = _h5_datasets(buf)
    if not sets:
        return _flip_bits(buf, rng)
    name, a, n = rng.choice(sets)
    flips = []
    for _ in range(rng.choice((1, 1, 2, 8))):
        bit = rng.randrange(n * 8)
        if a + bit // 8 < len(buf):
            buf[a + bit // 8] ^= 0x80 >> (bit % 8)
            flips.append(bit)
    return f"variable {name!r} (data at byte {a}): flip bits {flips}"


def _nc_header_flip(buf: bytearray, rng: random.Random) -> str:
    # HDF5 metadata: superblock, object headers (attributes, dimensions), heaps, B-trees
    data = [(a, a + n) for _, a, n in _h5_datasets(buf)]
    if not data:
        return _flip_bits(buf, rng)
    for _ in range(1000):  # metadata is a fair share of a small file: a few draws find it
        pos = rng.randrange(len(buf))
        if not any(a <= pos < b for a, b in data):
            break
    else:
        return _flip_bits(buf, rng)
    old = buf[pos]
    buf[pos] ^= 1 << rng.randrange(8)
    return f"metadata byte {pos} 0x{old:02x}->0x{buf[pos]:02x}"


_HOSTILE_FLOATS = (math.nan, math.inf, -math.inf, 1e30, -1e30, 3.4e38, -3.4e38, -9999.0, 0.0, 1e-30)
_HOSTILE_INTS = (2**62, -(2**62), -(2**63), 0, 10**15, -1)
_HOSTILE_UNITS = (
    "furlong",
    "K",
    "hPa",
    "",
    "degrees_Celsius",
    "m s-1",
    "%",
    "1",
    "kg m^^-2",
    "days since 1800-01-01",
    "hours since 2017-13-45",
    "seconds since 9999-12-31",
)
_STANDARD_NAMES = (
    "air_temperature",
    "dew_point_temperature",
    "wind_speed",
    "air_pressure_at_mean_sea_level",
    "latitude",
    "longitude",
    "time",
    "no_such_name",
)


def _nc_edit(buf: bytearray, rng: random.Random) -> str:
    """One edit through HDF5 (the file stays well-formed): a value, attribute or variable."""
    import h5py
    import numpy as np

    store = io.BytesIO(bytes(buf))
    try:
        with h5py.File(store, "r+") as f:
            names = sorted(n for n, o in f.items() if isinstance(o, h5py.Dataset))
            if not names:
                raise ValueError("no variables")
            name = rng.choice(names)
            ds = f[name]
            what = rng.choice(("value", "value", "value", "units", "scale", "drop", "attr"))
            if what == "value" and ds.size:
                idx = [tuple(rng.randrange(n) for n in ds.shape) for _ in range(rng.choice((1, 3)))]
                kind = ds.dtype.kind
                if kind == "f":
                    v: object = rng.choice(_HOSTILE_FLOATS)
                elif kind in "iu":
                    v = rng.choice(_HOSTILE_INTS)
                    v = int(np.clip(v, np.iinfo(ds.dtype).min, np.iinfo(ds.dtype).max))
                else:
                    v = rng.choice(("", "\x00", "07", "DUPLICATE", "é" * 40))
                for i in idx:
                    ds[i] = v
                done = f"{name}{idx} = {v!r}"
            elif what == "units":
                unit = rng.choice(_HOSTILE_UNITS)
                ds.attrs["units"] = unit
                done = f"{name}.units = {unit!r}"
            elif what == "scale":
                key = rng.choice(("scale_factor", "add_offset"))
                factor = rng.choice((0.0, math.nan, 1e300, -1.0, 1e-300))
                ds.attrs[key] = np.float64(factor)
                done = f"{name}.{key} = {factor!r}"
            elif what == "drop" and name not in ("time", "station"):
                # dimension variables stay: without them HDF5 keeps dangling references
                del f[name]
                done = f"drop variable {name!r}"
            else:
                key, val = rng.choice(
                    (
                        ("standard_name", rng.choice(_STANDARD_NAMES)),
                        ("cell_methods", rng.choice(("time: mean", "time: point", "area: max"))),
                        ("cf_role", "timeseries_id"),
                    )
                )
                ds.attrs[key] = val
                done = f"{name}.{key} = {val!r}"
    except Exception:  # not HDF5 any more (an earlier mutation): damage bytes instead
        return "edit impossible, " + _flip_bits(buf, rng)
    buf[:] = store.getvalue()
    return "edit " + done


_NETCDF_OPS: tuple[tuple[Op, float], ...] = (
    (_nc_edit, 4.0),
    (_nc_data_flip, 3.0),
    # HDF5 metadata damage almost always makes the file unopenable (a whole-file error, as
    # allowed): enough of it to test that, not so much that few mutants reach the records
    (_nc_header_flip, 1.0),
    (_truncate, 0.3),
    (_flip_bits, 0.5),
    (_insert_bytes, 0.15),
    (_delete_bytes, 0.15),
)

# --------------------------------------------------------------------------- mutants


@dataclass(frozen=True)
class Mutant:
    data: bytes
    name: str  # sample file name the mutant is written under (readers parse dates from it)
    seed: int
    ops: tuple[str, ...]
    max_ops: int = 3  # part of the reproducer: the number of mutations is drawn up to it

    def describe(self) -> str:
        return f"{self.name} seed {self.seed} max_ops {self.max_ops}: " + "; ".join(self.ops)


def mutate(data: bytes, fmt: Format, seed: int, name: str = "", max_ops: int = 3) -> Mutant:
    """One mutant of ``data`` (1 to ``max_ops`` mutations), the same for the same arguments.

    ``gzip_text``: the decompressed text is mutated and recompressed (deterministically); one
    mutant in ten damages the compressed bytes instead, which a reader must report as a whole-
    file error.
    """
    rng = random.Random(f"{name}:{seed}")  # str seeds are hashed with SHA-512: stable
    n = rng.randint(1, max_ops)
    if fmt == "gzip_text":
        if rng.random() < 0.1:
            buf = bytearray(data)
            done = ["gzip bytes: " + rng.choices(*zip(*_TEXT_OPS[:4], strict=True))[0](buf, rng)]
            return Mutant(bytes(buf), name, seed, tuple(done), max_ops)
        buf = bytearray(gzip.decompress(data))
        done = _run_ops(buf, _TEXT_OPS, rng, n)
        return Mutant(gzip.compress(bytes(buf), mtime=0), name, seed, tuple(done), max_ops)
    buf = bytearray(data)
    ops = {"bufr": _BUFR_OPS, "netcdf": _NETCDF_OPS}.get(fmt, _TEXT_OPS)
    done = _run_ops(buf, ops, rng, n)
    return Mutant(bytes(buf), name, seed, tuple(done), max_ops)


def _run_ops(
    buf: bytearray, ops: tuple[tuple[Op, float], ...], rng: random.Random, n: int
) -> list[str]:
    funcs, weights = zip(*ops, strict=True)
    return [rng.choices(funcs, weights)[0](buf, rng) for _ in range(n)]


def mutants(path: Path, fmt: Format, seeds: Iterable[int], max_ops: int = 3) -> Iterator[Mutant]:
    data = path.read_bytes()
    for seed in seeds:
        yield mutate(data, fmt, seed, path.name, max_ops)


def text_of(data: bytes, fmt: Format, encoding: str = "latin-1") -> str | None:
    """The text a text reader sees in ``data`` (None for BUFR, NetCDF or a broken gzip stream).

    ``encoding`` is the reader's (bad bytes replaced, as readers do); latin-1 maps every byte
    to one character.
    """
    if fmt in ("bufr", "netcdf"):
        return None
    if fmt == "gzip_text":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, ValueError, zlib.error):
            return None
    return data.decode(encoding, "replace")


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Problem:
    """One way a reader failed a mutant.

    ``kind``: ``exception`` (something other than SourceFileError escaped ``read``),
    ``memory`` (reading it grew the process's peak memory by more than a limit),
    ``record_type`` (a record that is none of Report/Rejection/Unparsed/TextTally),
    ``record`` (a Report breaking the record contract: non-finite or non-float value, position
    off the globe, naive time), ``tally`` (TextTally not exactly once and last, or the text
    identity broken, or its total not the file's non-whitespace character count).
    """

    kind: str
    detail: str
    where: str = ""  # for exceptions: the innermost frame, "file:line in function"


@dataclass
class ReadOutcome:
    records: int = 0
    reports: int = 0
    rejections: int = 0
    unparsed: int = 0
    file_error: str | None = None  # the SourceFileError text, when the whole file was refused
    problems: list[Problem] = field(default_factory=list)


def _top_frame(err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    if not tb:
        return ""
    f = tb[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


def _report_problem(r: Report) -> str | None:
    for var, v in r.values.items():
        if not isinstance(v, float) or not math.isfinite(v):
            return f"{r.report_id}: {var}={v!r} is not a finite float"
    if not (-90.0 <= r.lat <= 90.0 and -180.0 <= r.lon <= 180.0):
        return f"{r.report_id}: position ({r.lat}, {r.lon}) off the globe"
    if r.time.tzinfo is None or r.time.utcoffset() != timedelta(0):
        return f"{r.report_id}: time {r.time!r} is not UTC"
    return None


def check_read(
    source: ObsSource, path: Path, catalogue: StationCatalogue | None, text: str | None = None
) -> ReadOutcome:
    """Read ``path`` fully and judge every record; ``text`` (when a text format) is the file's
    text, against which a TextTally's total is checked."""
    out = ReadOutcome()
    records: list[object] = []
    try:
        for rec in source.read(path, catalogue):
            records.append(rec)
    except SourceFileError as err:
        out.file_error = str(err)
    except Exception as err:  # what the fuzz suite is here to find
        detail = f"{type(err).__name__}: {err}"[:500]
        out.problems.append(Problem("exception", detail, _top_frame(err)))
    out.records = len(records)
    chars = 0
    tallies: list[tuple[int, TextTally]] = []
    for i, r in enumerate(records):
        if isinstance(r, Report):
            out.reports += 1
            chars += text_chars(r.raw)
            bad = _report_problem(r)
            if bad is not None:
                out.problems.append(Problem("record", bad))
        elif isinstance(r, Rejection):
            out.rejections += 1
            chars += text_chars(r.raw)
        elif isinstance(r, Unparsed):
            out.unparsed += 1
            chars += text_chars(r.text)
        elif isinstance(r, TextTally):
            tallies.append((i, r))
        else:
            out.problems.append(Problem("record_type", f"record {i}: {type(r).__name__}"))
    if tallies and out.file_error is None and not any(p.kind == "exception" for p in out.problems):
        _check_tally(out, tallies, len(records), chars, text)
    return out


def _check_tally(
    out: ReadOutcome, tallies: list[tuple[int, TextTally]], n: int, chars: int, text: str | None
) -> None:
    if len(tallies) != 1 or tallies[0][0] != n - 1:
        where = [i for i, _ in tallies]
        out.problems.append(
            Problem("tally", f"TextTally at records {where} of {n}: not once, last")
        )
        return
    t = tallies[0][1]
    if t.chars_total != chars + t.chars_framing:
        out.problems.append(
            Problem(
                "tally",
                f"text identity: total {t.chars_total} != records {chars} + framing "
                f"{t.chars_framing} (off by {t.chars_total - chars - t.chars_framing})",
            )
        )
    if text is not None and t.chars_total != text_chars(text):
        out.problems.append(
            Problem("tally", f"chars_total {t.chars_total} != file's {text_chars(text)}")
        )


# --------------------------------------------------------------------------- the samples


@cache
def _airports() -> StationCatalogue:
    return StationCatalogue.from_airportsdata()


@cache
def _wmo_csv(path: str, west_positive: bool) -> StationCatalogue:
    from stratocast.obs.sources.synop_tac import catalogue_from_wmo_csv

    return catalogue_from_wmo_csv(path, west_positive=west_positive)


@cache
def _isd_history(path: str) -> StationCatalogue:
    from stratocast.obs.isd_history import load_isd_history

    return load_isd_history(path).catalogue


@dataclass(frozen=True)
class Target:
    """One registered source and the real samples it is fuzzed on."""

    label: str  # source, or source/sample group
    source: str  # registry name
    fmt: Format
    files: tuple[Path, ...]
    catalogue: Callable[[], StationCatalogue | None]
    options: dict[str, Any] = field(default_factory=dict)
    head_messages: int = 0  # BUFR: fuzz only the first messages of each file (0 = all)
    head_lines: int = 0  # text: fuzz only the first lines of each file (0 = all)
    encoding: str = "latin-1"  # how the reader decodes the text (for the TextTally total)
    # a sample derived from a real file: file -> (name the mutants get, bytes)
    derive: Callable[[Path], tuple[str, bytes]] | None = None

    def load(self, path: Path) -> tuple[str, bytes]:
        """(file name, bytes) mutants of sample ``path`` start from."""
        if self.derive is not None:
            return self.derive(path)
        return path.name, self.sample(path)

    def sample(self, path: Path) -> bytes:
        """The bytes mutants of ``path`` start from (the file, or its head)."""
        if self.derive is not None:
            return self.derive(path)[1]
        data = path.read_bytes()
        if self.head_messages:
            msgs = bufr_sections(data)[: self.head_messages]
            data = b"".join(data[m.start : m.end] for m in msgs)
        if self.head_lines and self.fmt == "gzip_text":
            text = gzip.decompress(data).splitlines(keepends=True)[: self.head_lines]
            data = gzip.compress(b"".join(text), mtime=0)
        elif self.head_lines and self.fmt == "text":
            data = b"".join(data.splitlines(keepends=True)[: self.head_lines])
        return data


def targets(data: Path) -> list[Target]:
    """The fuzz targets over the shared sample data at ``data`` (missing samples left out)."""

    def files(pattern: str) -> tuple[Path, ...]:
        return tuple(sorted(p for p in data.glob(pattern) if p.is_file()))

    tac = data / "synop_tac"
    found = [
        Target(
            "metar",
            "metar",
            "text",
            files("metar/*.txt"),
            _airports,
            {"reference_time": "2024-09-08T14:00:00+00:00"},
        ),
        Target(
            "synop_tac/gts",
            "synop_tac",
            "text",
            files("synop_tac/gts_data/WX.00"),
            partial(_wmo_csv, str(tac / "gts_data" / "station_list.csv"), True),
            {"reference_time": "2023-01-31T06:00"},
        ),
        Target(
            "synop_tac/romania",
            "synop_tac",
            "text",
            files("synop_tac/example_with_bufr/A_*.txt"),
            partial(_wmo_csv, str(tac / "example_with_bufr" / "station_list.csv"), False),
        ),
        Target(
            "synop_tac/wis2box",
            "synop_tac",
            "text",
            files("synop_tac/wis2box_data/A_*.txt"),
            partial(_wmo_csv, str(tac / "wis2box_data" / "station_list.csv"), False),
        ),
        Target(
            "isd_lite",
            "isd_lite",
            "gzip_text",
            files("isd_lite/*.gz"),
            partial(_isd_history, str(data / "stations" / "isd-history.csv")),
        ),
        Target(
            "synop_bufr",
            "synop_bufr",
            "bufr",
            tuple(p for p in files("bufr/*.bufr") if not p.name.startswith(("temp_", "aircraft_"))),
            lambda: None,
        ),
        Target("temp_bufr", "temp_bufr", "bufr", files("bufr/temp_*.bufr"), lambda: None),
        Target(
            "aircraft_bufr", "aircraft_bufr", "bufr", files("bufr/aircraft_*.bufr"), lambda: None
        ),
        # 61 messages of ~850 scan spots each: three messages keep a mutant's read short
        Target(
            "hirs_bufr",
            "hirs_bufr",
            "bufr",
            files("satellite/metop_hirs_*.bufr"),
            lambda: None,
            head_messages=3,
        ),
    ]
    history = data / "stations" / "isd-history.csv"
    if history.is_file():
        found.append(
            Target(
                "table",
                "table",
                "text",
                files("isd_lite/07*-2017.gz")[:2],
                partial(_isd_history, str(history)),
                dict(IEM_OPTIONS),
                encoding="utf-8-sig",
                derive=partial(iem_csv, history=str(history), lines=1500),
            )
        )
        # no real CF-DSG file in shared data: three ISD-Lite stations as a WeatherReal file
        found.append(
            Target(
                "cf_dsg",
                "cf_dsg",
                "netcdf",
                files("isd_lite/07*-2017.gz")[:2],
                partial(_isd_history, str(history)),
                derive=partial(weatherreal_nc, history=str(history), hours=500),
            )
        )
    return [t for t in found if t.files]


def weatherreal_nc(path: Path, history: str, hours: int, stations: int = 3) -> tuple[str, bytes]:
    """The first ``hours`` reports of ISD-Lite file ``path`` and of the next ``stations - 1``
    files of its year, written by the verification WeatherReal writer (CF ``station x time``
    NetCDF4) in a temporary folder; deterministic bytes (HDF5 here stores no timestamps)."""
    return _weatherreal_nc(str(path), history, hours, stations)


@cache
def _weatherreal_nc(path: str, history: str, hours: int, stations: int) -> tuple[str, bytes]:
    import tempfile

    from stratocast.obs.sources.isd_lite import IsdLiteSource
    from stratocast.obs.table import collect
    from stratocast.verify.io_weatherreal import write_weatherreal

    first = Path(path)
    year = first.name.rsplit("-", 1)[1]
    siblings = sorted(first.parent.glob(f"*-{year}"))
    at = siblings.index(first)
    chosen = [siblings[(at + i) % len(siblings)] for i in range(min(stations, len(siblings)))]
    catalogue = _isd_history(history)
    records: list[Report] = []
    for file in chosen:
        reports = (r for r in IsdLiteSource().read(file, catalogue) if isinstance(r, Report))
        records.extend(r for _, r in zip(range(hours), reports, strict=False))
    name = first.name.replace(".gz", ".nc")
    with tempfile.TemporaryDirectory() as work:
        out = write_weatherreal(collect(records, "isd_lite").values, Path(work) / name)
        return name, out.read_bytes()


# The table source has no real CSV sample in shared data: an ISD-Lite year written as an IEM
# ASOS download would write it (°F, knots, hPa, M for missing) is the closest real thing.
IEM_OPTIONS: dict[str, Any] = {
    "station": "station",
    "time": "valid",
    "lat": "lat",
    "lon": "lon",
    "elevation": "elevation",
    "columns": {
        "tmpf": {"variable": "t2m", "units": "degF"},
        "dwpf": {"variable": "d2m", "units": "degF"},
        "sknt": {"variable": "ws10", "units": "kt"},
        "drct": {"variable": "wd10", "units": "degree"},
        "mslp": {"variable": "msl", "units": "hPa"},
    },
}


def iem_csv(path: Path, history: str, lines: int) -> tuple[str, bytes]:
    """The first ``lines`` hours of ISD-Lite file ``path`` as an IEM-style CSV."""
    station_id = path.name.rsplit("-", 1)[0]
    s = _isd_history(history).get(station_id)
    pos = "M,M,M" if s is None else f"{s.lon:.3f},{s.lat:.3f},{s.elevation:.1f}"
    out = ["station,valid,lon,lat,elevation,tmpf,dwpf,sknt,drct,mslp"]

    def cell(v: int, scale: float, offset: float = 0.0) -> str:
        return "M" if v == -9999 else f"{v * scale + offset:.2f}"

    text = gzip.decompress(path.read_bytes()).decode("ascii", "replace")
    for line in text.splitlines()[:lines]:
        f = [int(x) for x in line.split()]
        valid = f"{f[0]:04d}-{f[1]:02d}-{f[2]:02d} {f[3]:02d}:00"
        cells = [
            cell(f[4], 0.18, 32.0),  # 0.1 °C -> °F
            cell(f[5], 0.18, 32.0),
            cell(f[8], 0.1 * 3600.0 / 1852.0),  # 0.1 m/s -> kt
            "M" if f[7] == -9999 else str(f[7]),
            cell(f[6], 0.1),  # 0.1 hPa
        ]
        out.append(",".join([station_id, valid, pos, *cells]))
    return path.name.replace(".gz", ".csv"), ("\n".join(out) + "\n").encode()


# --------------------------------------------------------------------------- the harness


@dataclass
class Failure:
    target: str
    mutant: str  # Mutant.describe(): file, seed and the mutations, enough to reproduce
    problem: Problem


@dataclass
class TargetResult:
    label: str
    inputs: int = 0
    file_errors: int = 0
    records: int = 0
    reports: int = 0
    rejections: int = 0
    unparsed: int = 0
    failures: list[Failure] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(f.problem.kind == kind for f in self.failures)

    def add(self, out: ReadOutcome) -> None:
        self.inputs += 1
        self.file_errors += out.file_error is not None
        self.records += out.records
        self.reports += out.reports
        self.rejections += out.rejections
        self.unparsed += out.unparsed

    def merge(self, other: TargetResult) -> None:
        for f in ("inputs", "file_errors", "records", "reports", "rejections", "unparsed"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.failures.extend(other.failures)


def write_mutant(m: Mutant, work: Path) -> Path:
    """Write ``m`` under its sample's name (readers date files by name) in its own folder."""
    folder = work / f"seed{m.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / m.name
    path.write_bytes(m.data)
    return path


def _peak_rss_mb() -> float:
    # ru_maxrss is in kB on Linux (bytes on macOS: there the growth figures read 1024x high)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fuzz(
    target: Target,
    seeds: Iterable[int],
    work: Path,
    max_ops: int = 3,
    files: Iterable[int] | None = None,
    rss_growth_mb: float | None = None,
) -> TargetResult:
    """Every file of ``target`` (or the ``files`` indices) x every seed: mutate, read, check;
    mutants are deleted after.

    ``rss_growth_mb``: also a ``memory`` problem for a mutant during whose read the process's
    peak resident memory grew by more than this (each file is first read unmutated, so the
    reader's one-time tables and caches do not count).
    """
    from stratocast.obs.registry import get_source

    source = get_source(target.source, **target.options)
    catalogue = target.catalogue()
    result = TargetResult(target.label)
    seeds = list(seeds)
    chosen = [target.files[i] for i in files] if files is not None else list(target.files)
    for path in chosen:
        name, data = target.load(path)
        if rss_growth_mb is not None:
            warm = write_mutant(Mutant(data, name, -1, ()), work)
            check_read(source, warm, catalogue)
            warm.unlink()
        for seed in seeds:
            m = mutate(data, target.fmt, seed, name, max_ops)
            file = write_mutant(m, work)
            before = _peak_rss_mb()
            try:
                text = text_of(m.data, target.fmt, target.encoding)
                out = check_read(source, file, catalogue, text)
            finally:
                file.unlink()
            grew = _peak_rss_mb() - before
            if rss_growth_mb is not None and grew > rss_growth_mb:
                detail = f"peak memory grew {grew:.0f} MB (to {before + grew:.0f} MB)"
                out.problems.append(Problem("memory", detail))
            result.add(out)
            result.failures.extend(Failure(target.label, m.describe(), p) for p in out.problems)
    return result
