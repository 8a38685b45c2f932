"""Small Zarr v2 stores laid out as the two public ERA5 archives lay theirs out, for tests.

From a canonical Dataset (:func:`stratocast.gridded.open_gridded`'s form: dims
``(time, lat, lon)``, ``lat`` ascending, ``lon`` in [0, 360), canonical names and SI units) the
writers produce what a reader of the real archive meets: the archive's variable names, one
variable per pressure-level quantity on a ``level`` axis, its dimension order, latitude
direction, coordinate dtypes and attributes, time encoding, chunking, compressor and
consolidated metadata. Tests serve the result over HTTP and feed it to the shard build.

What the archives look like (researched 2026-12; ✔ = seen in the source named, ~ = inferred,
? = not confirmed, our choice)
--------------------------------------------------------------------------------------------

ARCO-ERA5, ``gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3``

* ✔ Zarr *format 2* with a consolidated ``.zmetadata`` despite the ``-v3`` in the name (a
  capture of the real ``.zmetadata`` quoted in a public feasibility note; a public loader that
  warns ``consolidated=True`` is load-bearing: there is no ``zarr.json``).
* ✔ names: google-research/arco-era5 ``src/arco_era5/source_data.py`` (SINGLE_LEVEL_VARIABLES,
  MULTILEVEL_VARIABLES) and the README data table: ``2m_temperature``,
  ``2m_dewpoint_temperature``, ``10m_u_component_of_wind``, ``10m_v_component_of_wind``,
  ``mean_sea_level_pressure``, ``surface_pressure``, ``geopotential_at_surface``,
  ``land_sea_mask``; on levels ``geopotential``, ``temperature``, ``u_component_of_wind``,
  ``v_component_of_wind``, ``specific_humidity``, ``vertical_velocity`` (no relative humidity).
* ✔ dims (``src/ar-to-zarr.py`` make_template): every single-level variable
  ``(time, latitude, longitude)`` — the static ``geopotential_at_surface`` and
  ``land_sea_mask`` included, repeated every hour — and level variables
  ``(time, level, latitude, longitude)``; float32 (dask zeros of float32 in the template).
* ✔ chunks ``{'time': 1, 'level': 37, 'latitude': 721, 'longitude': 1440}`` (README);
  surface chunk 1×721×1440 (the captured ``.zmetadata``).
* ✔ latitude 90 → -90 with both pole rows, longitude 0 … 359.75, both float32
  (``align_coordinates`` downcasts them; a public checker of the live store compares with
  ``np.linspace(90, -90, 721)`` and ``np.arange(1440)/4``); attrs ``units`` degrees_north /
  degrees_east and ``long_name`` as in the CDS NetCDF files the pipeline reads (~).
* ✔ level: int (a Python int assigned per file, ``read_multilevel_vars``), ascending 1 … 1000.
  It had no attributes (google-research/arco-era5 issue #88, 2024); in 2025-01 the maintainers
  added them to the v3 store only, without saying which (?): we write the CDS NetCDF pair
  ``units: millibars``, ``long_name: pressure_level``.
* ✔ time: integer hours since 1900-01-01 (``resize_zarr.py`` appends ``range(existing,
  total)`` to ``time`` and sets ``units = f"hours since {init_date}"``, init_date default
  1900-01-01); int64 and calendar ``proleptic_gregorian`` as xarray encodes datetime64 (~).
  The real axis is padded hourly 1900-01-01 … 2050-12-31 (1,323,648 steps, all-NaN outside
  the data); root attrs ``valid_time_start``, ``valid_time_stop``, ``valid_time_stop_era5t``,
  ``last_updated`` say where data is (``update_zarr_metadata``). ``regular_time=True`` gives an
  hourly axis with NaN gaps; the 1900–2050 padding itself is not reproduced (our choice).
* ✔ variable attrs: those of the CDS NetCDF file each variable came from plus ``short_name``
  (``get_var_attrs_dict``); units as in the README table before 2025-02 (``m**2 s**-2``,
  ``m s**-1``, ``kg kg**-1``, ``(0 - 1)``), long names as in the CDS NetCDF (✔ for t2m, d2m,
  u10, v10, sp in /work/shared/data/netcdf/era5_1995-07-14T12.nc; ~ for the others).
* ~ compressor Blosc(lz4, clevel 5, shuffle, blocksize 0), no filters, fill_value NaN: what
  xarray-beam's ``ChunksToZarr`` gets from zarr-python 2 by default (the same pipeline wrote
  the WeatherBench2 store below, where these bytes are confirmed).

WeatherBench2 ERA5, ``gs://weatherbench2/datasets/era5/``

* ``1959-2023_01_10-wb13-6h-1440x721_with_derived_variables.zarr`` (layout ``"1440x721"``),
  from the xarray repr in google-research/weatherbench2 ``docs/source/data-guide.ipynb``: ✔
  dims ``(time, latitude, longitude)`` / ``(time, level, latitude, longitude)``, chunks
  ``(1, 721, 1440)`` / ``(1, 13, 721, 1440)``, float32 data, latitude float32 *descending*
  (90 …), longitude float32 0 …, level int64 (13 levels 50 … 1000, ascending), time
  datetime64 (6-hourly, 93,544 steps). ~ statics 2-D ``(latitude, longitude)`` (they are 2-D in
  the 240x121 sibling, which ``scripts/regrid.py`` derives without adding dims).
* ``1959-2023_01_10-6h-240x121_equiangular_with_poles_conservative.zarr`` (``"240x121"``) and
  ``1959-2023_01_10-6h-64x32_equiangular_conservative.zarr`` (``"64x32"``): ✔ ``scripts/
  regrid.py`` builds the template with ``.transpose(..., 'longitude', 'latitude')`` from
  ``np.linspace`` coordinates, so dims ``(time, [level,] longitude, latitude)``, statics
  ``(longitude, latitude)``, latitude *ascending* and float64. For the 240x121 store a public
  tutorial pins every object it reads by size: the ``.zarray`` files are exactly the bytes
  zarr-python 2 writes for chunks ``[8, 240, 121]`` / ``[8, 13, 240, 121]`` / ``[240, 121]``,
  shape ``[93544, …]``, ``<f4``, fill ``NaN``, Blosc(lz4, 5, shuffle 1, blocksize 0), filters
  null, order C (we reproduced the byte counts 369 / 393 / 343, latitude 317 with ``<f8`` and
  fill NaN, level 314 with ``<i8`` and fill null); the tutorial's reader confirms "hours since
  1959-01-01 in steps of 6". ? the 64x32 time chunk: its 1959-2022 predecessor uses 100 (a
  captured ``.zmetadata``); we give it the 8 of its 240x121 sibling of the same vintage.
* ~ variable attrs as ARCO's (the same pipeline produced the hourly 37-level store these were
  cut from); ✔ ``relative_humidity`` and ``10m_wind_speed`` are derived by
  ``weatherbench2/derived_variables.py``: relative humidity as a *fraction* computed by xarray
  arithmetic, so it carries no attrs (no ``units``). ~ level has no attrs (as the ARCO stores
  had before 2025). ? root attrs: none written.

Writing choices (ours): pressure-level variables are gathered into one archive variable per
quantity on the union of the levels present, ascending; a (quantity, level) pair the input
lacks is all-NaN. The ``.zarray``/``.zattrs``/``.zgroup``/``.zmetadata`` JSON is re-serialised
as zarr-python 2 writes it (sorted keys, 4-space indent, no ``dimension_separator``), which is
what the byte counts above match. Coordinates are cast to the archive's dtype (float32 lat/lon
for ARCO and WB2 1440x721), as the archives do.

Names go through the project's own lexicon (:data:`stratocast.gridded.lexicon.ARRAY_NAMES`):
an archive name is used for a canonical variable only if the lexicon reads it back as that
variable, so writer and reader cannot drift apart. Archive names the lexicon does not know yet
are listed in :data:`LEXICON_GAPS` (a test fails once the lexicon learns one, so the entry
here is removed rather than silently shadowing it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.gridded import lexicon
from stratocast.gridded.lexicon import LevelTarget, Target
from stratocast.vocab.variables import VARIABLES, level_variable, parse_level_variable

WB2Layout = Literal["1440x721", "240x121", "64x32"]

#: archive names the project lexicon does not map yet → the canonical name the writer uses
#: for them; an entry here is a name to add to ``stratocast.gridded.lexicon.ZARR``
LEXICON_GAPS: dict[str, str] = {
    "land_sea_mask": "lsm",  # ERA5 lsm, a fraction 0-1 ("(0 - 1)"); no canonical lsm yet
}

# Attributes each archive variable carries (see the module docstring for the sources).
_CDS_ATTRS: dict[str, dict[str, str]] = {
    "2m_temperature": {"long_name": "2 metre temperature", "short_name": "t2m", "units": "K"},
    "2m_dewpoint_temperature": {
        "long_name": "2 metre dewpoint temperature",
        "short_name": "d2m",
        "units": "K",
    },
    "10m_u_component_of_wind": {
        "long_name": "10 metre U wind component",
        "short_name": "u10",
        "units": "m s**-1",
    },
    "10m_v_component_of_wind": {
        "long_name": "10 metre V wind component",
        "short_name": "v10",
        "units": "m s**-1",
    },
    "mean_sea_level_pressure": {
        "long_name": "Mean sea level pressure",
        "short_name": "msl",
        "standard_name": "air_pressure_at_mean_sea_level",
        "units": "Pa",
    },
    "surface_pressure": {
        "long_name": "Surface pressure",
        "short_name": "sp",
        "standard_name": "surface_air_pressure",
        "units": "Pa",
    },
    "geopotential_at_surface": {
        "long_name": "Geopotential",
        "short_name": "z",
        "standard_name": "geopotential",
        "units": "m**2 s**-2",
    },
    "land_sea_mask": {
        "long_name": "Land-sea mask",
        "short_name": "lsm",
        "standard_name": "land_binary_mask",
        "units": "(0 - 1)",
    },
    "geopotential": {
        "long_name": "Geopotential",
        "short_name": "z",
        "standard_name": "geopotential",
        "units": "m**2 s**-2",
    },
    "temperature": {
        "long_name": "Temperature",
        "short_name": "t",
        "standard_name": "air_temperature",
        "units": "K",
    },
    "u_component_of_wind": {
        "long_name": "U component of wind",
        "short_name": "u",
        "standard_name": "eastward_wind",
        "units": "m s**-1",
    },
    "v_component_of_wind": {
        "long_name": "V component of wind",
        "short_name": "v",
        "standard_name": "northward_wind",
        "units": "m s**-1",
    },
    "specific_humidity": {
        "long_name": "Specific humidity",
        "short_name": "q",
        "standard_name": "specific_humidity",
        "units": "kg kg**-1",
    },
    "vertical_velocity": {
        "long_name": "Vertical velocity",
        "short_name": "w",
        "standard_name": "lagrangian_tendency_of_air_pressure",
        "units": "Pa s**-1",
    },
}
# WeatherBench2's derived variables come out of xarray arithmetic: no attrs at all.
_WB2_ATTRS: dict[str, dict[str, str]] = {
    **_CDS_ATTRS,
    "relative_humidity": {},
    "10m_wind_speed": {},
}

_ARCO_SINGLE = (
    "2m_temperature",
    "2m_dewpoint_temperature",
    "10m_u_component_of_wind",
    "10m_v_component_of_wind",
    "mean_sea_level_pressure",
    "surface_pressure",
    "geopotential_at_surface",
    "land_sea_mask",
)
_ARCO_LEVEL = (
    "geopotential",
    "temperature",
    "u_component_of_wind",
    "v_component_of_wind",
    "specific_humidity",
    "vertical_velocity",
)
_STATIC = frozenset({"geopotential_at_surface", "land_sea_mask"})
_LAT_ATTRS = {"long_name": "latitude", "units": "degrees_north"}
_LON_ATTRS = {"long_name": "longitude", "units": "degrees_east"}
_BLOSC = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}


class LayoutError(StratocastError, ValueError):
    """The input cannot be written in the archive's layout (names what and why)."""


