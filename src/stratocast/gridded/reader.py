"""Open a gridded file (GRIB1/GRIB2, NetCDF, Zarr) as canonical fields.

The canonical form every later stage relies on:

* variables named as in :mod:`stratocast.vocab.variables` (``t2m``, ``z500``, ...), SI units,
  ``units``/``standard_name`` attributes from that table;
* dims ``(time, lat, lon)``, or ``(time, member, lat, lon)`` for an ensemble; ``time`` is the
  *valid* time (reference time + step) as ``datetime64[ns]``;
* ``lat`` ascending, ``lon`` in ``[0, 360)`` ascending.

Format is sniffed from the content (``GRIB`` magic, NetCDF/HDF5 signatures, Zarr metadata
files), not the extension. GRIB is decoded with ecCodes directly rather than through cfgrib:
we need per-message control (grid type, bitmap, byte offset of a broken message), and cfgrib
builds hypercubes we would immediately take apart again.

Variables with no lexicon entry are kept out and named in one logged note per file; they are
not an error (a GFS file holds ~300 fields, we use a handful). A file that cannot be read as a
whole — corrupt, truncated, on a grid we do not handle, or with conflicting duplicate fields —
raises :class:`GriddedFileError` naming the file and what failed: never partial data.
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

from stratocast.errors import StratocastError
from stratocast.gridded import lexicon
from stratocast.gridded.lexicon import Linear, Target
from stratocast.vocab.variables import VARIABLES

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

_LAT_NAMES = ("lat", "latitude")
_LON_NAMES = ("lon", "longitude")
_TIME_NAMES = ("valid_time", "time")
_LEVEL_NAMES = ("level", "pressure_level", "isobaricInhPa", "plev")
_MEMBER_NAMES = ("member", "number", "realization", "ensemble")
_LEAD_NAMES = ("prediction_timedelta", "step", "lead_time")


class GriddedFileError(StratocastError, OSError):
    """The file as a whole cannot be read into canonical fields."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def open_gridded(
    path: Path | str,
    *,
    grib_lexicon: Mapping[tuple[str, str, int | None], Target] | None = None,
    array_lexicon: Mapping[tuple[str, int | None], Target] | None = None,
) -> xr.Dataset:
    """Read ``path`` into a canonical :class:`xarray.Dataset` (see module docstring).

    The lexicon arguments replace the built-in tables (for extra variables or a local
    convention); a target name outside the canonical table then gets no vocab attributes.
    """
    path = Path(path)
    if not path.exists():
        raise GriddedFileError(path, "no such file or directory")
    kind = _sniff(path)
    if kind == "grib":
        ds = _read_grib(path, grib_lexicon if grib_lexicon is not None else lexicon.GRIB)
    else:
        ds = _read_array_store(
            path, kind, array_lexicon if array_lexicon is not None else lexicon.ARRAY_NAMES
        )
    return _canonical_coords(ds)


# ---------------------------------------------------------------------------- sniffing


def _sniff(path: Path) -> str:
    if path.is_dir():
        if any((path / m).exists() for m in (".zgroup", ".zmetadata", "zarr.json", ".zattrs")):
            return "zarr"
        raise GriddedFileError(path, "a directory but not a Zarr store (no .zgroup/zarr.json)")
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head[:3] == b"CDF" or head[:8] == b"\x89HDF\r\n\x1a\n":
        return "netcdf"
    # WMO bulletin headers may precede the first GRIB message, so look a little way in.
    if b"GRIB" in head:
        return "grib"
    if not head:
        raise GriddedFileError(path, "empty file")
    raise GriddedFileError(path, "not GRIB, NetCDF or Zarr (no GRIB/CDF/HDF5 signature)")


# ---------------------------------------------------------------------------- GRIB


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
    time: np.datetime64
    member: int | None
    grid: _Grid
    values: FloatArray  # (nj, ni), file order
    where: str  # "message N at byte offset B", for error messages


def _read_grib(path: Path, lex: Mapping[tuple[str, str, int | None], Target]) -> xr.Dataset:
    fields: list[_Field] = []
    unknown: set[str] = set()
    for index, offset, handle in _grib_messages(path):
        try:
            field = _decode_message(path, handle, index, offset, lex, unknown)
        finally:
            eccodes.codes_release(handle)
        if field is not None:
            fields.append(field)
    if unknown:
        log.info("%s: kept out %d non-canonical field(s): %s", path, len(unknown), sorted(unknown))
    return _assemble(path, fields)


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


