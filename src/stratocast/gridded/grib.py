"""GRIB1/GRIB2 → canonical fields, message by message with ecCodes.

ecCodes directly rather than cfgrib: we need per-message control (grid type, bitmap, byte
offset of a broken message, which messages an argument selects), and cfgrib builds
hypercubes we would immediately take apart again. Only the header keys of a message are
read until the lexicon and the selection (``data_type``, ``step``) have taken it, so the
values of the ~150 GFS fields we do not use are never decoded.

Two messages for one (variable, valid time, member) slot are resolved, never guessed:

* they differ in dataType (an analysis and a forecast) or in step (two forecasts valid at the
  same time): an error naming the ``data_type=`` / ``step=`` argument that selects one;
* they are identical (the same message twice, as concatenated downloads have): the repeat is
  skipped and reported;
* otherwise: an error naming both messages and the keys that differ.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import eccodes
import numpy as np
import numpy.typing as npt
import xarray as xr

from stratocast.gridded import lexicon
from stratocast.gridded.errors import GriddedFileError
from stratocast.gridded.lexicon import ISOBARIC, Entry, GribKey, LevelTarget, Target
from stratocast.gridded.skipped import SkipLog
from stratocast.gridded.steps import format_step, step_hint
from stratocast.vocab.units import UnitConversionError
from stratocast.vocab.variables import VARIABLES

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: keys that can tell two messages for the same slot apart (named in the duplicate error)
_IDENTITY_KEYS = ("dataType", "expver", "stepType", "centre", "generatingProcessIdentifier")


@dataclass(frozen=True)
class Selection:
    """Which messages to take when a file holds several kinds (None: all of them)."""

    data_types: frozenset[str] | None = None
    step: np.timedelta64 | None = None
    variables: frozenset[str] | None = None  # canonical names asked for


@dataclass(frozen=True)
class _Grid:
    ni: int
    nj: int
    lat_first: float
    lat_last: float
    lon_first: float
    lon_last: float
    j_consecutive: bool

    def lats(self) -> FloatArray:
        return np.linspace(self.lat_first, self.lat_last, self.nj)

    def lons(self) -> FloatArray:
        last = self.lon_last
        # A global grid written 0..359 or -180..179 is fine; one written 180..-180+dx wraps.
        if last < self.lon_first:
            last += 360.0
        return np.linspace(self.lon_first, last, self.ni)


@dataclass(frozen=True)
class _Field:
    canonical: str
    units: str  # canonical SI units, or the native ones for a target outside the table
    time: np.datetime64
    step: np.timedelta64
    member: int | None
    identity: dict[str, str]
    grid: _Grid
    values: FloatArray  # (nj, ni), file order
    where: str  # "message N at byte offset B", for error messages


def read_grib(
    path: Path, lex: Mapping[GribKey, Entry], select: Selection, skipped: SkipLog
) -> xr.Dataset:
    fields: list[_Field] = []
    for index, offset, handle in _grib_messages(path):
        try:
            field = _decode_message(path, handle, index, offset, lex, select, skipped)
        finally:
            eccodes.codes_release(handle)
        if field is not None:
            fields.append(field)
    return _assemble(path, fields, skipped)


def _grib_messages(path: Path) -> Iterator[tuple[int, int, int]]:
    """Yield (message number from 1, byte offset, ecCodes handle); the caller releases it."""
    count = 0
    with path.open("rb") as fh:
        while True:
            offset = fh.tell()
            try:
                handle = eccodes.codes_grib_new_from_file(fh)
            except eccodes.GribInternalError as exc:
                detail = _diagnose_message(path, offset)
                raise GriddedFileError(
                    path, f"GRIB message {count + 1} at/after byte offset {offset}: {exc}{detail}"
                ) from exc
            if handle is None:
                break
            count += 1
            start = int(eccodes.codes_get(handle, "offset"))
            yield count, start, handle
    if count == 0:
        raise GriddedFileError(path, "no GRIB message found")


def _diagnose_message(path: Path, offset: int) -> str:
    """Say what is wrong with the message starting at/after ``offset`` (section 0 length)."""
    data = path.read_bytes()
    start = data.find(b"GRIB", offset)
    if start < 0 or start + 16 > len(data):
        return f" (file ends at byte {len(data)} inside the message)"
    edition = data[start + 7]
    if edition == 1:
        length = int.from_bytes(data[start + 4 : start + 7], "big")
    elif edition == 2:
        length = int.from_bytes(data[start + 8 : start + 16], "big")
    else:
        return f" (message at byte {start} has unknown GRIB edition {edition})"
    end = start + length
    if end > len(data):
        return (
            f" (message at byte {start} declares {length} bytes but the file ends at byte "
            f"{len(data)}: truncated)"
        )
    if data[end - 4 : end] != b"7777":
        return (
            f" (message at byte {start} declares {length} bytes but there is no '7777' end "
            f"marker at byte {end - 4}: corrupted length or truncated message)"
        )
    return ""


def _lookup(
    lex: Mapping[GribKey, Entry], short: str, level_type: str, level: int
) -> tuple[Target | None, str]:
    """The target of a message, or None and why not."""
    if level_type == "isobaricInPa":  # GFS writes its top levels in Pa: 100 Pa is 1 hPa
        if level % 100 == 0:
            return _lookup(lex, short, ISOBARIC, level // 100)
        entry = lex.get((short, ISOBARIC, None))
        if isinstance(entry, LevelTarget):
            return None, f"{level} Pa is not one of the 37 standard pressure levels"
        return None, f"no lexicon entry for {short} on {level_type}"
    entry = lex.get((short, level_type, level)) or lex.get((short, level_type, None))
    if entry is None:
        return None, f"no lexicon entry for {short} on {level_type}"
    if isinstance(entry, LevelTarget):
        return lexicon.resolve_level(entry, level)
    return entry, ""


def _decode_message(
    path: Path,
    handle: int,
    index: int,
    offset: int,
    lex: Mapping[GribKey, Entry],
    select: Selection,
    skipped: SkipLog,
) -> _Field | None:
    where = f"message {index} at byte offset {offset}"
    try:
        grid_type = eccodes.codes_get_string(handle, "gridType")
        short = eccodes.codes_get_string(handle, "shortName")
        level_type = eccodes.codes_get_string(handle, "typeOfLevel")
        level = int(eccodes.codes_get(handle, "level"))
    except eccodes.GribInternalError as exc:
        raise GriddedFileError(path, f"{where}: cannot read header keys: {exc}") from exc
    if grid_type != "regular_ll":
        raise GriddedFileError(
            path,
            f"{where} ({short}): not a regular lat/lon grid: {grid_type}; regrid with e.g. "
            "`cdo remapbil,r360x181` or ecCodes/MIR `mir --grid=1/1` to regular_ll first",
        )
    label = f"{short}@{level_type}:{level}"
    target, why = _lookup(lex, short, level_type, level)
    if target is None:
        skipped.add(label, why, where, recognised=not why.startswith("no lexicon"))
        return None
    if select.variables is not None and target.canonical not in select.variables:
        skipped.add(target.canonical, "not requested (variables=)", where)
        return None
    try:
        return _decode_known(path, handle, where, label, target, select, skipped)
    except eccodes.GribInternalError as exc:
        raise GriddedFileError(path, f"{where} ({short}): cannot decode: {exc}") from exc


def _decode_known(
    path: Path,
    handle: int,
    where: str,
    label: str,
    target: Target,
    select: Selection,
    skipped: SkipLog,
) -> _Field | None:
    identity = {k: _key(handle, k) for k in _IDENTITY_KEYS}
    time = _valid_time(handle)
    step = time - _reference_time(handle)
    if select.data_types is not None and identity["dataType"] not in select.data_types:
        wanted = ", ".join(sorted(select.data_types))
        reason = f"dataType {identity['dataType']!r} not selected (data_type={wanted})"
        skipped.add(label, reason, where, recognised=True)
        return None
    if select.step is not None and step != select.step:
        reason = f"step {format_step(step)} not selected (step={format_step(select.step)})"
        skipped.add(label, reason, where, recognised=True)
        return None
    units = eccodes.codes_get_string(handle, "units")
    scale, offset_si, out_units = 1.0, 0.0, units
    if target.canonical in VARIABLES:
        try:
            conv = lexicon.si_converter(target.canonical, units)
        except UnitConversionError as err:
            skipped.add(label, f"→ {target.canonical}: {err}", where, recognised=True)
            return None
        scale, offset_si, out_units = conv.factor, conv.offset, VARIABLES[target.canonical].units
    grid = _Grid(
        ni=int(eccodes.codes_get(handle, "Ni")),
        nj=int(eccodes.codes_get(handle, "Nj")),
        lat_first=float(eccodes.codes_get(handle, "latitudeOfFirstGridPointInDegrees")),
        lat_last=float(eccodes.codes_get(handle, "latitudeOfLastGridPointInDegrees")),
        lon_first=float(eccodes.codes_get(handle, "longitudeOfFirstGridPointInDegrees")),
        lon_last=float(eccodes.codes_get(handle, "longitudeOfLastGridPointInDegrees")),
        j_consecutive=bool(eccodes.codes_get(handle, "jPointsAreConsecutive")),
    )
    values = np.asarray(eccodes.codes_get_values(handle), dtype=np.float64)
    if values.size != grid.ni * grid.nj:
        raise GriddedFileError(
            path, f"{where}: {values.size} values for a {grid.nj}x{grid.ni} grid"
        )
    if eccodes.codes_get(handle, "bitmapPresent"):
        # The bitmap, not the missingValue sentinel, says what is missing: a real value may
        # equal the sentinel (9999 gpm is a plausible geopotential height).
        bitmap = np.asarray(eccodes.codes_get_array(handle, "bitmap"), dtype=np.int64)
        values[bitmap == 0] = np.nan
    if scale != 1.0 or offset_si != 0.0:
        values = values * scale + offset_si
    shape = (grid.ni, grid.nj) if grid.j_consecutive else (grid.nj, grid.ni)
    array = values.reshape(shape)
    if grid.j_consecutive:
        array = array.T
    number = _optional_int(handle, "number")
    return _Field(target.canonical, out_units, time, step, number, identity, grid, array, where)


def _key(handle: int, key: str) -> str:
    if not eccodes.codes_is_defined(handle, key):
        return "-"
    return str(eccodes.codes_get_string(handle, key))


def _optional_int(handle: int, key: str) -> int | None:
    if not eccodes.codes_is_defined(handle, key) or eccodes.codes_is_missing(handle, key):
        return None
    return int(eccodes.codes_get(handle, key))


def _datetime(date: int, hhmm: int) -> np.datetime64:
    iso = f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}"
    return np.datetime64(f"{iso}T{hhmm // 100:02d}:{hhmm % 100:02d}", "ns")


def _valid_time(handle: int) -> np.datetime64:
    # ecCodes derives validityDate/Time from the reference time, step and step units (hours,
    # minutes, ...), so sub-hourly steps need no special case here.
    return _datetime(
        int(eccodes.codes_get(handle, "validityDate")),
        int(eccodes.codes_get(handle, "validityTime")),
    )


def _reference_time(handle: int) -> np.datetime64:
    return _datetime(
        int(eccodes.codes_get(handle, "dataDate")), int(eccodes.codes_get(handle, "dataTime"))
    )


def _duplicate(path: Path, old: _Field, new: _Field, skipped: SkipLog) -> bool:
    """Resolve two fields for one slot: True to skip ``new`` as a repeat, else raise."""
    slot = f"{new.canonical} at {new.time} (member {new.member})"
    if old.identity["dataType"] != new.identity["dataType"]:
        a, b = old.identity["dataType"], new.identity["dataType"]
        raise GriddedFileError(
            path,
            f"{new.where} gives {slot} as dataType {b!r}, {old.where} as {a!r}: select one "
            f"with open_gridded(..., data_type={a!r}) or data_type={b!r}",
        )
    if old.step != new.step:
        a, b = format_step(old.step), format_step(new.step)
        raise GriddedFileError(
            path,
            f"{new.where} gives {slot} at step {b}, {old.where} at step {a}: select one with "
            f"open_gridded(..., step=...) (hours or a timedelta: step={step_hint(old.step)} "
            f"or step={step_hint(new.step)})",
        )
    if old.units == new.units and np.array_equal(old.values, new.values, equal_nan=True):
        skipped.add(new.canonical, f"identical repeat of {old.where}", new.where)
        return True
    differ = [k for k in _IDENTITY_KEYS if old.identity[k] != new.identity[k]]
    detail = (
        "they differ in "
        + ", ".join(f"{k} ({old.identity[k]} vs {new.identity[k]})" for k in differ)
        if differ
        else "with the same header keys and different values"
    )
    raise GriddedFileError(
        path,
        f"{new.where} duplicates {slot} already given by {old.where}: {detail}; neither "
        "data_type= nor step= separates them: split the file first (e.g. grib_copy -w)",
    )


def _assemble(path: Path, fields: list[_Field], skipped: SkipLog) -> xr.Dataset:
    if not fields:
        return xr.Dataset()
    grid = fields[0].grid
    for f in fields:
        if f.grid != grid:
            raise GriddedFileError(
                path, f"{f.where} ({f.canonical}) is on a different grid than {fields[0].where}"
            )
    times = sorted({f.time for f in fields})
    members = sorted({f.member for f in fields if f.member is not None})
    has_member_dim = len(members) > 1
    t_index = {t: i for i, t in enumerate(times)}
    m_index = {m: i for i, m in enumerate(members)} if has_member_dim else {}
    shape = (len(times), len(members) if has_member_dim else 1, grid.nj, grid.ni)
    cubes: dict[str, FloatArray] = {}
    units: dict[str, str] = {}
    seen: dict[tuple[str, int, int], _Field] = {}
    for f in fields:
        key = (
            f.canonical,
            t_index[f.time],
            m_index[f.member] if has_member_dim and f.member is not None else 0,
        )
        if key in seen and _duplicate(path, seen[key], f, skipped):
            continue
        seen[key] = f
        if f.canonical not in cubes:  # not setdefault: that would allocate for every field
            cubes[f.canonical] = np.full(shape, np.nan)
            units[f.canonical] = f.units
        cube = cubes[f.canonical]
        cube[key[1], key[2]] = f.values
    dims = ("time", "member", "lat", "lon")
    data_vars = {name: (dims, cube, {"units": units[name]}) for name, cube in cubes.items()}
    coords: dict[str, object] = {
        "time": np.array(times, dtype="datetime64[ns]"),
        "lat": grid.lats(),
        "lon": grid.lons(),
    }
    if has_member_dim:
        coords["member"] = np.array(members)
    ds = xr.Dataset(data_vars, coords=coords)
    if not has_member_dim:
        ds = ds.squeeze("member", drop=True)
        if len(members) == 1:
            ds = ds.assign_coords(member=members[0])
    for name, cube in cubes.items():
        n_missing = int(np.isnan(cube).all(axis=(2, 3)).sum())
        if n_missing:
            log.info("%s: %s has no field for %d (time, member) slot(s)", path, name, n_missing)
    return ds
