"""METAR/SPECI reader for NWS-style collectives and plain one-report-per-line files.

Regex-based and deliberately lean (no per-group objects): each report costs a handful of
compiled-regex searches. Decoded:

* wind ``dddff[Ggg](KT|MPS|KMH)``, ``VRBff`` (speed only: no direction, so no u/v) and calm
  ``00000KT`` (speed 0, direction 0, u = v = 0);
* temperature/dewpoint ``TT/TdTd`` (``M`` = minus), replaced by the remark T-group
  ``TsTTTsTdTdTd`` (0.1 °C) when present;
* pressure: ``SLPppp`` (sea-level pressure, 0.1 hPa; a US remark, also accepted in the body)
  is ``msl``. The altimeter setting (``Annnn`` inHg, ``Qnnnn`` hPa, i.e. QNH) is ``qnh``, never
  ``msl``: QNH carries station pressure to sea level through the ICAO standard atmosphere, not
  the actual air column: on the shared NWS collectives it differs from the SLP remark by up to
  1.93 hPa at stations below 310 m, and more at high ones. Because QNH *is* station pressure run
  through the standard atmosphere, it inverts exactly to station pressure ``sp`` given the
  station elevation (NWS altimeter-setting formula), which is emitted too; a report without
  SLP then gets ``msl`` only as :func:`stratocast.obs.harmonise.derive` reduces that ``sp``
  with the actual temperature (WMO reduction, stations up to 500 m). Such an msl is derived:
  it goes to quarantine with a quarantined qnh, sp or t2m of its report (QC's ``derived``
  check recognises it by reproducing the reduction, :func:`stratocast.obs.qc.derived_pressure`).
* wind: a direction above 360 or not a multiple of 10 (``90010KT``: a slipped digit) makes the
  whole wind group untrustworthy: speed and direction are kept but flagged ``wind_group``, so
  they reach quarantine with the reason; no u10/v10 are derived from them.
* ``METAR COR CCCC ...`` (COR before the station, the FM 15 position) and ``CCCC ... COR``
  (after the time) are corrections: the report id ends in ``:CCA`` so QC's ``corrected``
  check replaces the original of the same station and time.

Month and year are not in a METAR: they come from ``reference_time`` (caller or the source's
``options`` in the ingest config) or, failing that, a date in the file name: ``YYYYMMDD`` or
``YYYYMMDDHH[MM[SS]]`` (``2024010112.txt``, ``2024010112_metar.txt``). A report day later
than the reference (+1 day slack for clock skew) belongs to the previous month.

Text accounting: every character of the file is in a record's raw text or is framing (SOH,
ETX, bulletin sequence numbers, WMO headings, ``METAR``/``SPECI`` lines, AWIPS ids, ``ZCZC``,
``NNNN``, ``=``); the reader yields a :class:`~stratocast.obs.base.TextTally` last. Any other
line starts (or continues) a report, so every non-framing character is in the raw text of a
Report or a Rejection and the reader has no :class:`~stratocast.obs.base.Unparsed` text.
Any exception while decoding one report (including a non-finite or complex intermediate,
e.g. from ``Q0000``) becomes a ``decode_error`` Rejection with the exception text.

Rejected as records (never silently dropped): reports containing control characters (the NUL
byte of a corrupted transmission: everything after it is untrustworthy), malformed station or
day/time groups, NIL reports, unknown stations, reports with no decodable weather group.
Non-ASCII bytes (e.g. a stray UTF-8 no-break space) are replaced by spaces before decoding:
they separate groups but carry no data.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from stratocast.errors import StratocastError
from stratocast.obs.base import (
    Record,
    Rejection,
    Report,
    SourceFileError,
    TextTally,
    text_chars,
    utc_reference,
)
from stratocast.obs.harmonise import derive, qnh_to_station_pressure
from stratocast.obs.lexicon import LexiconEntry, validate_lexicon
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.vocab.units import Affine, to_canonical

# qnh_to_station_pressure lives in harmonise (QC reproduces it); re-exported for callers here
__all__ = ["LEXICON", "MetarConfigError", "MetarSource", "qnh_to_station_pressure", "split_reports"]

LEXICON: dict[str, LexiconEntry] = {
    "TT": LexiconEntry("TT (temperature group)", "degC", "t2m"),
    "TdTd": LexiconEntry("TdTd (dewpoint group)", "degC", "d2m"),
    "TsTTT": LexiconEntry("RMK T-group TsnTTT (temperature)", "0.1 degC", "t2m"),
    "TsTdTdTd": LexiconEntry("RMK T-group TsnTdTdTd (dewpoint)", "0.1 degC", "d2m"),
    "ff_KT": LexiconEntry("ff (wind speed, KT)", "kt", "ws10"),
    "ff_MPS": LexiconEntry("ff (wind speed, MPS)", "m/s", "ws10"),
    "ff_KMH": LexiconEntry("ff (wind speed, KMH)", "km/h", "ws10"),
    "ddd": LexiconEntry("ddd (wind direction)", "degree", "wd10"),
    "SLP": LexiconEntry("RMK SLPppp", "0.1 hPa", "msl"),
    "QNH_A": LexiconEntry("Annnn altimeter setting (QNH)", "0.01 inHg", "qnh"),
    "QNH_Q": LexiconEntry("Qnnnn altimeter setting (QNH)", "hPa", "qnh"),
}
validate_lexicon("metar", LEXICON)


def _si(key: str) -> Affine:
    entry = LEXICON[key]
    return to_canonical(entry.unit, entry.variable)


# The decode loop applies these Pint-derived factors inline: a multiply-add per value, no call.
_SPEED_FACTOR = {u: _si(f"ff_{u}").factor for u in ("KT", "MPS", "KMH")}
ZERO_C = _si("TT").offset  # 273.15 K at 0 °C; the scale of whole °C is 1
_TENTH_C = _si("TsTTT").factor  # 0.1 K per unit of the T-group
_SLP_TENTH = _si("SLP").factor  # Pa per 0.1 hPa
HPA = _si("QNH_Q").factor  # Pa per hPa
_ALTIMETER = _si("QNH_A").factor  # Pa per 0.01 inHg

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_HEADER = re.compile(
    r"(?:\d{3}"  # bulletin sequence number
    r"|[A-Z]{4}\d{0,2} [A-Z]{4} \d{6}(?: [A-Z]{3})?"  # WMO abbreviated heading TTAAii CCCC YYGGgg
    r"|METAR|SPECI|[A-Z]{3}[A-Z0-9]{3})"  # report type line, AWIPS product id
)
# start and end of a GTS message; apart from _HEADER, tried only on lines starting Z or N,
# because each alternative costs every line of the file a failed attempt
_GTS = re.compile(r"ZCZC(?: \S+)?|NNNN")
# Station, day/time, modifiers and wind in one match: they always lead a METAR, in this order.
_HEAD = re.compile(
    r"(?:(?:METAR|SPECI) )?(?P<st>\S+)(?: (?P<dt>\S+))?(?: NIL(?!\S))?"
    r"(?: (?P<mod>AUTO|COR|RTD|CC[A-Z]))?"
    r"(?: (?P<wd>\d{3}|VRB)(?P<ws>\d{2,3})(?:G\d{2,3})?(?P<wu>KT|MPS|KMH)(?!\S))?"
)
_HEAD_FIELDS = ("st", "dt", "mod", "wd", "ws", "wu")
# COR before the station (FM 15): rare, so tested apart rather than in _HEAD, where an
# optional leading group slows every match
_COR_STARTS = ("COR ", "METAR COR ", "SPECI COR ")
_COR_FIRST = re.compile(r"(?:(?:METAR|SPECI) )?(COR )")
_NIL = re.compile(r"^(?:(?:METAR|SPECI) )?\S+ \S+ NIL(?!\S)")
_STATION = re.compile(r"[A-Z][A-Z0-9]{3}")
_DAYTIME = re.compile(r"(\d\d)(\d\d)(\d\d)Z")
_WIND = re.compile(r"(?<!\S)(\d{3}|VRB)(\d{2,3})(?:G\d{2,3})?(KT|MPS|KMH)(?!\S)")
# temperature group, usually followed directly by the altimeter group
_TEMP = re.compile(r"(?<!\S)(M?\d\d)/(M?\d\d)?(?!\S)(?: ([AQ])(\d{4})(?!\S))?")
_ALTIM = re.compile(r"(?<!\S)([AQ])(\d{4})(?!\S)")
_RMK = re.compile(r"(?<!\S)(?:SLP(\d{3})|T([01])(\d{3})(?:([01])(\d{3}))?)(?!\S)")
_SLP = re.compile(r"(?<!\S)SLP(\d{3})(?!\S)")
_TREND = re.compile(r" (?:TEMPO|BECMG|NOSIG)(?!\S)")
# YYYYMMDD, optionally followed by HH, HHMM or HHMMSS, not inside a longer run of digits
_FILE_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})((?:\d{2}){0,3})(?!\d)")


def _temp_c(group: str) -> float:
    return -float(group[1:]) if group[0] == "M" else float(group)


# whole-degree groups (M99..99) -> K: a dict lookup beats the parse per report
_KELVIN = {g: _temp_c(g) + ZERO_C for n in range(100) for g in (f"{n:02d}", f"M{n:02d}")}


def _wind_problem(direction: str) -> str | None:
    """Why a wind group's direction makes the group unusable, or None (VRB is fine)."""
    if direction == "VRB":
        return None
    d = int(direction)
    if d > 360:
        return f"direction {d} outside 0-360"
    if d % 10:
        return f"direction {d} not a multiple of 10 degrees"
    return None


