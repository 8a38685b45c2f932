"""NetCDF and Zarr → canonical fields (lazy: fields are selected and scaled, never loaded here).

Axes are found by name first (``latitude``, ``time``, ``level``, ...: ERA5 CDS, ARCO-ERA5,
WeatherBench2, cfgrib, CMIP), then by their CF attributes (:mod:`stratocast.gridded.axes`),
so an ERA-Interim-style ``t`` or ``initial_time0_hours`` time axis opens too.

A variable on a pressure-level axis becomes one canonical variable per level
(``temperature`` on 13 levels → ``t50`` ... ``t1000``); the level values are read through
Pint in their own units (CF/CMIP ``plev`` is in Pa, ERA5 ``level`` in hPa, ARCO in
millibars). A variable with a scalar level coordinate (one level selected before writing)
is that level's variable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from stratocast.gridded import axes, lexicon
from stratocast.gridded.errors import GriddedFileError
from stratocast.gridded.lexicon import ArrayKey, Entry, LevelTarget, Target
from stratocast.gridded.remote import CachedZarrStore
from stratocast.gridded.skipped import SkipLog
from stratocast.gridded.steps import format_step
from stratocast.vocab.units import UnitConversionError
from stratocast.vocab.variables import VARIABLES

_CANONICAL_DIMS = ("time", "member", "lat", "lon")


def open_array_store(path: Path, kind: str, store: CachedZarrStore | None = None) -> xr.Dataset:
    """Open lazily; ``store`` (a remote Zarr store) replaces ``path``, which then only names
    the source in errors."""
    try:
        if store is not None:
            # format and consolidation are known from the probe: no further guessing requests
            return xr.open_zarr(
                store, consolidated=store.consolidated, zarr_format=store.zarr_format
            )
        if kind == "zarr":
            return xr.open_zarr(path, consolidated=_zarr_consolidated(path))
        return xr.open_dataset(path, engine="netcdf4")
    except GriddedFileError:
        raise  # a remote read failed: it already names the URL and the object
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise GriddedFileError(path, f"cannot open as {kind}: {exc}") from exc


def _zarr_consolidated(path: Path) -> bool:
    """Say up front whether metadata is consolidated: guessing wrong costs a warning and a
    second round of metadata reads (slow on object stores)."""
    if (path / ".zmetadata").exists():
        return True
    meta = path / "zarr.json"
    return meta.exists() and '"consolidated_metadata"' in meta.read_text(errors="replace")


def read_array_store(
    path: Path,
    kind: str,
    lex: Mapping[ArrayKey, Entry],
    step: np.timedelta64 | None,
    skipped: SkipLog,
    variables: frozenset[str] | None = None,
    store: CachedZarrStore | None = None,
) -> xr.Dataset:
    raw = open_array_store(path, kind, store)
    found = axes.find_axes(path, raw)
    raw = _select_step(path, raw, found.lead, step)
    raw = _single_time_axis(path, raw, found.time)
    raw = _to_valid_time(path, raw, found.time)
    renames = {found.lat: "lat", found.lon: "lon", found.time: "time"}
    member = axes.find(raw, axes.MEMBER_NAMES)
    if member is not None:
        renames[member] = "member"
    raw = raw.rename({k: v for k, v in renames.items() if k != v})
    if raw["time"].ndim == 0:
        raw = raw.expand_dims("time")
    levels = {name: axes.levels_hpa(path, raw[name]) for name in found.levels if name in raw}
    out: dict[str, xr.DataArray] = {}
    source: dict[str, str] = {}
    for name in map(str, raw.data_vars):
        for canonical, da in _canonical_vars(raw, name, levels, lex, skipped):
            if variables is not None and canonical not in variables:
                skipped.add(canonical, "not requested (variables=)", f"variable {name!r}")
                continue
            if canonical in out:
                raise GriddedFileError(
                    path,
                    f"variables {source[canonical]!r} and {name!r} both give {canonical}: "
                    "drop one before opening (e.g. ds.drop_vars)",
                )
            out[canonical] = da
            source[canonical] = name
    return xr.Dataset(out)


def _select_step(
    path: Path, ds: xr.Dataset, lead: str | None, step: np.timedelta64 | None
) -> xr.Dataset:
    """Keep the one forecast step ``step`` asks for (``prediction_timedelta``, ``step``)."""
    if step is None:
        return ds
    if lead is None:
        raise GriddedFileError(
            path, f"step={format_step(step)} given but the file has no forecast-step axis"
        )
    values = np.atleast_1d(ds[lead].values).astype("timedelta64[ns]")
    hits = np.flatnonzero(values == step)
    if hits.size == 0:
        have = ", ".join(format_step(v) for v in values)
        raise GriddedFileError(path, f"no step {format_step(step)} in {lead} (has {have})")
    if ds[lead].ndim == 0:
        return ds
    return ds.isel({lead: int(hits[0])})


def _single_time_axis(path: Path, ds: xr.Dataset, time: str) -> xr.Dataset:
    """Make ``time`` the only time-like variable, indexing its own dimension if it has one.

    cfgrib/CDS exports carry both ``time`` (reference) and ``valid_time``; we keep valid time.
    A time variable along a differently named dimension (``record``) becomes its index.
    """
    vt = ds[time]
    if vt.ndim > 1:
        raise GriddedFileError(
            path,
            f"{time} is {vt.ndim}-D {vt.dims}: select one forecast step with "
            "open_gridded(..., step=...)",
        )
    if vt.ndim == 1 and vt.dims[0] != time:
        ds = ds.swap_dims({vt.dims[0]: time})
    if time != "valid_time":
        return ds
    others = [n for n in ("time", *axes.LEAD_NAMES) if n in ds.variables and n not in ds.dims]
    return ds.drop_vars(others)


def _to_valid_time(path: Path, ds: xr.Dataset, time: str) -> xr.Dataset:
    """Forecast stores index by (init time, lead): fold a single lead into valid time."""
    lead = axes.find(ds, axes.LEAD_NAMES)
    if lead is None or time == "valid_time":
        return ds
    if ds[lead].size != 1:
        have = ", ".join(format_step(v) for v in ds[lead].values.astype("timedelta64[ns]"))
        raise GriddedFileError(
            path,
            f"forecast store with {ds[lead].size} lead times ({lead}: {have}): select one "
            "with open_gridded(..., step=...), valid time would be two-dimensional",
        )
    step = ds[lead].squeeze()
    ds = ds.squeeze(lead, drop=True) if lead in ds.dims else ds.drop_vars(lead)
    return ds.assign_coords({time: ds[time] + step.values})


def _canonical_vars(
    ds: xr.Dataset,
    name: str,
    levels: Mapping[str, np.ndarray],
    lex: Mapping[ArrayKey, Entry],
    skipped: SkipLog,
) -> Iterator[tuple[str, xr.DataArray]]:
    da = ds[name]
    where = f"variable {name!r}"
    level_dim = next((d for d in da.dims if d in levels), None)
    entry = lex.get((name, None))
    if level_dim is not None:
        yield from _per_level(da, name, str(level_dim), levels[str(level_dim)], lex, skipped)
        return
    scalar = next((c for c in axes.LEVEL_NAMES if c in da.coords and da[c].ndim == 0), None)
    if scalar is not None and (isinstance(entry, LevelTarget) or entry is None):
        hpa = axes.levels_hpa(Path(skipped.path), da[scalar])
        yield from _per_level(da, name, None, hpa, lex, skipped)
        return
    if entry is None:
        skipped.add(name, "no lexicon entry", where)
        return
    if isinstance(entry, LevelTarget):
        reason = "a pressure-level quantity with no level axis or coordinate"
        skipped.add(name, reason, where, recognised=True)
        return
    converted = _convert(da, entry, name, where, skipped)
    if converted is not None:
        yield entry.canonical, converted


def _per_level(
    da: xr.DataArray,
    name: str,
    level_dim: str | None,
    levels_hpa: np.ndarray,
    lex: Mapping[ArrayKey, Entry],
    skipped: SkipLog,
) -> Iterator[tuple[str, xr.DataArray]]:
    """One canonical variable per level of ``da`` (``level_dim`` None: a scalar level)."""
    generic = lex.get((name, None))
    named_levels = isinstance(generic, LevelTarget) or any(
        key[0] == name and key[1] is not None for key in lex
    )
    where = f"variable {name!r}"
    for i, hpa in enumerate(np.atleast_1d(levels_hpa)):
        label = f"{name}@{hpa:g}hPa"
        std = lexicon.standard_level(float(hpa))
        entry = lex.get((name, std)) if std is not None else None
        why = "no lexicon entry"
        if entry is None and isinstance(generic, LevelTarget):
            entry, why = lexicon.resolve_level(generic, float(hpa))
        elif std is None and named_levels:
            why = f"{hpa:g} hPa is not one of the 37 standard pressure levels"
        if not isinstance(entry, Target):
            skipped.add(label, why, where, recognised=why != "no lexicon entry")
            continue
        target = entry
        level = da.isel({level_dim: i}, drop=True) if level_dim is not None else da
        converted = _convert(level, target, label, where, skipped)
        if converted is not None:
            yield target.canonical, converted


def _convert(
    da: xr.DataArray, target: Target, label: str, where: str, skipped: SkipLog
) -> xr.DataArray | None:
    extra = [str(d) for d in da.dims if d not in _CANONICAL_DIMS]
    if extra:
        skipped.add(label, f"unexpected dims {extra}", where, recognised=True)
        return None
    missing = [d for d in ("lat", "lon") if d not in da.dims]
    if missing:
        reason = f"not a field on the lat/lon grid (no {missing})"
        skipped.add(label, reason, where, recognised=True)
        return None
    units = str(da.attrs.get("units", target.default_units))
    if target.canonical in VARIABLES:
        try:
            conv = lexicon.si_converter(target.canonical, units)
        except UnitConversionError as err:
            skipped.add(label, f"→ {target.canonical}: {err}", where, recognised=True)
            return None
        # arithmetic on a dask array stays lazy; identity keeps the array as it is
        out = da.copy(deep=False) if conv.is_identity else da * conv.factor + conv.offset
        out.attrs = {}
    else:  # a user target outside the canonical table: kept in the file's units
        out = da.copy(deep=False)
        out.attrs = {"units": units}
    # a scalar level coordinate says which level this is; it is in the name now, and left on
    # it would clash between t500 and t850 when they are merged into one Dataset
    out = out.drop_vars([c for c in out.coords if c in axes.LEVEL_NAMES and out[c].ndim == 0])
    order = [d for d in _CANONICAL_DIMS if d in out.dims]
    return out.transpose(*order)
