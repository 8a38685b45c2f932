"""SYNOP in traditional alphanumeric code (FM-12, land stations) from GTS bulletins.

Input: text files holding one or more bulletins::

    ZCZC 123                              (optional transmission start, skipped)
    SMRO01 YRBK 211200 [CCA|CCB|RRA|AAA]  (abbreviated heading: TTAAii CCCC YYGGgg [BBB])
    AAXX 21121                            (section 0: YY day, GG hour, iw wind indicator)
    15015 02999 02501 10103 ... =         (one report per ``=``; reports may span lines,
    ...                                    blank lines inside a report are allowed)
    NNNN                                  (optional end, any case)

The one-line form many archives and decoders write, a report on its own ``AAXX YYGGi`` line
(``AAXX 01004 88889 12782 61506 10094 ...=``), is read the same way: ``AAXX YYGGi`` is the
section 0 and the rest of the line starts the report.

Decoded per report (section 1; sections 2, 3, 4, 5 are checked for well-formed groups where
their layout is standard, but carry no canonical variable and are not decoded):

* ``IIiii`` -> WMO id, looked up in the station catalogue (a SYNOP carries no location);
* ``Nddff [00fff]`` -> ``wd10`` (tens of degrees; ``00`` calm, ``99`` variable: speed only)
  and ``ws10`` in the unit ``iw`` of the AAXX line gives (0/1 m/s, 3/4 knots; any other
  ``iw`` means the unit is unknown, so no wind is emitted);
* ``1snTTT`` -> ``t2m``, ``2snTdTdTd`` -> ``d2m`` (``29UUU`` -> ``rh2m`` instead), 0.1 °C;
* ``3PoPoPoPo`` -> ``sp`` and ``4PPPP`` -> ``msl`` (0.1 hPa, a leading ``0`` means 1000 hPa
  more). High stations send ``4a3hhh`` (geopotential of a standard level) in place of
  ``4PPPP``; it is told apart by its first digit: ``0``/``9`` is pressure, ``1 2 5 7 8`` (code
  table 0264) is geopotential and is skipped.

u10/v10, rh2m and q2m are derived with :func:`stratocast.obs.harmonise.derive`, and msl is
reduced from ``sp`` and ``t2m`` when ``4PPPP`` is absent and the station is at most 500 m high.
Native units are stated in the lexicon; the factors come from Pint (:mod:`stratocast.vocab.units`).

Time: day and hour come from ``AAXX YYGG``; month and year from ``reference_time`` or, failing
that, the ``YYYYMMDDhhmmss`` stamp of a WMO file name (``A_SM..._C_EDZW_20220321120500_...``).
A day later than the reference (+1 day slack) belongs to an earlier month.

Corrections: a bulletin whose heading ends in a BBB indicator (``CCx`` correction, ``AAx``
amendment, ``RRx`` delayed) tags each of its reports: the ``report_id`` is
``<file>:<line>:<BBB>`` (e.g. ``...CCA_...txt:5:CCA``) instead of ``<file>:<line>``.
:func:`bbb_of` recovers the indicator and :func:`is_correction` tells whether it replaces an
earlier report of the same station and time (``CCx``/``AAx``; the letter orders successive
corrections, ``CCB`` after ``CCA``).

Text accounting: ``raw`` is the report's own groups (whitespace-normalised, without ``=``);
the heading, ``AAXX YYGGi``, ``ZCZC``/``NNNN`` lines, channel sequence numbers, SOH/ETX and
every ``=`` are framing. Text before any section 0 of a bulletin that does not start with a
5-figure station number (free text, a ``NIL`` bulletin) is yielded as
:class:`~stratocast.obs.base.Unparsed`; a :class:`~stratocast.obs.base.TextTally` closes each
file, so every character of the file is in a report, a rejection, the framing or an unparsed
run.

Rejections (one per report, the rest of the bulletin still decodes): ``nil`` (a NIL report),
``malformed_group`` (the reason names the group), ``unknown_station``, ``no_section0``
(a report before any ``AAXX`` line), ``unsupported_section0`` (``BBXX``/``OOXX`` ship and
mobile reports), ``bad_time``, ``no_data`` (nothing canonical in the report) and
``decode_error`` (any exception while decoding one report, with its text: the rest of the
bulletin still decodes). Only a file that cannot be read, dated or is no SYNOP at all raises
:class:`~stratocast.obs.base.SourceFileError`.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from stratocast.obs.base import (
    Record,
    Rejection,
    Report,
    SourceFileError,
    TextTally,
    Unparsed,
    text_chars,
    utc_reference,
)
from stratocast.obs.harmonise import derive
from stratocast.obs.lexicon import LexiconEntry, validate_lexicon
from stratocast.obs.stations import Station, StationCatalogue, StationCatalogueError
from stratocast.vocab.units import Affine, to_canonical

LEXICON: dict[str, LexiconEntry] = {
    "1snTTT": LexiconEntry("1snTTT (air temperature)", "0.1 degC", "t2m"),
    "2snTdTdTd": LexiconEntry("2snTdTdTd (dewpoint)", "0.1 degC", "d2m"),
    "29UUU": LexiconEntry("29UUU (relative humidity)", "%", "rh2m"),
    "3PoPoPoPo": LexiconEntry("3PoPoPoPo (station pressure)", "0.1 hPa", "sp"),
    "4PPPP": LexiconEntry("4PPPP (MSL pressure)", "0.1 hPa", "msl"),
    "ff_ms": LexiconEntry("ff (wind speed, iw = 0/1)", "m s-1", "ws10"),
    "ff_kt": LexiconEntry("ff (wind speed, iw = 3/4)", "kt", "ws10"),
    "dd": LexiconEntry("dd (wind direction)", "10 degree", "wd10"),
}
validate_lexicon("synop_tac", LEXICON)


def _si(key: str) -> Affine:
    entry = LEXICON[key]
    return to_canonical(entry.unit, entry.variable)


# Pint-derived converters; the signed group values are integers in the native units
_TENTHS_C = _si("1snTTT")  # also the dewpoint's (same unit)
_PERCENT = _si("29UUU")
_TENTHS_HPA = _si("3PoPoPoPo").factor  # Pa per 0.1 hPa, for 3PoPoPoPo and 4PPPP alike
_KNOT = _si("ff_kt").factor
_DD = _si("dd").factor  # degrees per unit of dd (tens of degrees)

_HEADING = re.compile(r"([A-Z]{4}\d{2})\s+([A-Z]{4})\s+(\d{6})(?:\s+([A-Z]{3}))?")
_AAXX = re.compile(r"AAXX\s+(\d\d)(\d\d)([0-9/])")
_FILE_STAMP = re.compile(r"_(\d{14})(?:_|\.|$)")
_GROUP = re.compile(r"[0-9/]{5}")
_IIIII = re.compile(r"\d{5}")
_SECTION1_HEAD = re.compile(r"[0-4/][1-7/][0-9/]{3}")
_GEOPOTENTIAL_A3 = "12578"  # code table 0264: standard isobaric surfaces of 4a3hhh
_SECTION_MARKS = ("333", "444", "555")
_CORRECTION_PREFIXES = ("CC", "AA")
_BBB_SUFFIX = re.compile(r":([A-Z]{3})$")


def bbb_of(report_id: str) -> str | None:
    """The BBB indicator (``CCA``, ``RRB``, ...) of the bulletin a report came in, if any."""
    m = _BBB_SUFFIX.search(report_id)
    return m.group(1) if m else None


def is_correction(report_id: str) -> bool:
    """True for reports from a ``CCx``/``AAx`` bulletin: they replace an earlier report."""
    bbb = bbb_of(report_id)
    return bbb is not None and bbb.startswith(_CORRECTION_PREFIXES)


# --- station catalogue --------------------------------------------------------------------


def catalogue_from_wmo_csv(path: Path | str, west_positive: bool = False) -> StationCatalogue:
    """Load a wis2box/synop2bufr ``station_list.csv`` (station_name, wigos_station_identifier,
    traditional_station_identifier, latitude, longitude, elevation, ...).

    station_id and wmo_id are the 5-digit traditional identifier; a row whose traditional
    identifier is not 5 digits (a national AWS id) keeps its WIGOS id as station_id and has no
    wmo_id, since no FM-12 report can name it. ``west_positive=True`` is for
    lists that store western longitudes as positive numbers (the synop2bufr ``gts_data`` list
    puts Cuba at +80 instead of -80): every longitude is negated. Nothing in the file says
    which convention it follows, so the caller must know.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise StationCatalogueError(f"cannot read station list {path}: {err}") from None
    need = {"traditional_station_identifier", "latitude", "longitude"}
    missing = need - set(df.columns)
    if missing:
        raise StationCatalogueError(f"station list {path} lacks columns {sorted(missing)}")
    sign = -1.0 if west_positive else 1.0
    stations = []
    for line, rec in enumerate(df.to_dict("records"), start=2):
        wmo = str(rec["traditional_station_identifier"]).strip()
        try:
            lat, lon = float(rec["latitude"]), sign * float(rec["longitude"])
            elev_s = str(rec.get("elevation", "")).strip()
            elev = float(elev_s) if elev_s else math.nan
        except ValueError as err:
            raise StationCatalogueError(f"{path}:{line}: station {wmo!r}: {err}") from None
        if not wmo:
            raise StationCatalogueError(f"{path}:{line}: empty traditional_station_identifier")
        if _IIIII.fullmatch(wmo):
            stations.append(Station(wmo, lat, lon, elev, wmo_id=wmo))
        else:  # a national id (e.g. "AWSBALAKA"): no FM-12 report can name it, but keep it
            wigos = str(rec.get("wigos_station_identifier", "")).strip()
            stations.append(Station(wigos or wmo, lat, lon, elev))
    return StationCatalogue(stations)