class _Dater:
    """Turns a METAR ``ddhhmmZ`` group into a UTC datetime given the reference month.

    Results are cached per group: a file has few distinct times and this is per report.
    """

    def __init__(self, limit: datetime) -> None:
        self.limit = limit  # latest acceptable report time
        self._cache: dict[str, datetime | None] = {}

    def __call__(self, group: str) -> datetime | None:
        try:
            return self._cache[group]
        except KeyError:
            m = _DAYTIME.fullmatch(group)
            t = self._resolve(*map(int, m.groups())) if m else None
            self._cache[group] = t
            return t

    def _resolve(self, day: int, hour: int, minute: int) -> datetime | None:
        if hour > 24 or minute > 59 or day < 1 or day > 31:
            return None
        extra = timedelta(0)
        if hour == 24:  # "2400Z" is midnight at the end of the day
            hour, extra = 0, timedelta(days=1)
        year, month = self.limit.year, self.limit.month
        for _ in range(3):  # this month, else earlier ones (a 31st needs a 31-day month)
            if day <= calendar.monthrange(year, month)[1]:
                t = datetime(year, month, day, hour, minute, tzinfo=UTC) + extra
                if t <= self.limit:
                    return t
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        return None


def _reject_head(text: str, report_id: str, station: str, group: str | None) -> Rejection:
    if not _STATION.fullmatch(station):
        return Rejection(report_id, "malformed", f"malformed station identifier {station!r}", text)
    if group is None:
        return Rejection(report_id, "malformed", "too short for station and day/time", text)
    if not _DAYTIME.fullmatch(group):
        return Rejection(
            report_id, "malformed", f"malformed day/time group {group!r}", text, station
        )
    return Rejection(report_id, "malformed", f"impossible day/time {group!r}", text, station)