@dataclass(frozen=True)
class _Layout:
    """Everything that differs between the archive stores."""

    archive: str
    single: tuple[str, ...]
    level: tuple[str, ...]
    attrs: Mapping[str, Mapping[str, str]]
    lat_descending: bool
    lon_before_lat: bool  # (…, longitude, latitude): WeatherBench2's regridded stores
    coord_dtype: type[np.floating[Any]]
    time_chunk: int
    step_hours: int
    time_units: str
    static_has_time: bool
    level_attrs: Mapping[str, str] = field(default_factory=dict)


ARCO = _Layout(
    archive="ARCO-ERA5 full_37-1h-0p25deg-chunk-1.zarr-v3",
    single=_ARCO_SINGLE,
    level=_ARCO_LEVEL,
    attrs=_CDS_ATTRS,
    lat_descending=True,
    lon_before_lat=False,
    coord_dtype=np.float32,
    time_chunk=1,
    step_hours=1,
    time_units="hours since 1900-01-01",
    static_has_time=True,
    level_attrs={"long_name": "pressure_level", "units": "millibars"},
)
_WB2_COMMON: dict[str, Any] = {
    "single": (*_ARCO_SINGLE, "10m_wind_speed"),
    "level": (*_ARCO_LEVEL, "relative_humidity"),
    "attrs": _WB2_ATTRS,
    "step_hours": 6,
    "time_units": "hours since 1959-01-01",
    "static_has_time": False,
}
WEATHERBENCH2: dict[str, _Layout] = {
    "1440x721": _Layout(
        archive="WeatherBench2 1959-2023_01_10-wb13-6h-1440x721_with_derived_variables",
        lat_descending=True,
        lon_before_lat=False,
        coord_dtype=np.float32,
        time_chunk=1,
        **_WB2_COMMON,
    ),
    "240x121": _Layout(
        archive="WeatherBench2 1959-2023_01_10-6h-240x121_equiangular_with_poles_conservative",
        lat_descending=False,
        lon_before_lat=True,
        coord_dtype=np.float64,
        time_chunk=8,
        **_WB2_COMMON,
    ),
    "64x32": _Layout(
        archive="WeatherBench2 1959-2023_01_10-6h-64x32_equiangular_conservative",
        lat_descending=False,
        lon_before_lat=True,
        coord_dtype=np.float64,
        time_chunk=8,
        **_WB2_COMMON,
    ),
}