# --- splitting ----------------------------------------------------------------------------


class _Context(NamedTuple):
    heading: str  # abbreviated heading as sent, "" when the file has none
    bbb: str  # BBB indicator, "" when none
    section0: str  # "AAXX 21121", "" before any; "BBXX" etc. for unsupported ones


class RawReport(NamedTuple):
    line: int  # first line of the report, 1-based
    context: _Context
    text: str  # groups joined by single spaces, without the "="


class Split(NamedTuple):
    """A bulletin file cut into reports, text in no report, and the framing's size."""

    items: list[RawReport | Unparsed]  # in file order
    chars_framing: int  # characters (no whitespace) of headings, AAXX YYGGi, ZCZC/NNNN, "="


# Characters str.split() takes as separators but text_chars() counts (latin-1 range: a file
# is decoded as latin-1): GTS files can carry them between groups; they count as framing.
_SPLIT_ONLY_SPACE = "\x1c\x1d\x1e\x1f\x85\xa0"
_TRANSMISSION = "\x01\x03"  # SOH/ETX around a bulletin: framing, read as spaces
_SEQUENCE = re.compile(r"\d{3}")  # channel sequence number line before a heading
_SECTION0 = ("AAXX", "BBXX", "OOXX")


def _nonspace(s: str) -> int:
    return len(s) - s.count(" ")  # s is whitespace-normalised: single spaces only


