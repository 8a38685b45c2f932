"""Table B/D knowledge for the BUFR decoder, taken from ecCodes itself (never hand-typed).

ecCodes compiles its definition tables into the library (MEMFS): there are no table files to
read. What it exposes, without any data, is the expansion of descriptors through the tables
that a header selects: on a probe handle from the BUFR4 sample with the message's master
table, versions, centre and sub-centre, ``unexpandedDescriptors = [d]`` yields
``expandedDescriptors`` with ``expandedOriginalWidths/Scales/References``, ``expandedUnits``
and ``expandedAbbreviations`` (the key names ecCodes itself uses).

Two properties of that expansion shape how it is used:

* replication descriptors stay in it, with X re-counted over the *expanded* descriptors;
* operators (2XXYYY) are applied by ecCodes and removed, and the widths it reports are the
  Table B ("original") ones. So the message's section-3 list is expanded here one top-level
  descriptor at a time, keeping its top-level operators in place for the decoder to apply.
  An operator *inside* a Table D sequence stays invisible; the decoder's exact-length check
  catches width changes, and the verification tests compare every value with ecCodes.

Associated fields (204YYY, shown as 999999) and anything else not understood raise
:class:`UnsupportedBufr`. Probes are cached per (tables, descriptor) in memory.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import eccodes

_MISSING = 2147483647

TablesKey = tuple[int, int, int, int, int]  # master table, master/local version, centre, sub


class UnsupportedBufr(Exception):
    """A message this decoder does not handle; the caller falls back to ecCodes' unpack."""


class CorruptBufr(UnsupportedBufr):
    """A message whose structure is impossible (e.g. a replication running past section 3).

    Callers catch it *before* UnsupportedBufr and reject the message instead of falling back:
    ecCodes 2.50 crashes the process (SIGSEGV in ``unpack``) on some such messages.
    """


@dataclass(frozen=True, slots=True)
class Expanded:
    """An element (span -1), an operator (span -2) or a replication of the next ``span``."""

    code: int
    width: int
    scale: int
    reference: int
    unit: str
    name: str
    span: int = -1

    @property
    def kind(self) -> str:
        return {-1: "element", -2: "operator"}.get(self.span, "replication")


_CACHE: dict[tuple[TablesKey, int], tuple[Expanded, ...]] = {}

# ecCodes 2.50 keeps ~42 MB for every new handle whose selection names local tables it does
# not have (DWD's centre 78 with local version 0; any damaged version byte): measured, the 30
# probes of the first DWD message grew the process by 1.25 GB. A selection whose local tables
# exist costs one table load (~45 MB) and nothing after it. (A reused or cloned handle does
# not help: the first reports stale widths for a new descriptor, the second grows the same.)
# So: local version 0 or 255 means no local tables (WMO Manual on Codes) and is probed under
# the BUFR4 sample's own centre 98, which does not grow; any other selection keeps its full
# key (local tables may redefine WMO entries: ECMWF's local version 1 does) until its second
# probe shows the growth of missing tables, after which it is probed as master-only too (what
# ecCodes itself decodes then; the first-message cross-check in bufr_decode guards that); and
# a process takes at most _MAX_SELECTIONS distinct selections (a file of damaged keys then
# goes to ecCodes' own unpack, which does not grow).
_MAX_SELECTIONS = 16
_GROWTH_BYTES = 16 << 20  # a missing-tables probe grows by ~42 MB; a cached one by 0
_MASTER_ONLY = (0, 98, 0)  # local version, centre, sub-centre of the BUFR4 sample
_PROBES: dict[TablesKey, int] = {}  # probes so far per selection
_NO_LOCAL: set[TablesKey] = set()  # selections seen to have no local tables in ecCodes
_LOCK = threading.Lock()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _selection(tables: TablesKey) -> TablesKey:
    if tables[2] in (0, 255) or tables in _NO_LOCAL:
        return (tables[0], tables[1], *_MASTER_ONLY)
    return tables


def _resident() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # no procfs: no detection (the selection bound still holds)
        return 0