def _decode_message(
    path: Path,
    handle: int,
    index: int,
    offset: int,
    lex: Mapping[tuple[str, str, int | None], Target],
    unknown: set[str],
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
    target = lex.get((short, level_type, level)) or lex.get((short, level_type, None))
    if target is None:
        unknown.add(f"{short}@{level_type}:{level}")
        return None
    try:
        return _decode_known(path, handle, where, target, unknown)
    except eccodes.GribInternalError as exc:
        raise GriddedFileError(path, f"{where} ({short}): cannot decode: {exc}") from exc


def _decode_known(
    path: Path, handle: int, where: str, target: Target, unknown: set[str]
) -> _Field | None:
    units = eccodes.codes_get_string(handle, "units")
    conv = lexicon.converter(target.canonical, units)
    if conv is None:
        unknown.add(f"{target.canonical} (unknown units {units!r})")
        return None
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
    values = values * conv.factor + conv.offset
    shape = (grid.ni, grid.nj) if grid.j_consecutive else (grid.nj, grid.ni)
    array = values.reshape(shape)
    if grid.j_consecutive:
        array = array.T
    number = _optional_int(handle, "number")
    return _Field(target.canonical, _valid_time(handle), number, grid, array, where)


def _optional_int(handle: int, key: str) -> int | None:
    if not eccodes.codes_is_defined(handle, key) or eccodes.codes_is_missing(handle, key):
        return None
    return int(eccodes.codes_get(handle, key))


def _valid_time(handle: int) -> np.datetime64:
    # ecCodes derives validityDate/Time from the reference time, step and step units (hours,
    # minutes, ...), so sub-hourly steps need no special case here.
    date = int(eccodes.codes_get(handle, "validityDate"))
    hhmm = int(eccodes.codes_get(handle, "validityTime"))
    iso = f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}"
    return np.datetime64(f"{iso}T{hhmm // 100:02d}:{hhmm % 100:02d}", "ns")


def _assemble(path: Path, fields: list[_Field]) -> xr.Dataset:
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
    seen: dict[tuple[str, int, int], str] = {}
    for f in fields:
        cube = cubes.setdefault(f.canonical, np.full(shape, np.nan))
        key = (
            f.canonical,
            t_index[f.time],
            m_index[f.member] if has_member_dim and f.member is not None else 0,
        )
        if key in seen:
            raise GriddedFileError(
                path,
                f"{f.where} duplicates {f.canonical} at {f.time} (member {f.member}) already "
                f"given by {seen[key]}",
            )
        seen[key] = f.where
        cube[key[1], key[2]] = f.values
    dims = ("time", "member", "lat", "lon")
    data_vars = {name: (dims, cube) for name, cube in cubes.items()}
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


# ---------------------------------------------------------------------------- NetCDF / Zarr


def _open_array_store(path: Path, kind: str) -> xr.Dataset:
    try:
        if kind == "zarr":
            return xr.open_zarr(path, consolidated=_zarr_consolidated(path))
        return xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise GriddedFileError(path, f"cannot open as {kind}: {exc}") from exc


def _zarr_consolidated(path: Path) -> bool:
    """Say up front whether metadata is consolidated: guessing wrong costs a warning and a
    second round of metadata reads (slow on object stores)."""
    if (path / ".zmetadata").exists():
        return True
    meta = path / "zarr.json"
    return meta.exists() and '"consolidated_metadata"' in meta.read_text(errors="replace")


def _find(ds: xr.Dataset, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in ds.coords or n in ds.dims), None)


def _read_array_store(
    path: Path, kind: str, lex: Mapping[tuple[str, int | None], Target]
) -> xr.Dataset:
    raw = _open_array_store(path, kind)
    lat, lon = _find(raw, _LAT_NAMES), _find(raw, _LON_NAMES)
    if lat is None or lon is None:
        raise GriddedFileError(
            path, f"no latitude/longitude coordinates in {sorted(map(str, raw.coords))}"
        )
    time = _find(raw, _TIME_NAMES)
    if time is None:
        raise GriddedFileError(path, "no time coordinate (time/valid_time)")
    raw = _single_time_axis(path, raw, time)
    raw = _to_valid_time(path, raw, time)
    renames = {lat: "lat", lon: "lon", time: "time"}
    member = _find(raw, _MEMBER_NAMES)
    if member is not None:
        renames[member] = "member"
    raw = raw.rename(renames)
    if raw["time"].ndim == 0:
        raw = raw.expand_dims("time")
    level = _find(raw, _LEVEL_NAMES)
    out: dict[str, xr.DataArray] = {}
    unknown: list[str] = []
    for name in raw.data_vars:
        for canonical, da in _canonical_vars(path, raw, str(name), level, lex, unknown):
            out[canonical] = da
    if unknown:
        log.info("%s: kept out %d non-canonical variable(s): %s", path, len(unknown), unknown)
    return xr.Dataset(out)


