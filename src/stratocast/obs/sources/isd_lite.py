"""NOAA ISD-Lite hourly files (``USAF-WBAN-YEAR.gz``): one station, one line per hour.

Format (NOAA "ISD-Lite technical document"): fixed-width integer fields, right-justified,
-9999 = missing::

    cols  1-4 year, 6-7 month, 9-10 day, 12-13 hour (UTC)
         14-19 air temperature (0.1 °C)      20-25 dewpoint (0.1 °C)
         26-31 sea-level pressure (0.1 hPa)  32-37 wind direction (degrees; 0 = calm)
         38-43 wind speed (0.1 m/s)          44-49 sky cover code (oktas-like, 0-19)
         50-55 1-h precipitation (0.1 mm)    56-61 6-h precipitation (0.1 mm; -1 = trace)

Every field is at most 5 characters wide in a 6-wide column, so fields are always separated
by blanks and splitting on whitespace reads exactly the fixed-width fields; a line whose split
does not give 12 integers (a blank field, two fields run together, a stray character) is a
Rejection (``malformed_line``) naming ``file:line``. The integers of all good lines are
converted in one numpy call and scaled per column with the Pint-derived converter of the
column's native unit (the lexicon); only Report construction is per line.

Decoded: t2m, d2m (K), msl (Pa), wd10 (degree), ws10 (m/s) and, from them, u10/v10 and rh2m
(:func:`stratocast.obs.harmonise.derive`). Sky cover and precipitation have no canonical
variable yet and stay only in ``raw``. Missing fields are absent from the report; values
outside the canonical valid range are kept (QC quarantines them). A line with no usable
element is rejected (``no_data``).

Calm wind, explicitly: direction 0 is ISD-Lite's calm code (north is 360). Direction 0 with
speed 0 *or missing* (the Russian synoptic stations code calms so) and speed 0 with direction
missing are calm: ws10 = 0, wd10 = 0, u10 = v10 = 0 (the METAR reader's convention for
``00000KT``). Direction 0 with a non-zero speed contradicts itself; both are emitted as
reported and QC's ``consistency`` check quarantines the direction (and u/v with it), as it does
for a zero speed with a direction. A missing direction with a speed (variable wind) gives
ws10 only.

rh2m derived from a dewpoint above the temperature (a raw outlier such as a dropped digit:
``30 154`` between ``233 156`` and ``221 150``) can exceed its valid range by far; it is
flagged (``supersaturated``) so it goes to quarantine, and QC's ``consistency`` check takes
the dewpoint.

Station location comes from a catalogue: the one passed to :meth:`IsdLiteSource.read`, else the
``stations`` isd-history list given at construction. A station found in neither gets every
line rejected as ``unknown_station`` (nothing is silently dropped). A file that cannot be
decompressed (truncated, corrupt) or whose name is not ``USAF-WBAN-YEAR[.gz]`` raises
:class:`SourceFileError`; any exception while decoding one line becomes that line's Rejection
(``decode_error``, with the exception text) and the other lines still decode.

Text accounting: every non-blank line is one record whose ``raw`` is the line (trailing blanks
cut), nothing is framing and nothing is left unparsed; each file ends with a
:class:`~stratocast.obs.base.TextTally`, so the accounting checks that every non-whitespace
character of the (decompressed) text is in a report or a rejection. Only the whitespace of
that identity is taken as blank: a line holding only a control character is a rejected line,
not a silently skipped one.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from stratocast.obs.base import Record, Rejection, Report, SourceFileError, TextTally, text_chars
from stratocast.obs.harmonise import derive
from stratocast.obs.isd_history import cached_isd_catalogue
from stratocast.obs.lexicon import LexiconEntry, validate_lexicon
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.vocab.units import Affine, to_canonical
from stratocast.vocab.variables import VARIABLES

MISSING = -9999
_BLANKS = " \t\r\n\x0b\x0c"  # the whitespace of the text identity (base.text_chars)
N_FIELDS = 12
_NAME = re.compile(r"(?P<usaf>[0-9A-Z]{6})-(?P<wban>\d{5})-(?P<year>\d{4})(?:\.gz)?")
_GZIP_MAGIC = b"\x1f\x8b"

# column -> (native name, native unit as the format document states it, canonical variable)
_COLUMNS: dict[int, tuple[str, str, str]] = {
    4: ("air temperature", "0.1 degC", "t2m"),
    5: ("dew point temperature", "0.1 degC", "d2m"),
    6: ("sea level pressure", "0.1 hPa", "msl"),
    7: ("wind direction", "degree", "wd10"),
    8: ("wind speed rate", "0.1 m s-1", "ws10"),
}
_WD, _WS = 7, 8
_VARS = tuple(var for _, _, var in _COLUMNS.values())

LEXICON: dict[str, LexiconEntry] = {
    native: LexiconEntry(native, unit, var) for native, unit, var in _COLUMNS.values()
}
validate_lexicon("isd_lite", LEXICON)

# column -> Pint-derived affine converter, applied to whole columns at once. Tenths come out
# as a division by 10 (-35 -> -3.5 exactly), as the Affine keeps 1/n scales as divisors.
_CONVERT: dict[int, Affine] = {
    col: to_canonical(unit, var) for col, (_, unit, var) in _COLUMNS.items()
}


_RH_MAX = VARIABLES["rh2m"].valid_max
_NO_FLAGS: Mapping[str, tuple[str, str]] = MappingProxyType({})


def _supersaturated(values: dict[str, float]) -> tuple[str, str]:
    return (
        "supersaturated",
        f"dewpoint {values['d2m']:.2f} K above temperature {values['t2m']:.2f} K gives "
        f"relative humidity {values['rh2m']:.2f} > {_RH_MAX:g}",
    )


def parse_name(path: Path) -> tuple[str, int]:
    """(``USAF-WBAN`` station id, year) from an ISD-Lite file name."""
    m = _NAME.fullmatch(path.name)
    if m is None:
        raise SourceFileError(
            f"{path}: not an ISD-Lite file name (USAF-WBAN-YEAR.gz, e.g. 071690-99999-2017.gz);"
            " the station is known only from the name"
        )
    return f"{m['usaf']}-{m['wban']}", int(m["year"])


def read_text(path: Path) -> bytes:
    """The file's bytes, gunzipped when gzip-compressed (plain text is accepted too)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SourceFileError(f"cannot read {path}: {err.strerror or err}") from None
    if data[:2] != _GZIP_MAGIC:
        if path.suffix == ".gz":
            raise SourceFileError(f"{path}: named .gz but not gzip data (no gzip magic bytes)")
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise SourceFileError(
            f"{path}: truncated gzip file (compressed stream ends before its end marker)"
        ) from None
    except (OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise SourceFileError(f"{path}: corrupt gzip data: {err}") from None


# (start, end) columns of the 12 fields, 0-based half-open, per the ISD-Lite document
_FIELDS = ((0, 4), (4, 7), (7, 10), (10, 13), *((13 + 6 * k, 19 + 6 * k) for k in range(8)))
LINE_WIDTH = _FIELDS[-1][1]
_SPACE, _MINUS, _DIGIT, _OTHER = 0, 1, 2, 9


def _char_classes() -> NDArray[np.int8]:
    table = np.full(256, _OTHER, dtype=np.int8)
    table[ord(" ")] = _SPACE
    table[ord("-")] = _MINUS
    table[ord("0") : ord("9") + 1] = _DIGIT
    return table


_CLASS = _char_classes()


def _layout() -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.int64], NDArray[np.bool_]]:
    """Field starts and ends, each column's place value in its field, and which adjacent
    column pairs lie inside one field (where class codes must not decrease)."""
    starts = np.array([a for a, _ in _FIELDS], dtype=np.intp)
    ends = np.array([b for _, b in _FIELDS], dtype=np.intp)
    place = np.concatenate([10 ** np.arange(b - a - 1, -1, -1, dtype=np.int64) for a, b in _FIELDS])
    inside = np.ones(LINE_WIDTH - 1, dtype=bool)
    inside[starts[1:] - 1] = False
    return starts, ends, place, inside