def _probe(tables: TablesKey, descriptor: int) -> tuple[Expanded, ...]:
    with _LOCK:
        sel = _selection(tables)
        n = _PROBES.get(sel)
        if n is None and len(_PROBES) >= _MAX_SELECTIONS:
            raise UnsupportedBufr(
                f"more than {_MAX_SELECTIONS} BUFR table selections in this process "
                f"(master version {sel[1]}, local version {sel[2]}, centre {sel[3]}, "
                f"sub-centre {sel[4]}): left to ecCodes"
            )
        _PROBES[sel] = (n or 0) + 1
        if n != 1 or sel[2:] == _MASTER_ONLY:
            return _probe_with(sel, descriptor)
        before = _resident()
        found = _probe_with(sel, descriptor)
        if before and _resident() - before > _GROWTH_BYTES:
            _NO_LOCAL.add(sel)
        return found


def _probe_with(sel: TablesKey, descriptor: int) -> tuple[Expanded, ...]:
    master_table, mver, lver, centre, sub = sel
    h = eccodes.codes_bufr_new_from_samples("BUFR4")
    try:
        for key, value in (
            ("masterTableNumber", master_table),
            ("bufrHeaderCentre", centre),
            ("bufrHeaderSubCentre", sub),
            ("masterTablesVersionNumber", mver),
            ("localTablesVersionNumber", lver),
        ):
            eccodes.codes_set(h, key, value)
        eccodes.codes_set_array(h, "unexpandedDescriptors", [descriptor])
        codes = [int(c) for c in eccodes.codes_get_array(h, "expandedDescriptors")]
        if 999999 in codes:
            raise UnsupportedBufr(f"{descriptor:06d} holds associated fields (204YYY)")
        widths = eccodes.codes_get_array(h, "expandedOriginalWidths")
        scales = eccodes.codes_get_array(h, "expandedOriginalScales")
        refs = eccodes.codes_get_array(h, "expandedOriginalReferences")
        units = eccodes.codes_get_string_array(h, "expandedUnits")
        names = eccodes.codes_get_string_array(h, "expandedAbbreviations")
    except eccodes.CodesInternalError as err:
        raise UnsupportedBufr(f"ecCodes cannot expand {descriptor:06d}: {err}") from None
    finally:
        eccodes.codes_release(h)
    if not len(codes) == len(widths) == len(scales) == len(refs) == len(units) == len(names):
        raise UnsupportedBufr(f"ecCodes' expansion arrays of {descriptor:06d} differ in length")
    out = []
    for c, w, s, r, u, n in zip(codes, widths, scales, refs, units, names, strict=True):
        if int(w) == _MISSING:  # replication; ecCodes' X may exceed 99 after expansion
            span = (c - 100000) // 1000
            if c // 100000 != 1 or span < 0:
                # an element these tables do not define (e.g. a local descriptor under a
                # damaged sub-centre): taken as a replication it would loop the compiler
                raise UnsupportedBufr(f"{descriptor:06d}: element {c:06d} has no width here")
            out.append(Expanded(100000 + c % 1000, 0, 0, 0, "", "", span))
        else:
            out.append(Expanded(c, int(w), int(s), int(r), str(u), str(n)))
    return tuple(out)


def expand_one(tables: TablesKey, descriptor: int) -> tuple[Expanded, ...]:
    """ecCodes' expansion of one Table B or D descriptor (cached per tables)."""
    key = (_selection(tables), descriptor)
    found = _CACHE.get(key)
    if found is None:
        found = _probe(tables, descriptor)
        _CACHE[key] = found
    return found