def _single_time_axis(path: Path, ds: xr.Dataset, time: str) -> xr.Dataset:
    """Make ``time`` the only time-like variable, indexing its own dimension if it has one.

    cfgrib/CDS exports carry both ``time`` (reference) and ``valid_time``; we keep valid time.
    """
    if time != "valid_time":
        return ds
    vt = ds["valid_time"]
    if vt.ndim > 1:
        raise GriddedFileError(
            path, f"valid_time is {vt.ndim}-D {vt.dims}: select one forecast step first"
        )
    if vt.ndim == 1 and vt.dims[0] != "valid_time":
        ds = ds.swap_dims({vt.dims[0]: "valid_time"})
    others = [n for n in ("time", *_LEAD_NAMES) if n in ds.variables and n not in ds.dims]
    return ds.drop_vars(others)


def _to_valid_time(path: Path, ds: xr.Dataset, time: str) -> xr.Dataset:
    """Forecast stores index by (init time, lead): fold a single lead into valid time."""
    lead = _find(ds, _LEAD_NAMES)
    if lead is None or time == "valid_time":
        return ds
    if ds[lead].size != 1:
        raise GriddedFileError(
            path,
            f"forecast store with {ds[lead].size} lead times ({lead}): select one lead "
            "before opening, valid time would be two-dimensional",
        )
    step = ds[lead].squeeze()
    ds = ds.squeeze(lead, drop=True) if lead in ds.dims else ds.drop_vars(lead)
    return ds.assign_coords({time: ds[time] + step.values})


def _canonical_vars(
    path: Path,
    ds: xr.Dataset,
    name: str,
    level: str | None,
    lex: Mapping[tuple[str, int | None], Target],
    unknown: list[str],
) -> Iterator[tuple[str, xr.DataArray]]:
    da = ds[name]
    if level is not None and level in da.dims:
        levels_hpa = _levels_hpa(ds[level])
        for (native, lev), target in lex.items():
            if native != name or lev is None:
                continue
            hits = np.flatnonzero(np.isclose(levels_hpa, lev))
            if hits.size == 0:
                unknown.append(f"{name}@{lev} hPa (level absent)")
                continue
            selected = da.isel({level: int(hits[0])}, drop=True)
            converted = _convert(path, selected, target, f"{name}@{lev}", unknown)
            if converted is not None:
                yield target.canonical, converted
        if not any(native == name for native, _ in lex):
            unknown.append(name)
        return
    single = lex.get((name, None))
    if single is None:
        unknown.append(name)
        return
    converted = _convert(path, da, single, name, unknown)
    if converted is not None:
        yield single.canonical, converted


def _levels_hpa(coord: xr.DataArray) -> FloatArray:
    values = np.asarray(coord.values, dtype=np.float64)
    units = str(coord.attrs.get("units", "hPa"))
    return values / 100.0 if units == "Pa" else values


def _convert(
    path: Path, da: xr.DataArray, target: Target, label: str, unknown: list[str]
) -> xr.DataArray | None:
    extra = [d for d in da.dims if d not in ("time", "member", "lat", "lon")]
    if extra:
        unknown.append(f"{label} (unexpected dims {extra})")
        return None
    units = str(da.attrs.get("units", target.default_units))
    conv: Linear | None = lexicon.converter(target.canonical, units)
    if conv is None:
        unknown.append(f"{label} (unknown units {units!r})")
        return None
    out = da * conv.factor + conv.offset if conv != Linear(1.0) else da.copy()
    out.attrs = {}
    order = [d for d in ("time", "member", "lat", "lon") if d in out.dims]
    return out.transpose(*order)


# ---------------------------------------------------------------------------- canonical form


def _canonical_coords(ds: xr.Dataset) -> xr.Dataset:
    if not ds.data_vars:
        return ds
    lon = np.mod(np.asarray(ds["lon"].values, dtype=np.float64), 360.0)
    # 360 - tiny rounds to 360.0 in float; fold it back so lon stays in [0, 360)
    lon[lon >= 360.0] -= 360.0
    ds = ds.assign_coords(lon=lon, lat=np.asarray(ds["lat"].values, dtype=np.float64)).sortby(
        ["lat", "lon"]
    )
    # A grid that repeats its first meridian at 360 (0..360 inclusive) now has lon 0 twice.
    _, first = np.unique(ds["lon"].values, return_index=True)
    if first.size != ds.sizes["lon"]:
        ds = ds.isel(lon=np.sort(first))
    ds["time"] = ds["time"].astype("datetime64[ns]")
    ds["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    ds["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    for name in ds.data_vars:
        var = VARIABLES.get(str(name))
        if var is not None:
            ds[name].attrs = {"units": var.units, "standard_name": var.standard_name}
    return ds