def split(text: str, name: str = "") -> Split:
    """Cut ``text`` into every report of every bulletin, with its heading and section 0.

    A report ends at ``=``; one left open when a heading, section-0 line or end marker
    arrives is yielded as it stands (its decoding judges it). The report may start on the
    ``AAXX YYGGi`` line itself (``AAXX 01004 88889 12782 ...=``, the one-line form many
    archives write). Text before any section 0 of a bulletin whose first group is not a
    5-figure station number (free text, a ``NIL`` bulletin) is :class:`Unparsed`
    (``name:line``); one that looks like a report stays a report (rejected ``no_section0``).
    """
    ctx = _Context("", "", "")
    items: list[RawReport | Unparsed] = []
    framing = sum(text.count(c) for c in _SPLIT_ONLY_SPACE + _TRANSMISSION)
    parts: list[str] = []
    start = 0

    def close() -> None:
        body = " ".join(parts)
        parts.clear()
        if ctx.section0 or _IIIII.fullmatch(body.split(" ", 1)[0]):
            items.append(RawReport(start, ctx, body))
        else:
            items.append(Unparsed(f"{name}:{start}", body))

    for lineno, line in enumerate(text.split("\n"), start=1):
        s = " ".join(line.replace("\x01", " ").replace("\x03", " ").split())
        if not s:
            continue
        upper = s.upper()
        is_end = upper.startswith("ZCZC") or upper == "NNNN"
        heading = None if is_end else _HEADING.fullmatch(s)
        is_section0 = upper[:4] in _SECTION0
        sequence = not parts and not ctx.section0 and _SEQUENCE.fullmatch(s) is not None
        if is_end or heading or sequence:
            if parts:
                close()
            framing += _nonspace(s)
            if is_end:
                ctx = _Context("", "", "")
            elif heading:
                ctx = _Context(s, heading.group(4) or "", "")
            continue
        if is_section0:
            if parts:
                close()
            # AAXX YYGGi heads the bulletin's reports; BBXX/OOXX carry their own time and
            # position in each report, so only the four letters are the section-0 line
            groups = s.split(" ")
            n = 2 if upper.startswith("AAXX") and len(groups[0]) == 4 else 1
            head, s = " ".join(groups[:n]), " ".join(groups[n:])
            framing += _nonspace(head)
            ctx = ctx._replace(section0=head)
            if not s:
                continue
        while "=" in s:
            head, _, s = s.partition("=")
            framing += 1
            head = head.strip()
            if head:
                if not parts:
                    start = lineno
                parts.append(head)
            if parts:
                close()
            s = s.strip()
        if s:
            if not parts:
                start = lineno
            parts.append(s)
    if parts:
        close()
    return Split(items, framing)


