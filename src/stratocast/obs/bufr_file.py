"""BUFR files as a stream of messages, shared by every BUFR reader.

A corrupt or truncated message becomes one Rejection (``file:message``) and the scan goes on
at the next ``BUFR`` marker, so one bad message never hides the rest of a file.

Isolation: whatever one message or subset raises while it is decoded (an ecCodes error, an
IndexError from a damaged layout, a value that does not fit a date, ...) becomes the
Rejection of that message or subset with the exception's type and text; only a file that
cannot be read at all is a SourceFileError. ecCodes itself is protected from one crash class:
a section 3 whose replications run past its end makes ecCodes 2.50 segfault in ``unpack``, so
every message passes :func:`stratocast.obs.bufr_decode.preflight` before ecCodes opens it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import eccodes

from stratocast.obs.base import Rejection, SourceFileError
from stratocast.obs.bufr_decode import CorruptBufr, UnsupportedBufr, preflight


def is_missing(v: Any) -> bool:
    # ecCodes marks missing doubles as -1e100 and missing integers as 2**31-1
    return v is None or v == eccodes.CODES_MISSING_LONG or v <= -1e99 or v != v


def error_text(err: BaseException) -> str:
    """``Type: text`` of an exception, for a Rejection's reason (capped: a damaged message
    can make an error message long)."""
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 300 else text[:297] + "..."


def non_finite(values: dict[str, float]) -> str | None:
    """The reason a subset's values cannot be stored (an infinite or NaN value), or None.

    BUFR integers decode to finite numbers; this guards the conversions after them (wind
    components, derived pressures) so nothing non-finite reaches the store as a value.
    """
    if all(map(math.isfinite, values.values())):  # the common case, without a list
        return None
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    return f"non-finite value of {', '.join(bad)}"


def corrupt(where: str, msg: bytes, problem: str) -> Rejection:
    """The ``corrupt_message`` Rejection of message ``where`` (raw: its first 64 bytes)."""
    return Rejection(where, "corrupt_message", f"{where}: {problem}", msg[:64].hex())


def open_handle(msg: bytes, where: str) -> int | Rejection:
    """An ecCodes handle for one message (the caller releases it), or the Rejection.

    The message's sections 0-3 are checked first (:func:`preflight`): a structurally
    impossible one is rejected without reaching ecCodes, which can crash on it.
    """
    try:
        preflight(msg)
    except CorruptBufr as err:
        return corrupt(where, msg, f"corrupt sections 1-3: {err}")
    except UnsupportedBufr:
        pass  # e.g. BUFR edition 2: ecCodes may still read it
    try:
        handle: int = eccodes.codes_new_from_message(msg)
    except Exception as err:  # any failure to open is this message's rejection
        return corrupt(where, msg, f"ecCodes cannot open: {error_text(err)}")
    return handle


L = TypeVar("L")


@dataclass(frozen=True)
class Unpacked(Generic[L]):
    """An unpacked ecCodes handle with the header facts every reader checks first."""

    handle: int
    subsets: int
    category: int
    centre: int
    compressed: bool
    layout: L  # what the reader's key walk learnt about the message


@contextmanager
def unpacked(
    msg: bytes, where: str, walk: Callable[[int, bool], L]
) -> Iterator[Unpacked[L] | Rejection]:
    """Open and unpack one message through ecCodes and walk its keys; the handle is released
    on exit. A message ecCodes cannot open or unpack becomes a ``corrupt_message`` Rejection.
    """
    h = open_handle(msg, where)
    if isinstance(h, Rejection):
        yield h
        return
    try:
        try:
            # Attribute keys (units, widths, references of every element) are never read by
            # the readers; not materialising them makes unpacking ~1.4x faster.
            eccodes.codes_set(h, "skipExtraKeyAttributes", 1)
            eccodes.codes_set(h, "unpack", 1)
            compressed = bool(eccodes.codes_get(h, "compressedData"))
            found: Unpacked[L] | Rejection = Unpacked(
                h,
                int(eccodes.codes_get(h, "numberOfSubsets")),
                int(eccodes.codes_get(h, "dataCategory")),
                int(eccodes.codes_get(h, "bufrHeaderCentre")),
                compressed,
                walk(h, compressed),
            )
        except Exception as err:  # isolate the message, whatever it raised
            found = corrupt(where, msg, f"ecCodes cannot unpack: {error_text(err)}")
        yield found
    finally:
        eccodes.codes_release(h)


def each_subset(n: int, where: str, decode: Callable[[int, str], Any]) -> Iterator[Any]:
    """``decode(s, report_id)`` for every subset; any exception in one subset becomes its
    Rejection (check ``corrupt_message``, the exception text as reason) and the next subset
    is decoded."""
    for s in range(n):
        report_id = f"{where}:{s + 1}"
        try:
            record = decode(s, report_id)
        except Exception as err:  # isolate the subset, whatever it raised
            record = Rejection(
                report_id, "corrupt_message", f"{report_id}: cannot decode: {error_text(err)}", ""
            )
        yield record


def split_messages(data: bytes) -> Iterator[tuple[int, bytes | None, str]]:
    """Yield (byte offset, message bytes or None, error) for each ``BUFR`` marker in ``data``.

    Lengths come from section 0; a message whose declared end is past the file or lacks the
    ``7777`` end marker is reported and the scan resumes at the next ``BUFR`` marker, so one
    corrupt message never hides the rest of the file.
    """
    pos = data.find(b"BUFR")
    while pos >= 0:
        if pos + 8 > len(data):
            yield pos, None, "truncated section 0"
            return
        length = int.from_bytes(data[pos + 4 : pos + 7], "big")
        edition = data[pos + 7]
        end = pos + length
        if edition < 2 or length < 16:
            yield pos, None, f"unsupported BUFR edition {edition} or bad length {length}"
            pos = data.find(b"BUFR", pos + 4)
        elif end > len(data) or data[end - 4 : end] != b"7777":
            yield pos, None, f"truncated or corrupt: declared length {length}, no 7777 at its end"
            pos = data.find(b"BUFR", pos + 4)
        else:
            yield pos, data[pos:end], ""
            pos = data.find(b"BUFR", end)


def bufr_messages(path: Path) -> Iterator[tuple[str, bytes] | Rejection]:
    """Yield ``(where, message bytes)`` per intact message and a Rejection per broken one.

    ``where`` is ``<file name>:<message number>`` (1-based), the id readers build on.
    Raises SourceFileError when the file cannot be read or holds no BUFR message at all.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SourceFileError(f"cannot read {path}: {err.strerror or err}") from None
    if b"BUFR" not in data:
        raise SourceFileError(f"{path}: no BUFR message found (not a BUFR file?)")
    name = path.name
    for index, (offset, msg, error) in enumerate(split_messages(data), start=1):
        where = f"{name}:{index}"
        if msg is None:
            reason = f"{name}: message {index} at byte {offset}: {error}"
            yield Rejection(where, "corrupt_message", reason, data[offset : offset + 64].hex())
        else:
            yield where, msg


