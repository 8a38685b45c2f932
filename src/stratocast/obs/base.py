"""The observation-source plug point: what a reader yields and the protocol it satisfies.

A source turns one input file into a stream of :class:`Report` (decoded, canonical variables,
SI units) and :class:`Rejection` (an input record that could not be decoded, with the reason,
where it was and the raw text). Nothing is dropped silently: every record in the file becomes
exactly one of the two. Reports are plain named tuples, not rich objects, because readers emit
millions of them and the per-report cost dominates decode throughput.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from stratocast.errors import StratocastError

if TYPE_CHECKING:
    from stratocast.obs.stations import StationCatalogue

_NO_FLAGS: Mapping[str, tuple[str, str]] = MappingProxyType({})


class Report(NamedTuple):
    """One decoded report: a station at a time with one value per canonical variable."""

    report_id: str  # "file:line" or "file:message:subset"
    station_id: str
    lat: float  # degrees north
    lon: float  # degrees east, [-180, 180]
    elevation: float  # m above MSL (NaN when unknown)
    time: datetime  # timezone-aware, UTC
    values: Mapping[str, float]  # canonical variable -> value in SI units
    raw: str  # the input text (or a key=value rendering for binary formats)
    # variable -> (check, reason) for values the reader decoded but already knows are unusable
    # (e.g. a wind sensor far from 10 m); they go to quarantine rather than vanish.
    flags: Mapping[str, tuple[str, str]] = _NO_FLAGS


class Rejection(NamedTuple):
    """An input record that could not be decoded into a report."""

    report_id: str
    check: str  # short machine-friendly category, e.g. "unknown_station"
    reason: str  # human text
    raw: str
    station_id: str | None = None
    time: datetime | None = None


class Unparsed(NamedTuple):
    """Text of a text-format file that belongs to no report and is not recognised framing.

    Text readers (METAR, SYNOP TAC, ...) yield one per run of such text, so that nothing a
    file holds vanishes without a trace: it reaches quarantine with its location (check
    ``unparsed_text``) and is counted in the accounting apart from reports.
    """

    location: str  # "file:line" (1-based) where the text starts
    text: str  # the text itself, whitespace-normalised like a report's raw


class TextTally(NamedTuple):
    """Yielded once, last, by a text reader per file: the file's non-whitespace character count.

    Identity (checked by the accounting): ``chars_total = chars in the raw of every Report and
    Rejection + chars_framing + chars in every Unparsed``, where characters are counted with
    whitespace removed (:func:`text_chars`) and ``chars_framing`` covers what the reader
    recognised as structure (bulletin headings, ``AAXX YYGGi``/section markers, ``NNNN``, ``=``).
    """

    path: str
    chars_total: int
    chars_framing: int


def text_chars(text: str) -> int:
    """Characters of ``text`` excluding whitespace: the unit of the text accounting identity."""
    return len(text) - sum(text.count(c) for c in " \t\r\n\x0b\x0c")


Record = Report | Rejection | Unparsed | TextTally


@runtime_checkable
class ObsSource(Protocol):
    """A reader for one observation format. Implementations need not inherit from this."""

    #: registry name, also the ``source`` partition in the store
    name: str

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        """Yield one Report or Rejection per input record of ``path``.

        Raise :class:`SourceFileError` only when the file as a whole cannot be read (missing,
        unreadable, not this format at all); per-record problems are Rejections.
        """
        ...


def utc_reference(value: datetime | str | None) -> datetime | None:
    """A reader's reference time (ISO text or datetime) as an aware UTC datetime.

    Text formats that give only day and hour (METAR, SYNOP) take month and year from it; a
    naive value means UTC, as everywhere in observation exchange.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


class SourceFileError(StratocastError, OSError):
    """A whole input file cannot be read; the message names the file and why."""