# ---------------------------------------------------------------------------- public API


def write_arco_era5(ds: xr.Dataset, path: Path, *, regular_time: bool = False) -> Path:
    """Write canonical ``ds`` to ``path`` as an ARCO-ERA5 ``full_37`` store; return ``path``.

    ``regular_time`` fills the time axis hourly from the first to the last time with all-NaN
    steps, as the real (padded, gap-free) axis is.
    """
    return _write(ds, Path(path), ARCO, regular_time)


def write_weatherbench2(
    ds: xr.Dataset, path: Path, *, layout: WB2Layout = "1440x721", regular_time: bool = False
) -> Path:
    """Write canonical ``ds`` to ``path`` as a WeatherBench2 ERA5 store; return ``path``.

    ``layout`` picks the store copied: ``"1440x721"`` (the 0.25° wb13 store, latitude
    descending) or one of the conservative regrids ``"240x121"``/``"64x32"`` (longitude before
    latitude, latitude ascending); the grid itself is ``ds``'s. ``regular_time`` fills the
    axis 6-hourly with all-NaN steps.
    """
    if layout not in WEATHERBENCH2:
        raise LayoutError(
            f"unknown WeatherBench2 layout {layout!r}; expected one of {sorted(WEATHERBENCH2)}"
        )
    return _write(ds, Path(path), WEATHERBENCH2[layout], regular_time)