def _item(tables: TablesKey, top: tuple[int, ...], i: int) -> tuple[list[Expanded], int]:
    d = top[i]
    f = d // 100000
    if f == 2:
        return [Expanded(d, 0, 0, 0, "", "", -2)], i + 1
    if f != 1:
        return list(expand_one(tables, d)), i + 1
    x, y = (d // 1000) % 100, d % 1000
    body: list[Expanded] = []
    j = i + 1
    if y == 0:  # the factor descriptor follows the replication and is not counted in X
        if j >= len(top):
            raise CorruptBufr(f"delayed replication {d:06d} at the end of section 3")
        body += expand_one(tables, top[j])
        j += 1
    for _ in range(x):
        if j >= len(top):
            raise CorruptBufr(f"replication {d:06d} runs past the end of section 3")
        part, j = _item(tables, top, j)
        body += part
    span = len(body) - (1 if y == 0 else 0)
    return [Expanded(100000 + y, 0, 0, 0, "", "", span), *body], j


def check_structure(descriptors: tuple[int, ...]) -> None:
    """Raise CorruptBufr unless every top-level replication in section 3 has the descriptors
    it counts (and a delayed one its factor), and fixed replications unroll to at most
    ``MAX_UNROLLED`` descriptors. Needs no tables: run before ecCodes sees the message,
    because ecCodes' unpack crashes the process (SIGSEGV) on a replication running past the
    end, and nested fixed replications (255 x 255 x ...) would exhaust memory."""
    i, total = 0, 0
    while i < len(descriptors):
        i, n = _skip(descriptors, i)
        total += n
        if total > MAX_UNROLLED:
            raise CorruptBufr(f"section 3 unrolls to more than {MAX_UNROLLED} descriptors")
    _check_bitmaps(descriptors)


# operators whose data are described by a bitmap of 0-31-031 (data present indicators);
# ecCodes' unpack also crashes on a bitmap whose replicated element is anything else (seen:
# one flipped bit turning 031031 into 030031 in a MetOp HIRS message)
_BITMAP_USERS = frozenset({222000, 223000, 224000, 225000, 232000})
_DEFINE_BITMAP, _BITMAP_REFS = 236000, frozenset({237000, 237255, 235000})
_DATA_PRESENT = 31031
_DELAYED_FACTORS = frozenset({31000, 31001, 31002})


def _check_bitmaps(top: tuple[int, ...]) -> None:
    """Raise CorruptBufr unless every bitmap a 2-22/23/24/25/32-000 operator or a 2-36-000
    definition introduces is made of 0-31-031: a run of it, or a replication of it (delayed
    with a 0-31-000/001/002 factor). A 2-37-000 reuse or a 2-35-000 cancel needs none."""
    for k, d in enumerate(top):
        if d == _DEFINE_BITMAP or (
            d in _BITMAP_USERS
            and k + 1 < len(top)
            and top[k + 1] not in _BITMAP_REFS
            and top[k + 1] != _DEFINE_BITMAP
        ):
            _bitmap_at(top, k + 1, d)


def _bitmap_at(top: tuple[int, ...], j: int, op: int) -> None:
    if j >= len(top):
        raise CorruptBufr(f"operator {op:06d} at the end of section 3: its bitmap is missing")
    d = top[j]
    if d == _DATA_PRESENT:
        return
    if d // 100000 == 1 and (d // 1000) % 100 == 1:
        k = j + 1 + (1 if d % 1000 == 0 else 0)
        if d % 1000 == 0 and (j + 1 >= len(top) or top[j + 1] not in _DELAYED_FACTORS):
            raise CorruptBufr(f"bitmap of operator {op:06d}: delayed replication lacks its factor")
        if k < len(top) and top[k] == _DATA_PRESENT:
            return
    raise CorruptBufr(
        f"bitmap of operator {op:06d} is not made of 031031 (data present indicators): "
        f"found {d:06d}"
    )


# far beyond any real template (IASI's 8461 channels unroll to ~50 000 elements)
MAX_UNROLLED = 1_000_000


def _skip(top: tuple[int, ...], i: int) -> tuple[int, int]:
    """(index after the item at ``i``, descriptors it unrolls to, delayed bodies once)."""
    d = top[i]
    if d // 100000 != 1:
        return i + 1, 1
    x, y = (d // 1000) % 100, d % 1000
    j = i + 1 + (1 if y == 0 else 0)  # a delayed replication's factor is not counted in X
    if j > len(top):
        raise CorruptBufr(f"delayed replication {d:06d} at the end of section 3")
    body = 0
    for _ in range(x):
        if j >= len(top):
            raise CorruptBufr(f"replication {d:06d} runs past the end of section 3")
        j, n = _skip(top, j)
        body += n
    if body * max(y, 1) > MAX_UNROLLED:
        raise CorruptBufr(f"replication {d:06d} unrolls to more than {MAX_UNROLLED} descriptors")
    return j, body * max(y, 1)


def expand(tables: TablesKey, descriptors: tuple[int, ...]) -> list[Expanded]:
    """The expanded section-3 list, top-level operators kept in place."""
    out: list[Expanded] = []
    i = 0
    while i < len(descriptors):
        part, i = _item(tables, descriptors, i)
        out += part
    return out