def _decode(
    text: str, report_id: str, icao: dict[str, Station], dater: _Dater
) -> Record:  # one report's text -> Report or Rejection
    bad = _CONTROL.search(text)
    if bad:
        return Rejection(
            report_id,
            "malformed",
            f"control character {bad.group()!r} at column {bad.start() + 1}: "
            "corrupted transmission",
            text,
        )
    clean = text if text.isascii() else " ".join(_NON_ASCII.sub(" ", text).split())
    cor = False
    if clean.startswith(_COR_STARTS):
        c = _COR_FIRST.match(clean)
        if c is not None:  # decode as if COR stood after the time; the raw text keeps it
            clean, cor = clean[: c.start(1)] + clean[c.end(1) :], True
    head = _HEAD.match(clean)
    if head is None:  # only an empty string fails to match
        return Rejection(report_id, "malformed", "empty report", text)
    # one call for all head groups: Match.group per field is a measurable per-report cost
    station, group, mod, wd, ws_group, wu = head.group(*_HEAD_FIELDS)
    if cor or mod == "COR":  # a correction replaces the original (qc.check_corrections)
        report_id += ":CCA"
    t = dater(group) if group else None
    if t is None or not _STATION.fullmatch(station):
        return _reject_head(text, report_id, station, group)
    if _NIL.match(clean):
        return Rejection(report_id, "nil", "NIL report (no observation)", text, station, t)
    st = icao.get(station)
    if st is None:
        return Rejection(
            report_id,
            "unknown_station",
            f"unknown station {station}: not in the station catalogue",
            text,
            station,
            t,
        )

    values: dict[str, float] = {}
    bad_wind: tuple[str, float, str, str] | None = None  # (group, speed, direction, why)
    if ws_group is not None:
        # fast test first: almost every direction is VRB or a multiple of 10 up to 360
        why = _wind_problem(wd) if wd != "VRB" and (wd[2] != "0" or wd > "360") else None
        if why is None:
            values["ws10"] = float(ws_group) * _SPEED_FACTOR[wu]
            if wd != "VRB":  # variable direction: no direction, hence no u/v
                values["wd10"] = float(wd)
        else:
            bad_wind = (f"{wd}{ws_group}{wu}", float(ws_group) * _SPEED_FACTOR[wu], wd, why)
    rest = clean[head.end() :]
    body, sep, rmk = rest.partition(" RMK ")
    if not sep and rest.endswith(" RMK"):
        body = rest[:-4]
    trend = _TREND.search(body)
    if trend:
        body = body[: trend.start()]
    if ws_group is None:  # wind not where it belongs: look for it anywhere in the body
        w = _WIND.search(body)
        if w:
            why = _wind_problem(w.group(1))
            speed = float(w.group(2)) * _SPEED_FACTOR[w.group(3)]
            if why is None:
                values["ws10"] = speed
                if w.group(1) != "VRB":
                    values["wd10"] = float(w.group(1))
            else:
                bad_wind = (w.group(), speed, w.group(1), why)
    alt_kind = alt_num = None
    tt = _TEMP.search(body)
    if tt:
        t_group, td_group, alt_kind, alt_num = tt.groups()
        values["t2m"] = _KELVIN.get(t_group) or _temp_c(t_group) + ZERO_C
        if td_group:
            values["d2m"] = _KELVIN.get(td_group) or _temp_c(td_group) + ZERO_C
    if alt_kind is None:
        alt = _ALTIM.search(body)
        if alt:
            alt_kind, alt_num = alt.groups()
    if "SLP" in body:  # SLPppp belongs in the remarks, but some stations put it in the body
        s = _SLP.search(body)
        if s:
            values["msl"] = _SLP_PA[s.group(1)]
    if rmk:
        tgroup = False
        for slp, ts, tv, ds, dv in _RMK.findall(rmk):
            if slp:
                if "msl" not in values:
                    values["msl"] = _SLP_PA[slp]
            elif not tgroup:  # 0.1 °C precision beats the whole-degree group
                tgroup = True
                values["t2m"] = (-_TENTH_C if ts == "1" else _TENTH_C) * int(tv) + ZERO_C
                if dv:
                    values["d2m"] = (-_TENTH_C if ds == "1" else _TENTH_C) * int(dv) + ZERO_C
    if alt_num is not None:
        n = int(alt_num)
        qnh = values["qnh"] = n * _ALTIMETER if alt_kind == "A" else n * HPA
        elev = st.elevation
        if elev == elev:  # not NaN
            values["sp"] = _station_pressure(qnh, elev)
    if not values and bad_wind is None:
        return Rejection(report_id, "no_data", "no decodable weather group", text, station, t)
    # no decode-time flags to pass on (a wind group is judged below, and QC's consistency
    # check judges sp against the station height with the same rule derive() applies)
    derive(values, elevation=st.elevation)
    if bad_wind is None:
        return Report(report_id, st.station_id, st.lat, st.lon, st.elevation, t, values, text)
    # the rejected wind group is kept for quarantine, added after derive(): no u10/v10 from it
    group, speed, direction, why = bad_wind
    reason = f"wind group {group!r}: {why}; speed and direction rejected together"
    values["ws10"] = speed
    flags = {"ws10": ("wind_group", reason)}
    if direction != "VRB":
        values["wd10"] = float(direction)
        flags["wd10"] = ("wind_group", reason)
    return Report(report_id, st.station_id, st.lat, st.lon, st.elevation, t, values, text, flags)