def archive_names(layout: _Layout) -> dict[str, str]:
    """Canonical name (single-level) or quantity (level variables) → the archive's name.

    Taken from the project lexicon: a name is used only where ``ARRAY_NAMES`` reads it as that
    variable; :data:`LEXICON_GAPS` supplies the rest (and must not shadow the lexicon).
    """
    out: dict[str, str] = {}
    for name in (*layout.single, *layout.level):
        entry = lexicon.ARRAY_NAMES.get((name, None))
        if isinstance(entry, LevelTarget) and name in layout.level:
            out[entry.quantity] = name
        elif isinstance(entry, Target) and name in layout.single:
            out[entry.canonical] = name
        elif entry is None and name in LEXICON_GAPS:
            out[LEXICON_GAPS[name]] = name
        else:
            raise LayoutError(
                f"{layout.archive}: archive name {name!r} reads back through the lexicon as "
                f"{entry!r}, not as a {'level' if name in layout.level else 'single-level'} "
                "variable: the lexicon and this writer disagree"
            )
    return out


# ---------------------------------------------------------------------------- writing


def _write(ds: xr.Dataset, path: Path, layout: _Layout, regular_time: bool) -> Path:
    ds = _canonical_input(ds, layout, regular_time)
    names = archive_names(layout)
    single, quantities, levels = _split(ds, layout, names)
    out = xr.Dataset(coords=_coords(ds, layout, levels))
    times = ds["time"].values
    for canonical, name in single.items():
        out[name] = _single_variable(ds[canonical], canonical, name, layout, times)
    for quantity, name in quantities.items():
        out[name] = _level_variable(ds, quantity, levels, name, layout)
    if layout is ARCO:
        out.attrs = _arco_root_attrs(ds)
    out = out.transpose(*_dim_order(out, layout))
    try:
        out.to_zarr(
            path, mode="w", zarr_format=2, consolidated=True, encoding=_encoding(out, layout)
        )
    except (OSError, ValueError, TypeError) as exc:
        raise LayoutError(f"{path}: cannot write the {layout.archive} layout: {exc}") from exc
    _as_zarr_python_2(path)
    return path


