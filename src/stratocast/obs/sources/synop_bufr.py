"""WMO SYNOP in BUFR (TM 307080/307086 and relatives).

Speed: messages go through :mod:`stratocast.obs.bufr_decode` (NumPy section-4 decoder, ~10x
faster than ecCodes' ``unpack`` on the DWD bulletin), which decodes the same values as ecCodes
(verified value by value in tests/obs/test_obs_bufr_decode.py); the first occurrence of each
key per subset and the sensor height preceding it are then found with array operations on the
decoded element sequence (``_decoded_layout``), same rules as the key walk below.

A message that decoder does not support (associated fields, quality-control operators with
bitmaps, ...) goes through ecCodes: one ``unpack`` per message, one key-name walk to learn the
layout (which rank of each key belongs to which subset, and which sensor-height qualifier
precedes it), then one ``codes_get_array`` per key per message; no per-subset ecCodes calls.

Layout rules ecCodes follows and this relies on:

* uncompressed messages number ranks (``#3#airTemperature``) across all subsets in order, and
  the key walk marks each subset start with ``subsetNumber``; ``codes_get_array(h, key)``
  returns every occurrence in rank order;
* compressed messages share one layout for all subsets; ``#r#key`` returns one value per
  subset (or a single value when constant across subsets).

Per subset the *first* occurrence of each element is used: later ones belong to other
sections of the template (e.g. a second wind group for extreme winds, ship positions).
Sensor height: ``heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform`` most recently set
before the element qualifies it. A temperature outside ``temperature_heights`` or a wind outside
``wind_heights`` (m) is not a 2 m / 10 m value: it is decoded but flagged (check
``sensor_height``) and goes to quarantine. A missing height means the standard height.

Units are already SI in ecCodes (K, Pa, m s-1, degree); the lexicon records that explicitly.
Station id: the WIGOS id ``series-issuer-issue-local`` when complete, else the 5-digit WMO
block*1000+station, else a national ``shortStationName`` as ``<centre>:<name>`` (DWD sends its
non-WMO stations so); a catalogue entry with that WMO number supplies its own station_id.
Only surface data categories (0 land, 1 sea) are decoded: a TEMP or AMDAR message fed to
this reader is rejected, not misread as 2 m values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import eccodes
import numpy as np

from stratocast.obs.base import Record, Rejection, Report
from stratocast.obs.bufr_decode import (
    CorruptBufr,
    Decoded,
    Layout,
    UnsupportedBufr,
    decode,
    preflight,
)
from stratocast.obs.bufr_file import (
    bufr_messages,
    corrupt,
    each_subset,
    error_text,
    is_missing,
    key_names,
    non_finite,
    unpacked,
)
from stratocast.obs.harmonise import derive
from stratocast.obs.lexicon import LexiconEntry, identity
from stratocast.obs.stations import StationCatalogue, wmo_id

_HEIGHT = "heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform"

# native key -> lexicon entry; the "At2M"/"At10M" spellings come from older templates where
# the height is part of the element rather than a qualifier.
LEXICON: dict[str, LexiconEntry] = {
    k: LexiconEntry(k, unit, var, identity)
    for k, unit, var in [
        ("airTemperature", "K", "t2m"),
        ("airTemperatureAt2M", "K", "t2m"),
        ("dewpointTemperature", "K", "d2m"),
        ("dewpointTemperatureAt2M", "K", "d2m"),
        ("windSpeed", "m s-1", "ws10"),
        ("windSpeedAt10M", "m s-1", "ws10"),
        ("windDirection", "degree", "wd10"),
        ("windDirectionAt10M", "degree", "wd10"),
        ("pressureReducedToMeanSeaLevel", "Pa", "msl"),
        ("nonCoordinatePressure", "Pa", "sp"),  # station-level pressure in SYNOP templates
    ]
}
_QUALIFIED = {"airTemperature": "t", "dewpointTemperature": "t", "windSpeed": "w"}
_QUALIFIED["windDirection"] = "w"

_NUMERIC_META = [
    "wigosIdentifierSeries",
    "wigosIssuerOfIdentifier",
    "wigosIssueNumber",
    "blockNumber",
    "stationNumber",
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "latitude",
    "longitude",
    "heightOfStationGroundAboveMeanSeaLevel",
    "heightOfStation",
]
_STRING_META = ["wigosLocalIdentifierCharacter", "shortStationName"]
_WANTED = {*LEXICON, *_NUMERIC_META, *_STRING_META}


def _walk(h: int, compressed: bool) -> list[dict[str, tuple[int, int]]]:
    """Per subset: key -> (rank of its first occurrence, rank of the preceding height or 0)."""
    layout: list[dict[str, tuple[int, int]]] = []
    current: dict[str, tuple[int, int]] = {}
    height_rank = 0
    for name in key_names(h):
        if name == "subsetNumber" and not compressed:
            current, height_rank = {}, 0
            layout.append(current)
            continue
        if name[0] != "#" or "->" in name:
            continue  # header keys and attributes (->percentConfidence etc.)
        _, rank_s, key = name.split("#", 2)
        if key == _HEIGHT:
            height_rank = int(rank_s)
        elif key in _WANTED and key not in current:
            if not layout:  # single-subset or compressed: no subsetNumber markers
                layout.append(current)
            current[key] = (int(rank_s), height_rank)
    return layout


class _Arrays:
    """Values of ``key`` at ``rank`` for subset ``s``, fetched once per key per message."""

    def __init__(self, h: int, compressed: bool, n: int) -> None:
        self.h, self.compressed, self.n = h, compressed, n
        self._cache: dict[str, Sequence[Any]] = {}

    def get(self, key: str, rank: int, subset: int, string: bool = False) -> Any:
        name = f"#{rank}#{key}" if self.compressed else key
        arr = self._cache.get(name)
        if arr is None:
            get = eccodes.codes_get_string_array if string else eccodes.codes_get_array
            arr = get(self.h, name)
            self._cache[name] = arr
        if self.compressed:
            return arr[subset] if len(arr) == self.n else arr[0]
        return arr[rank - 1]


class _DecodedArrays:
    """``_Arrays`` for a message from bufr_decode: ``rank`` is the flat value index + 1."""

    def __init__(self, dec: Decoded) -> None:
        self.dec = dec
        integral = self.integral = _integral(dec.layout)
        self.is_int = integral[dec.ids]

    def get(self, key: str, rank: int, subset: int, string: bool = False) -> Any:
        k = rank - 1
        if string:
            return self.dec.strings.get(k)
        v = float(self.dec.values[k])
        # ecCodes returns integers for unscaled elements; keep the raw text as it was
        return int(v) if self.is_int[k] and v == v else v


_KEY_ORDER = sorted(_WANTED)


def _integral(layout: Layout) -> np.ndarray:
    found: np.ndarray | None = layout.derived.get("synop_integral")
    if found is None:
        found = layout.derived["synop_integral"] = (layout.factor == 1.0) & ~layout.string
    return found


def _key_index(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Per layout element: index into _KEY_ORDER (or -1), and whether it is the height."""
    found: tuple[np.ndarray, np.ndarray] | None = layout.derived.get("synop_key_index")
    if found is None:
        pos = {k: i for i, k in enumerate(_KEY_ORDER)}
        found = layout.derived["synop_key_index"] = (
            np.asarray([pos.get(n, -1) for n in layout.name], dtype=np.int64),
            np.asarray([n == _HEIGHT for n in layout.name], dtype=np.bool_),
        )
    return found


