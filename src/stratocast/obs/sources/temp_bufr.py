"""Radiosonde TEMP in BUFR (TM 309007 TAC-derived, 309052 high resolution), via ecCodes.

The store has no vertical coordinate, so an ascent becomes one report holding the values at
the standard levels 850 and 500 hPa: ``t850 z850 u850 v850 t500 z500 u500 v500``. A level is
a ``pressure`` key followed by the elements up to the next ``pressure`` key (ecCodes lists a
replicated level group in that order). A standard level is one whose pressure equals 85000 or
50000 Pa exactly: TEMP reports mandatory levels at exactly those pressures (in both
templates), and interpolating between significant levels is an analysis decision, not a
decoder's. An ascent with neither level is a Rejection ``no_standard_level``.

Geopotential: 309007 carries ``nonCoordinateGeopotential`` (m2 s-2, used as is); 309052
carries ``nonCoordinateGeopotentialHeight`` (gpm), times standard gravity 9.80665.
Wind: ``u = -ws sin(dd)``, ``v = -ws cos(dd)`` (direction the wind blows from, degrees true).
Station id: WIGOS ``series-issuer-issue-local`` when complete, else the 5-digit WMO number
(or a catalogue entry's own id for it). Time: the nominal launch time of the ascent.

The message/subset/level walk lives here and is shared with :mod:`.aircraft_bufr`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import eccodes

from stratocast.obs.base import Record, Rejection, Report
from stratocast.obs.bufr_file import (
    bufr_messages,
    each_subset,
    is_missing,
    key_names,
    non_finite,
    unpacked,
)
from stratocast.obs.harmonise import wind_components
from stratocast.obs.lexicon import LexiconEntry, validate_lexicon
from stratocast.obs.stations import StationCatalogue, wmo_id
from stratocast.vocab.units import to_canonical

STANDARD_LEVELS = {85000.0: "850", 50000.0: "500"}  # Pa -> variable suffix

LEXICON: dict[str, LexiconEntry] = {
    k: LexiconEntry(k, unit, f"{var}{lev}")
    for lev in STANDARD_LEVELS.values()
    for k, unit, var in [
        (f"airTemperature@{lev}hPa", "K", "t"),
        (f"nonCoordinateGeopotential@{lev}hPa", "m2 s-2", "z"),
        (f"nonCoordinateGeopotentialHeight@{lev}hPa", "gpm", "z"),
        (f"windSpeed+windDirection@{lev}hPa (eastward)", "m s-1", "u"),
        (f"windSpeed+windDirection@{lev}hPa (northward)", "m s-1", "v"),
    ]
}
validate_lexicon("temp_bufr", LEXICON)

# m2 s-2 per geopotential metre (WMO: 9.80665), from the unit registry
G0 = to_canonical("gpm", "z500").factor


def _gpm_to_geopotential(x: float) -> float:
    return x * G0


# Level = key -> rank of its first occurrence after a ``pressure`` key.
Level = dict[str, int]


class Subset:
    """The keys of one subset: header key -> rank, and the pressure-led levels in order."""

    def __init__(self) -> None:
        self.header: dict[str, int] = {}
        self.levels: list[Level] = []

    def add(self, key: str, rank: int) -> None:
        if key == "pressure":
            self.levels.append({"pressure": rank})
        elif self.levels:
            self.levels[-1].setdefault(key, rank)
        else:
            self.header.setdefault(key, rank)

    def first(self, key: str) -> int | None:
        """Rank of ``key`` in the header, else in the first level holding it."""
        if key in self.header:
            return self.header[key]
        return next((lev[key] for lev in self.levels if key in lev), None)


def walk(h: int, compressed: bool) -> list[Subset]:
    """One :class:`Subset` per subset (compressed messages share one layout for all)."""
    subsets: list[Subset] = []
    for name in key_names(h):
        if name == "subsetNumber" and not compressed:
            subsets.append(Subset())
            continue
        if name[0] != "#" or "->" in name:
            continue  # header keys and attributes
        _, rank_s, key = name.split("#", 2)
        if not subsets:  # single-subset or compressed: no subsetNumber markers
            subsets.append(Subset())
        subsets[-1].add(key, int(rank_s))
    return subsets


class Values:
    """Value of ``key`` at ``rank`` for subset ``s``, one ecCodes array fetch per key."""

    def __init__(self, h: int, compressed: bool, n: int) -> None:
        self.h, self.compressed, self.n = h, compressed, n
        self._cache: dict[str, Sequence[Any]] = {}

    def get(self, key: str, rank: int | None, s: int, string: bool = False) -> Any:
        """The value, or None when the key is absent or the value missing."""
        if rank is None:
            return None
        # uncompressed messages number ranks across all subsets; compressed ones give one
        # value per subset (or one when constant) for each rank
        name = f"#{rank}#{key}" if self.compressed else key
        arr = self._cache.get(name)
        if arr is None:
            get = eccodes.codes_get_string_array if string else eccodes.codes_get_array
            arr = get(self.h, name)
            self._cache[name] = arr
        v = (arr[s] if len(arr) == self.n else arr[0]) if self.compressed else arr[rank - 1]
        if string:
            return (v or "").strip() or None
        return None if is_missing(v) else v


SubsetDecoder = Callable[[Values, Subset, int, str, "StationCatalogue | None"], Record]


def read_bufr(
    path: Path,
    catalogue: StationCatalogue | None,
    categories: tuple[int, ...],
    kind: str,
    decode: SubsetDecoder,
) -> Iterator[Record]:
    """Yield one record per subset of each message of ``path`` in data ``categories``.

    A message that is truncated, corrupt, or of another data category is one Rejection with
    id ``file:message``; the other messages are unaffected.
    """
    for item in bufr_messages(path):
        if isinstance(item, Rejection):
            yield item
        else:
            yield from _message(item[1], item[0], catalogue, categories, kind, decode)


def _message(
    msg: bytes,
    where: str,
    catalogue: StationCatalogue | None,
    categories: tuple[int, ...],
    kind: str,
    decode: SubsetDecoder,
) -> Iterator[Record]:
    with unpacked(msg, where, walk) as m:
        if isinstance(m, Rejection):
            yield m
            return
        if m.category not in categories:
            reason = f"{where}: BUFR data category {m.category} is not {kind} {categories}"
            yield Rejection(where, f"not_{kind}", reason, msg[:64].hex())
            return
        values = Values(m.handle, m.compressed, m.subsets)
        layout = m.layout

        def one(s: int, report_id: str) -> Record:
            sub = layout[0] if m.compressed else (layout[s] if s < len(layout) else Subset())
            return decode(values, sub, s, report_id, catalogue)

        yield from each_subset(m.subsets, where, one)


def subset_time(values: Values, sub: Subset, s: int) -> datetime:
    """UTC time from year..minute (and second when present); KeyError/ValueError if bad."""
    parts = {k: values.get(k, sub.first(k), s) for k in ("year", "month", "day", "hour")}
    for k, v in parts.items():
        if v is None:
            raise KeyError(k)
    minute = values.get("minute", sub.first("minute"), s) or 0
    second = values.get("second", sub.first("second"), s) or 0
    return datetime(
        int(parts["year"]),
        int(parts["month"]),
        int(parts["day"]),
        int(parts["hour"]),
        int(minute),
        int(second),
        tzinfo=UTC,
    )


def level_values(
    values: Values, level: Level, s: int, suffix: str, raw: list[str]
) -> dict[str, float]:
    """Canonical values ``t/z/u/v<suffix>`` of one level; appends what it used to ``raw``."""
    out: dict[str, float] = {}

    def get(key: str) -> Any:
        v = values.get(key, level.get(key), s)
        if v is not None:
            raw.append(f"{key}@{suffix}hPa={v}")
        return v

    t = get("airTemperature")
    if t is not None:
        out[f"t{suffix}"] = float(t)
    z = get("nonCoordinateGeopotential")
    if z is not None:
        out[f"z{suffix}"] = float(z)
    else:
        gph = get("nonCoordinateGeopotentialHeight")
        if gph is not None:
            out[f"z{suffix}"] = _gpm_to_geopotential(float(gph))
    ws, wd = get("windSpeed"), get("windDirection")
    if ws is not None and wd is not None:
        out[f"u{suffix}"], out[f"v{suffix}"] = wind_components(float(ws), float(wd))
    return out


class TempBufrSource:
    """Source ``temp_bufr``: radiosonde ascents in BUFR, values at 850 and 500 hPa."""

    name = "temp_bufr"
    lexicon = LEXICON

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        # 2 = vertical soundings (other than satellite)
        yield from read_bufr(path, catalogue, (2,), "sounding", self._subset)

    def _station(
        self, values: Values, sub: Subset, s: int, catalogue: StationCatalogue | None
    ) -> tuple[str | None, Any, list[str]]:
        """(station id or None, catalogue entry or None, raw parts)."""
        raw: list[str] = []
        station_id: str | None = None
        local = values.get(
            "wigosLocalIdentifierCharacter",
            sub.first("wigosLocalIdentifierCharacter"),
            s,
            string=True,
        )
        series = ("wigosIdentifierSeries", "wigosIssuerOfIdentifier", "wigosIssueNumber")
        parts = [values.get(k, sub.first(k), s) for k in series]
        if local and all(p is not None for p in parts):
            station_id = "-".join(str(int(p)) for p in parts) + f"-{local}"
            raw.append(f"wigos={station_id}")
        block = values.get("blockNumber", sub.first("blockNumber"), s)
        number = values.get("stationNumber", sub.first("stationNumber"), s)
        known = None
        if block is not None and number is not None:
            wmo = wmo_id(int(block), int(number))
            raw.append(f"wmo={wmo}")
            known = catalogue.by_wmo(wmo) if catalogue is not None else None
            station_id = known.station_id if known is not None else (station_id or wmo)
        return station_id, known, raw

    def _subset(
        self,
        values: Values,
        sub: Subset,
        s: int,
        report_id: str,
        catalogue: StationCatalogue | None,
    ) -> Record:
        station_id, known, raw = self._station(values, sub, s, catalogue)
        if station_id is None:
            reason = "no WIGOS id or WMO block/station number"
            return Rejection(report_id, "no_station_id", reason, " ".join(raw))
        try:
            t = subset_time(values, sub, s)
        except (KeyError, ValueError) as err:
            reason = f"missing or invalid launch time ({err})"
            return Rejection(report_id, "bad_time", reason, " ".join(raw), station_id)
        lat = values.get("latitude", sub.first("latitude"), s)
        lon = values.get("longitude", sub.first("longitude"), s)
        elev = next(
            (
                v
                for k in ("heightOfStationGroundAboveMeanSeaLevel", "heightOfStation")
                if (v := values.get(k, sub.first(k), s)) is not None
            ),
            None,
        )
        if known is not None:  # the message wins; the catalogue fills gaps
            lat = known.lat if lat is None else lat
            lon = known.lon if lon is None else lon
            elev = known.elevation if elev is None else elev
        if lat is None or lon is None:
            return Rejection(
                report_id, "no_location", "no latitude/longitude", " ".join(raw), station_id, t
            )
        raw.append(f"lat={lat} lon={lon} time={t:%Y-%m-%dT%H:%M}Z")
        out: dict[str, float] = {}
        found = []
        for level in sub.levels:
            p = values.get("pressure", level["pressure"], s)
            suffix = STANDARD_LEVELS.get(float(p)) if p is not None else None
            if suffix is None:
                continue
            found.append(suffix)
            for var, v in level_values(values, level, s, suffix, raw).items():
                out.setdefault(var, v)  # a repeated standard level: the first value wins
        if not out:
            reason = (
                "no value at a standard level (850/500 hPa)"
                if found
                else f"no 850 or 500 hPa level among {len(sub.levels)} levels"
            )
            return Rejection(report_id, "no_standard_level", reason, " ".join(raw), station_id, t)
        elevation = math.nan if elev is None else float(elev)
        lat, lon = round(float(lat), 6), round(float(lon), 6)  # drop BUFR scaling noise
        if (bad := non_finite(out)) is not None:
            return Rejection(report_id, "non_finite", bad, " ".join(raw), station_id, t)
        flags = _below_ground(out, elevation)
        return Report(report_id, station_id, lat, lon, elevation, t, out, " ".join(raw), flags)


def _below_ground(values: dict[str, float], elevation: float) -> dict[str, tuple[str, str]]:
    """Flag every value of a level whose height is under the station (extrapolated, not seen).

    A high station (e.g. the South Pole at 2835 m) still reports 850 hPa in TEMP, with a
    geopotential extrapolated below the ground; it is decoded but must not pass as observed.
    """
    flags: dict[str, tuple[str, str]] = {}
    for suffix in STANDARD_LEVELS.values():
        z = values.get(f"z{suffix}")
        if z is None or math.isnan(elevation) or z / G0 >= elevation:
            continue
        reason = f"{suffix} hPa at {z / G0:.0f} gpm is below the station at {elevation:g} m"
        for var in ("t", "z", "u", "v"):
            if f"{var}{suffix}" in values:
                flags[f"{var}{suffix}"] = ("below_ground", reason)
    return flags