def _canonical_input(ds: xr.Dataset, layout: _Layout, regular_time: bool) -> xr.Dataset:
    for dim in ("lat", "lon"):
        if dim not in ds.dims:
            raise LayoutError(
                f"{layout.archive}: input has no {dim!r} dimension ({dict(ds.sizes)})"
            )
    extra = sorted(str(d) for d in ds.dims if d not in ("time", "lat", "lon"))
    if extra:
        raise LayoutError(
            f"{layout.archive}: input dims {extra} have no place in the archive (it holds one "
            "analysis per time: select one member first, e.g. ds.isel(member=0))"
        )
    if "time" not in ds.dims:
        raise LayoutError(f"{layout.archive}: input has no 'time' dimension")
    ds = ds.sortby(["time", "lat", "lon"])
    times = ds["time"].values.astype("datetime64[ns]")
    step = np.timedelta64(layout.step_hours, "h")
    off_grid = times[(times - np.datetime64("1900-01-01T00", "ns")) % step != np.timedelta64(0)]
    if off_grid.size:
        raise LayoutError(
            f"{layout.archive}: times {[str(t) for t in off_grid[:3]]} are not on its "
            f"{layout.step_hours}-hourly axis"
        )
    if regular_time and times.size:
        axis = np.arange(times[0], times[-1] + step, step).astype("datetime64[ns]")
        ds = ds.reindex(time=axis)
    return ds