def _slp(digits: str) -> float:
    tenths = int(digits)
    # SLPppp drops the leading 9 or 10: 036 -> 1003.6 hPa, 980 -> 998.0 hPa
    tenths += 10000 if tenths < 500 else 9000
    return tenths * _SLP_TENTH


_SLP_PA = {f"{n:03d}": _slp(f"{n:03d}") for n in range(1000)}  # a lookup per report, no parse


_SP_CACHE: dict[tuple[float, float], float] = {}


def _station_pressure(qnh: float, elevation: float) -> float:
    # QNH comes in 0.01 inHg / 1 hPa steps and stations repeat: memoise the power law
    key = (qnh, elevation)
    sp = _SP_CACHE.get(key)
    if sp is None:
        if len(_SP_CACHE) > 100_000:
            _SP_CACHE.clear()
        sp = _SP_CACHE[key] = qnh_to_station_pressure(qnh, elevation)
    return sp


class _Splitter:
    """Splits a file's text into reports, counting the framing it skips (text accounting).

    A report starts on a non-indented line, continues on indented lines and ends at ``=``, a
    blank line, a new non-indented line or the end of the bulletin. Bulletin framing (SOH/ETX,
    sequence numbers, WMO headings, AWIPS ids, ZCZC/NNNN, ``=``) is skipped and its
    non-whitespace characters are added to :attr:`framing`, so that every character of the
    text is either in a yielded report or in :attr:`framing`.
    """

    def __init__(self) -> None:
        self.framing = 0

    def __call__(self, text: str) -> Iterator[tuple[int, str]]:
        parts: list[str] = []
        start = 0
        framing = _stripped_controls(text)
        for lineno, line in enumerate(text.split("\n"), start=1):
            s = line.strip(_STRIP)
            if not s:
                if parts:
                    yield start, " ".join(parts)
                    parts = []
                continue
            indented = line[:1] in (" ", "\t")
            if not (indented and parts):
                if parts:
                    yield start, " ".join(parts)
                    parts = []
                if _HEADER.fullmatch(s) or (s[0] in "ZN" and _GTS.fullmatch(s)):
                    framing += len(s) - s.count(" ")  # headings have no other whitespace
                    continue
                start = lineno
            while "=" in s:  # '=' ends a report; rarely, two share a line
                head, _, s = s.partition("=")
                head = head.strip(_WS)
                if head:
                    parts.append(head)
                if parts:
                    yield start, " ".join(parts)
                    parts = []
                s = s.strip(_WS)
                start = lineno
            if s:
                parts.append(s)
        if parts:
            yield start, " ".join(parts)
        # every '=' is framing: no report text keeps one, and no heading has one
        self.framing = framing + text.count("=")