def split_reports(text: str) -> Iterator[RawReport]:
    """Every report of ``text`` (see :func:`split`), without the text in no report."""
    for item in split(text).items:
        if isinstance(item, RawReport):
            yield item


# --- dating -------------------------------------------------------------------------------


def reference_from_name(path: Path) -> datetime | None:
    """The ``YYYYMMDDhhmmss`` stamp of a WMO file name (``A_..._C_CCCC_<stamp>_...``)."""
    m = _FILE_STAMP.search(path.name)
    if m is None:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _resolve(limit: datetime, day: int, hour: int) -> datetime | None:
    """The latest (year, month) giving day/hour no later than ``limit``."""
    if not (1 <= day <= 31 and 0 <= hour <= 23):
        return None
    year, month = limit.year, limit.month
    for _ in range(3):  # this month, else earlier ones (a 31st needs a 31-day month)
        if day <= calendar.monthrange(year, month)[1]:
            t = datetime(year, month, day, hour, tzinfo=UTC)
            if t <= limit:
                return t
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return None


# --- decoding -----------------------------------------------------------------------------


class _Malformed(ValueError):
    """A group that does not follow FM-12; the message names it."""


def _signed_tenths(group: str, what: str) -> float | None:
    """The signed integer sTTT of a temperature group (tenths of °C), None if missing."""
    sn, ttt = group[1], group[2:]
    if "/" in ttt or sn == "/":
        return None
    if sn not in "01":
        raise _Malformed(f"{what} group {group!r}: sign digit {sn!r} is not 0 or 1")
    v = int(ttt)
    return float(-v if sn == "1" else v)


def _pressure(group: str) -> float | None:
    """Pa from ``3PoPoPoPo``/``4PPPP`` (0.1 hPa): a leading 0 stands for 1000 hPa more."""
    p = group[1:]
    if "/" in p:
        return None
    tenths = int(p)
    return (tenths + 10000 if p[0] == "0" else tenths) * _TENTHS_HPA  # exact: 10 Pa per unit