def _decoded_layout(dec: Decoded) -> list[dict[str, tuple[int, int]]]:
    """``_walk`` for a decoded message: per subset key -> (first index + 1, height index + 1)."""
    key_of, is_height = _key_index(dec.layout)
    kid = key_of[dec.ids]
    flat = np.arange(len(dec.ids), dtype=np.int64)
    last_height = (
        np.maximum.accumulate(np.where(is_height[dec.ids], flat, -1)) if len(flat) else flat
    )
    positions = np.flatnonzero(kid >= 0)
    cut = np.searchsorted(positions, dec.starts).tolist()
    pos_list, kid_list, lh = (
        positions.tolist(),
        kid[positions].tolist(),
        last_height[positions].tolist(),
    )
    starts = dec.starts.tolist()
    layout: list[dict[str, tuple[int, int]]] = []
    for s in range(len(starts) - 1):
        current: dict[str, tuple[int, int]] = {}
        lo = starts[s]
        for j in range(cut[s], cut[s + 1]):
            key = _KEY_ORDER[kid_list[j]]
            if key not in current:
                h = lh[j]
                current[key] = (pos_list[j] + 1, h + 1 if h >= lo else 0)
        layout.append(current)
    return layout


_SURFACE_CATEGORIES = (0, 1)


class SynopBufrSource:
    """Source ``synop_bufr``: WMO SYNOP BUFR (land stations), via ecCodes."""

    name = "synop_bufr"
    lexicon = LEXICON

    def __init__(
        self,
        temperature_heights: tuple[float, float] = (1.0, 3.0),
        wind_heights: tuple[float, float] = (5.0, 15.0),
    ) -> None:
        self.heights = {"t": tuple(temperature_heights), "w": tuple(wind_heights)}

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        for item in bufr_messages(path):
            if isinstance(item, Rejection):
                yield item
            else:
                yield from self._message(item[1], item[0], catalogue)

    def _message(
        self, msg: bytes, where: str, catalogue: StationCatalogue | None
    ) -> Iterator[Record]:
        try:
            header = preflight(msg)
            if header.category not in _SURFACE_CATEGORIES:
                yield self._not_synop(where, header.category, msg)
                return
            dec = decode(msg, header)
            arrays = _DecodedArrays(dec)
            layout = _decoded_layout(dec)
        except CorruptBufr as err:  # never to ecCodes: it can crash on these
            yield corrupt(where, msg, f"corrupt message: {err}")
            return
        except UnsupportedBufr:
            yield from self._message_eccodes(msg, where, catalogue)
            return
        except Exception as err:  # a damaged message the decoder slipped on: this one only
            yield corrupt(where, msg, f"cannot decode section 4: {error_text(err)}")
            return

        def one(s: int, report_id: str) -> Record:
            return self._subset(arrays, layout[s], s, report_id, catalogue, header.centre)

        yield from each_subset(len(layout), where, one)

    @staticmethod
    def _not_synop(where: str, category: int, msg: bytes) -> Rejection:
        return Rejection(
            where,
            "not_synop",
            f"{where}: BUFR data category {category} is not surface data (0 or 1)",
            msg[:64].hex(),
        )

    def _message_eccodes(
        self, msg: bytes, where: str, catalogue: StationCatalogue | None
    ) -> Iterator[Record]:
        with unpacked(msg, where, _walk) as m:
            if isinstance(m, Rejection):
                yield m
                return
            if m.category not in _SURFACE_CATEGORIES:
                yield self._not_synop(where, m.category, msg)
                return
            arrays = _Arrays(m.handle, m.compressed, m.subsets)
            layout = m.layout

            def one(s: int, report_id: str) -> Record:
                keys = layout[0] if m.compressed else (layout[s] if s < len(layout) else {})
                return self._subset(arrays, keys, s, report_id, catalogue, m.centre)

            yield from each_subset(m.subsets, where, one)

    @staticmethod
    def _string(
        arrays: _Arrays | _DecodedArrays, keys: dict[str, tuple[int, int]], key: str, s: int
    ) -> str:
        v = arrays.get(key, keys[key][0], s, string=True)
        return (v or "").strip()

    def _subset(
        self,
        arrays: _Arrays | _DecodedArrays,
        keys: dict[str, tuple[int, int]],
        s: int,
        report_id: str,
        catalogue: StationCatalogue | None,
        centre: int,
    ) -> Record:
        meta: dict[str, Any] = {}
        for key in _NUMERIC_META:
            if key in keys:
                v = arrays.get(key, keys[key][0], s)
                if not is_missing(v):
                    meta[key] = v
        raw = [f"{k}={v}" for k, v in meta.items()]

        station_id, wmo = None, None
        if "wigosLocalIdentifierCharacter" in keys:
            local = self._string(arrays, keys, "wigosLocalIdentifierCharacter", s)
            parts = [meta[k] for k in _NUMERIC_META[:3] if k in meta]
            if local and len(parts) == 3:
                station_id = "-".join(str(int(p)) for p in parts) + f"-{local}"
                raw.insert(0, f"wigos={station_id}")
        if "blockNumber" in meta and "stationNumber" in meta:
            wmo = wmo_id(int(meta["blockNumber"]), int(meta["stationNumber"]))
        known = catalogue.by_wmo(wmo) if (catalogue is not None and wmo) else None
        if known is not None:
            station_id = known.station_id
        station_id = station_id or wmo
        if station_id is None and "shortStationName" in keys:
            short = self._string(arrays, keys, "shortStationName", s)
            station_id = f"{centre}:{short}" if short else None
        if station_id is None:
            return Rejection(
                report_id,
                "no_station_id",
                "no WIGOS id, WMO block/station or national station name",
                " ".join(raw),
            )
        try:
            t = datetime(
                int(meta["year"]),
                int(meta["month"]),
                int(meta["day"]),
                int(meta["hour"]),
                int(meta.get("minute", 0)),
                tzinfo=UTC,
            )
        except (KeyError, ValueError) as err:
            return Rejection(
                report_id, "bad_time", f"missing or invalid time ({err})", " ".join(raw), station_id
            )
        lat, lon = meta.get("latitude"), meta.get("longitude")
        elev = meta.get("heightOfStationGroundAboveMeanSeaLevel", meta.get("heightOfStation"))
        if known is not None:  # the message wins; the catalogue fills gaps
            lat = known.lat if lat is None else lat
            lon = known.lon if lon is None else lon
            elev = known.elevation if elev is None else elev
        if lat is None or lon is None:
            return Rejection(
                report_id, "no_location", "no latitude/longitude", " ".join(raw), station_id, t
            )

        lat, lon = round(float(lat), 6), round(float(lon), 6)  # drop BUFR scaling noise
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # also refuses NaN
            # BUFR's 0-05-001/0-06-001 ranges reach past the globe, so a flipped bit decodes
            # to a "valid" latitude of 216.9: no report may stand off the globe
            return Rejection(
                report_id,
                "bad_position",
                f"position off the globe: latitude {lat}, longitude {lon}",
                " ".join(raw),
                station_id,
                t,
            )
        values: dict[str, float] = {}
        flags: dict[str, tuple[str, str]] = {}
        for key, entry in LEXICON.items():
            if key not in keys or entry.variable in values:
                continue
            rank, height_rank = keys[key]
            v = arrays.get(key, rank, s)
            if is_missing(v):
                continue
            values[entry.variable] = entry.convert(float(v))
            kind = _QUALIFIED.get(key)
            note = ""
            if kind and height_rank:
                height = arrays.get(_HEIGHT, height_rank, s)
                if not is_missing(height):
                    note = f"@{height:g}m"
                    lo, hi = self.heights[kind]
                    if not lo <= height <= hi:
                        flags[entry.variable] = (
                            "sensor_height",
                            f"{key} measured at {height:g} m, outside the {lo:g}-{hi:g} m "
                            f"accepted for {entry.variable}",
                        )
            raw.append(f"{key}={v}{note}")
        if not values:
            return Rejection(
                report_id, "no_data", "no usable observed element", " ".join(raw), station_id, t
            )
        elevation = math.nan if elev is None else float(elev)
        # the elevation lets derive() reduce station pressure to MSL when msl is absent
        derive(values, flags, elevation=None if elev is None else elevation)
        if (bad := non_finite(values)) is not None:
            return Rejection(report_id, "non_finite", bad, " ".join(raw), station_id, t)
        return Report(report_id, station_id, lat, lon, elevation, t, values, " ".join(raw), flags)
