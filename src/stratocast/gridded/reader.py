"""Open a gridded file (GRIB1/GRIB2, NetCDF, Zarr) as canonical fields.

The canonical form every later stage relies on:

* variables named as in :mod:`stratocast.vocab.variables` (``t2m``, ``t500``, ``z1000``,
  ``u250``, ``r850`` ...), SI units (relative humidity in 1, not %), ``units`` and
  ``standard_name`` attributes from that table;
* dims ``(time, lat, lon)``, or ``(time, member, lat, lon)`` for an ensemble; ``time`` is the
  *valid* time (reference time + step) as ``datetime64[ns]``;
* ``lat`` ascending, ``lon`` in ``[0, 360)`` ascending.

Every variable on any of ERA5's 37 standard pressure levels maps to its canonical name
through the lexicon's pressure-level quantities (:mod:`stratocast.gridded.lexicon`): GRIB
``shortName``/``typeOfLevel=isobaricInhPa``/``level``, array stores by variable name on a
``level``/``pressure_level``/``isobaricInhPa``/``plev`` axis.

Format is sniffed from the content (``GRIB`` magic, NetCDF/HDF5 signatures, Zarr metadata
files), not the extension. GRIB: :mod:`stratocast.gridded.grib`; NetCDF/Zarr (lazy):
:mod:`stratocast.gridded.arrays`.

A URL (``https://``, ``s3://``, ``gs://``, any fsspec scheme) reads through a bounded disk
cache: a Zarr store lazily, object by object; a NetCDF/GRIB file downloaded whole
(:mod:`stratocast.gridded.remote`). Errors then name the URL.

Nothing is dropped without a word: every field that does not become a canonical variable is
listed with its reason in the ``skipped_fields`` attribute (:mod:`stratocast.gridded.skipped`)
and the log, and an open that yields no field at all raises :class:`GriddedFileError`
listing what the file had and why each was skipped. A file that cannot be read as a whole —
corrupt, truncated, on a grid we do not handle, or with two fields for one slot that no
argument separates — raises :class:`GriddedFileError` naming the file and what failed: never
partial data.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from stratocast.gridded import lexicon, remote
from stratocast.gridded.arrays import read_array_store
from stratocast.gridded.errors import GriddedFileError
from stratocast.gridded.grib import Selection, read_grib
from stratocast.gridded.lexicon import ArrayKey, ArrayLexicon, Entry, GribKey, GribLexicon
from stratocast.gridded.skipped import SkipLog
from stratocast.gridded.steps import StepLike, as_step
from stratocast.vocab.variables import VARIABLES

__all__ = ["GriddedFileError", "open_gridded"]


def open_gridded(
    source: Path | str,
    *,
    grib_lexicon: GribLexicon | None = None,
    array_lexicon: ArrayLexicon | None = None,
    data_type: str | Collection[str] | None = None,
    step: StepLike | None = None,
    variables: Collection[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: Path | None = None,
    cache_bytes: int = remote.DEFAULT_CACHE_BYTES,
) -> xr.Dataset:
    """Read ``source`` into a canonical :class:`xarray.Dataset` (see module docstring).

    ``source`` is a local path, or a URL (``https://``, ``s3://``, ``gs://``, any fsspec
    scheme; ``storage_options`` go to fsspec): a Zarr store there opens lazily with every
    object read through a disk cache of at most ``cache_bytes`` in ``cache_dir`` (default
    ``<user cache>/stratocast/gridded``); a single NetCDF/GRIB file is downloaded whole into
    that cache and opened from there (:mod:`stratocast.gridded.remote`). The three options are
    ignored for a local path.

    The lexicon arguments replace the built-in tables (for extra variables or a local
    convention); they are checked first (units through Pint: :func:`lexicon.validate`). A
    target name outside the canonical table gets no vocab attributes and keeps its units.

    ``data_type`` keeps only GRIB messages of that ecCodes ``dataType`` (``"an"``, ``"fc"``,
    ``"pf"`` ...; several as a collection); ``step`` keeps only fields of that forecast step
    (hours as a number, or a timedelta): GRIB messages, or one lead of a forecast store's
    ``prediction_timedelta``/``step`` axis. Both are needed only where a file holds an
    analysis and a forecast, or several steps, for the same valid time: the error then says
    which to give.

    ``variables`` keeps only those canonical names (GRIB values of the others are never
    decoded); one the file does not give is an error naming it and what the file has.
    """
    for lex in (grib_lexicon, array_lexicon):
        if lex is not None:
            lexicon.validate(lex)
    url = isinstance(source, str) and remote.is_url(source)
    path = Path(source.removeprefix("file://") if isinstance(source, str) else source)
    if not url and not path.exists():
        raise GriddedFileError(path, "no such file or directory")
    wanted_step = as_step(step) if step is not None else None
    args = _Args(grib_lexicon, array_lexicon, data_type, wanted_step, variables)
    if url:
        return _open_url(str(source), args, storage_options, cache_dir, cache_bytes)
    return _read(path, _sniff(path), args)


@dataclass(frozen=True)
class _Args:
    grib_lexicon: GribLexicon | None
    array_lexicon: ArrayLexicon | None
    data_type: str | Collection[str] | None
    step: np.timedelta64 | None
    variables: Collection[str] | None


def _open_url(
    url: str,
    args: _Args,
    storage_options: Mapping[str, Any] | None,
    cache_dir: Path | None,
    cache_bytes: int,
) -> xr.Dataset:
    src = remote.open_remote(
        url, storage_options=storage_options, cache_dir=cache_dir, cache_bytes=cache_bytes
    )
    # The readers name a Path in their errors: the cached copy's, or (for a store) a stand-in.
    # Errors about it are re-raised naming the URL; remote errors already name URL and key.
    where = src.file.path if src.file is not None else Path(src.url)
    try:
        if src.store is not None:
            return _read(where, "zarr", args, src.store)
        kind = _sniff(where)
        ds = _read(where, kind, args)
    except GriddedFileError as err:
        if src.file is not None:
            src.file.close()
        if err.path != where:
            raise
        raise GriddedFileError(src.url, err.problem) from err
    except BaseException:
        if src.file is not None:
            src.file.close()
        raise
    # A lazily opened NetCDF reads the cached copy later: hold it (safe from eviction) for as
    # long as the Dataset lives. GRIB was decoded whole into memory: nothing left to read.
    assert src.file is not None
    if kind == "grib":
        src.file.close()
    else:
        weakref.finalize(ds, src.file.close)
    return ds


def _read(
    path: Path, kind: str, args: _Args, store: remote.CachedZarrStore | None = None
) -> xr.Dataset:
    wanted_step = args.step
    variables = args.variables
    wanted = frozenset([variables] if isinstance(variables, str) else variables or ())
    wanted_vars = wanted if variables is not None else None
    skipped = SkipLog(path)
    if kind == "grib":
        data_type = args.data_type
        types = {data_type} if isinstance(data_type, str) else data_type
        select = Selection(
            frozenset(types) if types is not None else None, wanted_step, wanted_vars
        )
        lex_g = cast(
            Mapping[GribKey, Entry],
            lexicon.GRIB if args.grib_lexicon is None else args.grib_lexicon,
        )
        ds = read_grib(path, lex_g, select, skipped)
    else:
        if args.data_type is not None:
            raise GriddedFileError(
                path,
                f"data_type={args.data_type!r} selects GRIB messages; this is a {kind} store",
            )
        lex_a = cast(
            Mapping[ArrayKey, Entry],
            lexicon.ARRAY_NAMES if args.array_lexicon is None else args.array_lexicon,
        )
        ds = read_array_store(path, kind, lex_a, wanted_step, skipped, wanted_vars, store)
    missing = sorted(wanted - set(map(str, ds.data_vars)))
    if missing:
        raise skipped.not_found(kind, missing, sorted(map(str, ds.data_vars)))
    if not ds.data_vars:
        raise skipped.nothing_opened(kind)
    return skipped.report(_canonical_coords(ds))


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


# ---------------------------------------------------------------------------- canonical form


def _canonical_coords(ds: xr.Dataset) -> xr.Dataset:
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