_STRIP = " \t\r\x01\x03"  # what the splitter strips from each line's ends
# what it strips around '=': exactly the whitespace base.text_chars ignores, so a non-ASCII
# space (U+00A0, which str.strip() would also remove) stays in the report and is counted
_WS = " \t\r\x0b\x0c"


def _stripped_controls(text: str) -> int:
    """How many SOH/ETX characters the splitter strips from line ends (framing).

    Found by position rather than tested per line: a file holds a few (two per bulletin)
    and a per-line test costs more than the split itself. One inside a report's text stays
    in the report (and makes it a rejection: a control character).
    """
    n = 0
    for ch in ("\x01", "\x03"):
        i = text.find(ch)
        while i >= 0:
            a = text.rfind("\n", 0, i) + 1
            b = text.find("\n", i)
            line = text[a : b if b >= 0 else len(text)]
            pos = i - a
            if pos < len(line) - len(line.lstrip(_STRIP)) or pos >= len(line.rstrip(_STRIP)):
                n += 1
            i = text.find(ch, i + 1)
    return n


def split_reports(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first line number, report text) from a collective or a one-per-line file.

    A report starts on a non-indented line, continues on indented lines and ends at ``=``, a
    blank line, a new non-indented line or the end of the bulletin. Bulletin framing (SOH/ETX,
    sequence numbers, WMO headings, AWIPS ids) is skipped.
    """
    return _Splitter()(text)


def reference_from_name(path: Path) -> tuple[datetime, bool] | None:
    """The date (and time, when the name has an hour) a file name states, and whether it has
    the hour: ``20240101.txt``, ``2024010112.txt``, ``2024010112_metar.txt``, ``202401011230``.

    None when the name has no such stamp or it is no valid date/time.
    """
    for m in _FILE_DATE.finditer(path.name):
        clock = m.group(4)
        hh, mm, ss = (int(clock[i : i + 2] or 0) for i in (0, 2, 4))
        try:
            day = int(m.group(1)), int(m.group(2)), int(m.group(3))
            when = datetime(*day, hh, mm, ss, tzinfo=UTC)
        except ValueError:
            continue
        return when, bool(clock)
    return None


def _reference(value: object) -> datetime | None:
    """The ``reference_time`` option as an aware UTC datetime: a datetime, an ISO text, or a
    date (YAML reads ``2024-01-01`` as one), naming the option when it is none of these."""
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value is not None and not isinstance(value, str | datetime):
        raise MetarConfigError(
            f"metar source option reference_time: expected an ISO date/time, got {value!r}"
        )
    try:
        return utc_reference(value)
    except ValueError as err:
        raise MetarConfigError(
            f"metar source option reference_time: {value!r} is not an ISO date/time ({err})"
        ) from None


class MetarConfigError(StratocastError, ValueError):
    """A metar source option is unusable; the message names it."""


class MetarSource:
    """Source ``metar``: METAR/SPECI text. Needs a station catalogue (METAR has no location)."""

    name = "metar"
    lexicon = LEXICON

    def __init__(self, reference_time: datetime | date | str | None = None) -> None:
        self.reference_time = _reference(reference_time)

    def _limit(self, path: Path) -> datetime:
        if self.reference_time is not None:
            return self.reference_time + timedelta(days=1)
        named = reference_from_name(path)
        if named is None:
            raise SourceFileError(
                f"{path}: cannot date METAR reports (they carry only day and time): name the "
                "file with its date (YYYYMMDD.txt or YYYYMMDDHH.txt) or set reference_time in "
                "the metar source's options"
            )
        when, has_hour = named
        # the named time (or the end of the named day), plus one day of slack for late reports
        return when + timedelta(days=1 if has_hour else 2)

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        path = Path(path)
        if catalogue is None:
            raise MetarConfigError(
                "the metar source needs a StationCatalogue: METAR has no location"
            )
        dater = _Dater(self._limit(path))
        try:
            data = path.read_bytes()
        except OSError as err:
            raise SourceFileError(f"cannot read {path}: {err.strerror or err}") from None
        # latin-1 maps every byte to a character, so decoding never fails; bad bytes are then
        # judged per report instead of failing the whole file.
        text = data.decode("latin-1")
        icao = catalogue.icao_index
        name = path.name
        splitter = _Splitter()
        for lineno, report in splitter(text):
            try:
                yield _decode(report, f"{name}:{lineno}", icao, dater)
            except Exception as err:  # one bad report must not sink the file (issue 12)
                yield Rejection(
                    f"{name}:{lineno}",
                    "decode_error",
                    f"{name} line {lineno}: {type(err).__name__}: {err}",
                    report,
                )
        yield TextTally(str(path), text_chars(text), splitter.framing)