def _split(
    ds: xr.Dataset, layout: _Layout, names: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str], list[int]]:
    """Single-level canonical → archive name, quantity → archive name (those present), and
    the union of the levels present (every quantity gets all of them)."""
    single: dict[str, str] = {}
    quantities: dict[str, str] = {}
    levels: set[int] = set()
    unknown: list[str] = []
    for var in map(str, ds.data_vars):
        parsed = parse_level_variable(var)
        if parsed is not None and parsed[0] in names:
            quantities[parsed[0]] = names[parsed[0]]
            levels.add(parsed[1])
        elif parsed is None and var in names:
            single[var] = names[var]
        else:
            unknown.append(var)
    if unknown:
        raise LayoutError(
            f"{layout.archive} has no variable for {unknown}; it holds {sorted(names)} "
            "(pressure-level quantities as quantity+level, e.g. t850)"
        )
    return single, dict(sorted(quantities.items())), sorted(levels)


def _coords(ds: xr.Dataset, layout: _Layout, levels: list[int]) -> dict[str, xr.Variable]:
    lat = np.asarray(ds["lat"].values, dtype=layout.coord_dtype)
    lon = np.asarray(ds["lon"].values, dtype=layout.coord_dtype)
    coords = {
        "time": xr.Variable("time", ds["time"].values.astype("datetime64[ns]")),
        "latitude": xr.Variable("latitude", lat[::-1] if layout.lat_descending else lat),
        "longitude": xr.Variable("longitude", lon),
    }
    coords["latitude"].attrs = dict(_LAT_ATTRS)
    coords["longitude"].attrs = dict(_LON_ATTRS)
    if levels:
        coords["level"] = xr.Variable(
            "level", np.asarray(levels, dtype=np.int64), attrs=dict(layout.level_attrs)
        )
    return coords


def _to_archive(canonical: str, name: str, layout: _Layout, values: np.ndarray) -> np.ndarray:
    """SI values in the archive's units (float32): the inverse of the lexicon's own native→SI
    map, so what the reader undoes is exactly what was done; identity leaves the bits alone."""
    units = layout.attrs[name].get("units")
    if units is not None and canonical in VARIABLES:
        conv = lexicon.si_converter(canonical, units)
        if not conv.is_identity:
            wide = np.asarray(values, dtype=np.float64)
            return ((wide - conv.offset) * conv.divisor / conv.scale).astype(np.float32)
    return np.asarray(values).astype(np.float32)


def _on_grid(values: np.ndarray, dims: tuple[str, ...], layout: _Layout) -> xr.DataArray:
    """Canonical-ordered ``values`` (…, lat, lon) as the archive's (…, latitude, longitude)
    with its latitude direction; the final dim order is applied to the whole Dataset."""
    if layout.lat_descending:
        values = np.flip(values, axis=dims.index("lat"))
    renamed = tuple({"lat": "latitude", "lon": "longitude"}.get(d, d) for d in dims)
    return xr.DataArray(values, dims=renamed)


def _single_variable(
    da: xr.DataArray, canonical: str, name: str, layout: _Layout, times: np.ndarray
) -> xr.DataArray:
    static = name in _STATIC and not layout.static_has_time
    if static and "time" in da.dims:
        first = da.isel(time=0, drop=True)
        same = (da == first) | (da.isnull() & first.isnull())
        if not bool(same.all()):
            raise LayoutError(
                f"{layout.archive}: {canonical} varies in time but {name!r} is a static "
                "(latitude, longitude) field there"
            )
        da = first
    if not static and "time" not in da.dims:
        # ARCO repeats even its static fields every hour
        da = da.expand_dims(time=times)
    dims = ("lat", "lon") if static else ("time", "lat", "lon")
    values = _to_archive(canonical, name, layout, da.transpose(*dims).values)
    out = _on_grid(values, dims, layout)
    out.attrs = dict(layout.attrs[name])
    return out