def _wind(
    n_dd_ff: str, extra: str | None, iw: str, values: dict[str, float], notes: list[str]
) -> None:
    dd, ff = n_dd_ff[1:3], n_dd_ff[3:]
    if "/" in ff or iw not in "0134":
        if iw not in "0134" and "/" not in ff:
            notes.append(f"wind unit unknown (iw={iw!r}): wind not decoded")
        return
    speed = float(int(ff))
    if ff == "99":
        if extra is None or extra[:2] != "00" or "/" in extra[2:]:
            raise _Malformed(f"wind group {n_dd_ff!r}: ff=99 without a 00fff group")
        speed = float(int(extra[2:]))
    values["ws10"] = speed * _KNOT if iw in "34" else speed
    if "/" in dd:
        return
    d = int(dd)
    if d == 99:  # variable direction: a speed but no u/v
        return
    if d > 36:
        raise _Malformed(f"wind group {n_dd_ff!r}: direction {dd!r} is not 00-36 or 99")
    if d == 0 and speed > 0:
        notes.append(f"wind group {n_dd_ff!r}: calm direction with non-zero speed")
        return
    values["wd10"] = _DD * d


def _section1(groups: list[str], iw: str, values: dict[str, float], notes: list[str]) -> int:
    """Decode section 1 into ``values``; return the index of the first group after it."""
    head = groups[1]
    if not _SECTION1_HEAD.fullmatch(head):
        raise _Malformed(f"iRiXhVV group {head!r} is not a valid section 1 start")
    if len(groups) < 3 or not _GROUP.fullmatch(groups[2]):
        got = groups[2] if len(groups) > 2 else "end of report"
        raise _Malformed(f"Nddff group {got!r} is missing or not 5 digits/slashes")
    i = 3
    extra = None
    if groups[2][3:] == "99" and i < len(groups):
        extra, i = groups[i], i + 1
    _wind(groups[2], extra, iw, values, notes)
    last = "0"
    while i < len(groups):
        g = groups[i]
        if g in _SECTION_MARKS or g.startswith("222"):
            break
        if not _GROUP.fullmatch(g):
            raise _Malformed(f"section 1 group {g!r} is not 5 digits/slashes")
        ind = g[0]
        # Section 1 indicators strictly increase; a break in the order is most often the next
        # station's report run on after a lost "=", which must not pass as this one's groups.
        if ind <= last or ind == "/":
            raise _Malformed(
                f"section 1 group {g!r} out of order after {groups[i - 1]!r} (a missing '='?)"
            )
        last = ind
        i += 1
        if ind == "1":
            v = _signed_tenths(g, "air temperature")
            if v is not None:
                values["t2m"] = round(_TENTHS_C(v), 2)
        elif ind == "2":
            if g[1] == "9":
                if "/" not in g[2:]:
                    values["rh2m"] = _PERCENT(float(g[2:]))
            else:
                v = _signed_tenths(g, "dewpoint")
                if v is not None:
                    values["d2m"] = round(_TENTHS_C(v), 2)
        elif ind == "3":
            p = _pressure(g)
            if p is not None:
                values["sp"] = p
        elif ind == "4":
            if g[1] in _GEOPOTENTIAL_A3:
                notes.append(f"{g}: geopotential of a standard level (4a3hhh), not decoded")
            elif g[1] in "09/":
                p = _pressure(g)
                if p is not None:
                    values["msl"] = p
            else:
                raise _Malformed(f"pressure group {g!r}: neither 4PPPP nor 4a3hhh")
    return i


def _later_sections(groups: list[str], i: int) -> None:
    """Check sections 2-4 for well-formed groups; section 5 is national and free-form."""
    while i < len(groups):
        g = groups[i]
        if g == "555":
            return
        if g not in ("333", "444") and not _GROUP.fullmatch(g):
            raise _Malformed(f"group {g!r} is not 5 digits/slashes")
        i += 1


def _report_id(rr: RawReport, name: str) -> str:
    return f"{name}:{rr.line}" + (f":{rr.context.bbb}" if rr.context.bbb else "")


def _failed(rr: RawReport, name: str, err: Exception) -> Rejection:
    rid = _report_id(rr, name)
    why = f"{rid}: decoding failed: {type(err).__name__}: {err}"
    return Rejection(rid, "decode_error", why, rr.text)