_STARTS, _ENDS, _PLACE, _INSIDE = _layout()


def parse_fixed(chars: NDArray[np.uint8]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Decode (n, 61) line characters into (n, 12) integers and a per-line validity mask.

    A field is valid when it reads blanks, an optional minus, then at least one digit, in that
    order (right-justified): class codes never decrease along the field, at most one is a
    minus and the last is a digit. All fields are done at once on the whole block.
    """
    cls = np.take(_CLASS, chars)
    ok = (np.diff(cls, axis=1)[:, _INSIDE] >= 0).all(axis=1)
    ok &= (cls[:, _ENDS - 1] == _DIGIT).all(axis=1)
    minus = np.add.reduceat((cls == _MINUS).astype(np.int8), _STARTS, axis=1)
    ok &= (minus <= 1).all(axis=1)
    digits = np.where(cls == _DIGIT, chars.astype(np.int64) - ord("0"), 0)
    magnitude = np.add.reduceat(digits * _PLACE, _STARTS, axis=1)
    return np.where(minus > 0, -magnitude, magnitude), ok


def _split_int(line: str) -> list[int] | None:
    """The fields of a line that is not the standard width, by whitespace; None if malformed."""
    tokens = line.split()
    if len(tokens) != N_FIELDS:
        return None
    try:
        return [int(t) for t in tokens]
    except ValueError:
        return None


class IsdLiteSource:
    """Source ``isd_lite``: NOAA ISD-Lite hourly station files."""

    name = "isd_lite"
    lexicon = LEXICON

    def __init__(self, stations: str | Path | None = None) -> None:
        """``stations``: an ``isd-history.csv`` locating stations the caller's catalogue lacks."""
        self.stations = None if stations is None else str(stations)

    def _locate(self, station_id: str, catalogue: StationCatalogue | None) -> Station | None:
        found = catalogue.get(station_id) if catalogue is not None else None
        if found is None and self.stations is not None:
            try:
                found = cached_isd_catalogue(self.stations).get(station_id)
            except ValueError as err:
                raise SourceFileError(f"isd_lite station list: {err}") from None
        return found

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        path = Path(path)
        station_id, _ = parse_name(path)
        text = read_text(path).decode("ascii", "replace")
        station = self._locate(station_id, catalogue)
        name = path.name

        # (line number, text) of non-blank lines: a blank line carries no record. Only the
        # whitespace of the text identity is stripped, so no other character can vanish.
        lines = [(i, ln.rstrip(_BLANKS)) for i, ln in enumerate(text.split("\n"), start=1)]
        lines = [x for x in lines if x[1]]
        ints, ok = self._decode(lines)
        rows = self._values(ints)
        times = ints[:, :4].tolist()
        for g, (lineno, raw) in enumerate(lines):
            try:
                yield self._record(name, lineno, raw, ok[g], times[g], rows[g], station_id, station)
            except Exception as err:  # one line's surprise must not sink the station-year
                where = f"{name}:{lineno}"
                why = f"{where}: decoding failed: {type(err).__name__}: {err}"
                yield Rejection(where, "decode_error", why, raw, station_id)
        # every line is one record and nothing is framing: the identity is per line
        yield TextTally(str(path), text_chars(text), 0)

    @staticmethod
    def _record(
        name: str,
        lineno: int,
        raw: str,
        ok: bool,
        ymdh: list[int],
        row: list[float],
        station_id: str,
        station: Station | None,
    ) -> Report | Rejection:
        """One line's Report, or its Rejection."""
        where = f"{name}:{lineno}"
        if not ok:
            return Rejection(
                where,
                "malformed_line",
                f"{where}: not {N_FIELDS} integer fields in the ISD-Lite fixed-width columns"
                f" (line of {len(raw)} characters, standard {LINE_WIDTH})",
                raw,
                station_id,
            )
        try:
            t = datetime(ymdh[0], ymdh[1], ymdh[2], ymdh[3], tzinfo=UTC)
        except ValueError as err:
            reason = f"{where}: invalid date/hour {ymdh}: {err}"
            return Rejection(where, "bad_time", reason, raw, station_id)
        if station is None:
            return Rejection(
                where,
                "unknown_station",
                f"station {station_id} is not in the station catalogue (isd-history)",
                raw,
                station_id,
                t,
            )
        # NaN (missing) is the only value unequal to itself
        values = {var: v for var, v in zip(_VARS, row, strict=True) if v == v}
        if not values:
            return Rejection(
                where, "no_data", "every decoded field is missing (-9999)", raw, station_id, t
            )
        derive(values, elevation=station.elevation)
        flags = _NO_FLAGS
        if values.get("rh2m", 0.0) > _RH_MAX:
            flags = {"rh2m": _supersaturated(values)}
        return Report(
            where, station_id, station.lat, station.lon, station.elevation, t, values, raw, flags
        )

    @staticmethod
    def _decode(lines: list[tuple[int, str]]) -> tuple[NDArray[np.int64], list[bool]]:
        """(n, 12) integers for ``lines`` (zeros where malformed) and which lines are valid."""
        ints = np.zeros((len(lines), N_FIELDS), dtype=np.int64)
        ok = np.zeros(len(lines), dtype=bool)
        standard = [g for g, (_, ln) in enumerate(lines) if len(ln) == LINE_WIDTH]
        if standard:
            # non-ASCII became U+FFFD: encode it back as "?" (an invalid character) so every
            # standard line stays exactly LINE_WIDTH bytes
            block = "".join(lines[g][1] for g in standard).encode("ascii", "replace")
            chars = np.frombuffer(block, dtype=np.uint8).reshape(len(standard), LINE_WIDTH)
            ints[standard], ok[standard] = parse_fixed(chars)
        for g, (_, ln) in enumerate(lines):
            if len(ln) != LINE_WIDTH:
                fields = _split_int(ln)
                if fields is not None:
                    ints[g], ok[g] = fields, True
        return ints, ok.tolist()

    @staticmethod
    def _values(ints: NDArray[np.int64]) -> list[list[float]]:
        """Per good line, the SI values in ``_VARS`` order (NaN where missing), calms resolved."""
        wd, ws = ints[:, _WD], ints[:, _WS]
        calm = ((wd == 0) & ((ws == 0) | (ws == MISSING))) | ((wd == MISSING) & (ws == 0))
        out = np.empty((len(ints), len(_CONVERT)), dtype=np.float64)
        for j, (col, convert) in enumerate(_CONVERT.items()):
            raw = ints[:, col]
            si = convert(raw.astype(np.float64))
            # rounding drops binary noise of the scaling (-3.5 + 273.15 -> 269.65, not ...004)
            out[:, j] = np.where(raw == MISSING, np.nan, np.round(si, 4))
            if col in (_WD, _WS):
                out[calm, j] = 0.0
        rows: list[list[float]] = out.tolist()
        return rows