def _level_variable(
    ds: xr.Dataset, quantity: str, levels: list[int], name: str, layout: _Layout
) -> xr.DataArray:
    shape = (ds.sizes["time"], len(levels), ds.sizes["lat"], ds.sizes["lon"])
    values = np.full(shape, np.nan, dtype=np.float32)  # a pair the input lacks stays NaN
    for i, level in enumerate(levels):
        canonical = level_variable(quantity, level)
        if canonical in ds:
            da = ds[canonical]
            if "time" not in da.dims:
                da = da.expand_dims(time=ds["time"].values)
            values[:, i] = _to_archive(
                canonical, name, layout, da.transpose("time", "lat", "lon").values
            )
    out = _on_grid(values, ("time", "level", "lat", "lon"), layout)
    out.attrs = dict(layout.attrs[name])
    return out


def _dim_order(ds: xr.Dataset, layout: _Layout) -> list[str]:
    horizontal = ["longitude", "latitude"] if layout.lon_before_lat else ["latitude", "longitude"]
    return [d for d in ("time", "level", *horizontal) if d in ds.dims]


def _encoding(ds: xr.Dataset, layout: _Layout) -> dict[str, dict[str, Any]]:
    from numcodecs import Blosc

    blosc = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE, blocksize=0)
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        chunks = tuple(
            layout.time_chunk if d == "time" and name != "time" else ds.sizes[d] for d in var.dims
        )
        enc[str(name)] = {"compressors": (blosc,), "chunks": chunks}
        if np.issubdtype(var.dtype, np.floating):
            enc[str(name)]["_FillValue"] = np.nan
    enc["time"].update(
        {"units": layout.time_units, "calendar": "proleptic_gregorian", "dtype": "int64"}
    )
    return enc


def _arco_root_attrs(ds: xr.Dataset) -> dict[str, str]:
    times = pd.DatetimeIndex(ds["time"].values)
    valid = times[np.asarray(ds.to_array().notnull().any(["variable", "lat", "lon"]))]
    first, last = (valid if valid.size else times)[[0, -1]]
    return {
        "valid_time_start": first.strftime("%Y-%m-%d"),
        "valid_time_stop": last.strftime("%Y-%m-%d"),
        "last_updated": str(datetime.now(UTC)),
    }


# ---------------------------------------------------------------------------- metadata bytes


def zarr2_json(obj: Any) -> str:
    """JSON as zarr-python 2 writes its metadata documents."""
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=True, separators=(",", ": "))


def _as_zarr_python_2(path: Path) -> None:
    """Re-serialise the metadata as zarr-python 2 (which wrote the archives) did, and rebuild
    ``.zmetadata`` from it: zarr-python 3 adds ``dimension_separator`` and keeps key order."""
    consolidated: dict[str, Any] = {}
    for root, _dirs, files in os.walk(path):
        for fname in files:
            if fname not in (".zarray", ".zattrs", ".zgroup"):
                continue
            file = Path(root) / fname
            doc = json.loads(file.read_text())
            if fname == ".zarray" and doc.get("dimension_separator") == ".":
                del doc["dimension_separator"]  # "." is the v2 default the archives rely on
            file.write_text(zarr2_json(doc))
            consolidated[file.relative_to(path).as_posix()] = doc
    meta = {"metadata": dict(sorted(consolidated.items())), "zarr_consolidated_format": 1}
    (path / ".zmetadata").write_text(zarr2_json(meta))


__all__ = [
    "ARCO",
    "LEXICON_GAPS",
    "WEATHERBENCH2",
    "LayoutError",
    "WB2Layout",
    "archive_names",
    "write_arco_era5",
    "write_weatherbench2",
    "zarr2_json",
]