class SynopTacSource:
    """Source ``synop_tac``: FM-12 SYNOP text bulletins. Needs a station catalogue."""

    name = "synop_tac"
    lexicon = LEXICON

    def __init__(self, reference_time: datetime | str | None = None) -> None:
        self.reference_time = utc_reference(reference_time)

    def _limit(self, path: Path) -> datetime:
        ref = self.reference_time or reference_from_name(path)
        if ref is None:
            raise SourceFileError(
                f"{path}: cannot date SYNOP reports (AAXX gives only day and hour): use a WMO "
                "file name with its YYYYMMDDhhmmss stamp or pass reference_time to synop_tac"
            )
        return ref + timedelta(days=1)

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        path = Path(path)
        if catalogue is None:
            raise StationCatalogueError(
                "the synop_tac source needs a StationCatalogue: SYNOP has no location"
            )
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SourceFileError(f"cannot read {path}: {err.strerror or err}") from None
        limit = self._limit(path)
        # latin-1 maps every byte to a character: bad bytes are judged per report
        text = data.decode("latin-1")
        if "AAXX" not in text and "BBXX" not in text and "OOXX" not in text:
            raise SourceFileError(f"{path}: no AAXX/BBXX/OOXX line (not a SYNOP bulletin?)")
        cut = split(text, path.name)
        for item in cut.items:
            if isinstance(item, Unparsed):
                yield item
                continue
            try:
                yield self._decode(item, path.name, limit, catalogue)
            except Exception as err:  # one report's surprise must not sink the bulletin
                yield _failed(item, path.name, err)
        yield TextTally(str(path), text_chars(text), cut.chars_framing)

    def _decode(
        self, rr: RawReport, name: str, limit: datetime, catalogue: StationCatalogue
    ) -> Record:
        ctx = rr.context
        rid = _report_id(rr, name)
        raw = rr.text  # only the report's own text: heading and AAXX line are framing
        groups = rr.text.split()
        station = groups[0]
        if not ctx.section0:
            return Rejection(rid, "no_section0", f"{rid}: report before any AAXX line", raw)
        if not ctx.section0.upper().startswith("AAXX"):
            kind = ctx.section0[:4]
            return Rejection(rid, "unsupported_section0", f"{kind} reports not decoded", raw)
        m = _AAXX.fullmatch(ctx.section0)
        if m is None:
            return Rejection(
                rid, "malformed_group", f"section 0 {ctx.section0!r} is not AAXX YYGGiw", raw
            )
        if not _IIIII.fullmatch(station):
            return Rejection(rid, "malformed_group", f"station group {station!r}: not IIiii", raw)
        t = _resolve(limit, int(m.group(1)), int(m.group(2)))
        if t is None:
            why = f"AAXX day/hour {m.group(1)}/{m.group(2)} invalid or after {limit:%Y-%m-%d}"
            return Rejection(rid, "bad_time", why, raw, station)
        if len(groups) > 1 and groups[1].upper() == "NIL":
            return Rejection(rid, "nil", f"station {station}: NIL report", raw, station, t)
        if len(groups) < 3:
            return Rejection(rid, "malformed_group", "too short for section 1", raw, station, t)
        values: dict[str, float] = {}
        notes: list[str] = []
        try:
            i = _section1(groups, m.group(3), values, notes)
            _later_sections(groups, i)
        except _Malformed as err:
            return Rejection(rid, "malformed_group", f"station {station}: {err}", raw, station, t)
        known = catalogue.by_wmo(station)
        if known is None:
            why = f"WMO station {station} is not in the station catalogue"
            return Rejection(rid, "unknown_station", why, raw, station, t)
        if not values:
            why = "no temperature, humidity, pressure or wind" + (
                f" ({'; '.join(notes)})" if notes else ""
            )
            return Rejection(rid, "no_data", why, raw, known.station_id, t)
        elevation = float(known.elevation)
        derive(values, elevation=elevation)
        return Report(rid, known.station_id, known.lat, known.lon, elevation, t, values, raw)