def _key_names_public(h: int) -> list[str]:
    it = eccodes.codes_bufr_keys_iterator_new(h)
    names = []
    try:
        while eccodes.codes_bufr_keys_iterator_next(it):
            names.append(eccodes.codes_bufr_keys_iterator_get_name(it))
    finally:
        eccodes.codes_bufr_keys_iterator_delete(it)
    return names


def _key_names_fast(h: int) -> list[str]:
    # Same walk as _key_names_public through the cffi layer directly: the public wrappers
    # re-cast the iterator handle on every call, which made the walk ~60% of decode time.
    it = _lib.codes_bufr_keys_iterator_new(_gribapi.get_handle(h), 0)
    if it == _ffi.NULL:
        raise eccodes.InvalidKeysIteratorError("cannot create BUFR keys iterator")
    nxt, get, string = (
        _lib.codes_bufr_keys_iterator_next,
        _lib.codes_bufr_keys_iterator_get_name,
        _ffi.string,
    )
    names = []
    try:
        while nxt(it):
            names.append(string(get(it)))
    finally:
        _lib.codes_bufr_keys_iterator_delete(it)
    return [n.decode("ascii", "replace") for n in names]


try:
    from gribapi import gribapi as _gribapi
    from gribapi.bindings import ffi as _ffi
    from gribapi.bindings import lib as _lib

    key_names = _key_names_fast
except ImportError:  # a future eccodes-python without these internals: correct, just slower
    key_names = _key_names_public
