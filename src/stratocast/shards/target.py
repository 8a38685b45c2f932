"""The gridded training target: any reanalysis or model source, cut to the run's domain.

``shards.target`` names where the dense fields the model learns to produce come from:

* ``source: world`` — the built-in simulated truth (``stratocast world`` writes it);
* a local path (ERA5 GRIB or NetCDF, a Zarr store) or a URL (``https://…``, ``gs://…``,
  ``s3://…``: ARCO-ERA5 and WeatherBench2 are Zarr v2 stores) read through
  :func:`stratocast.gridded.open_gridded`, so every name and unit convention the readers know
  applies, and a remote store is fetched chunk by chunk through the bounded disk cache;
* several files along time — a list of paths, or a glob such as ``era5/*.nc`` (daily ERA5
  files as the CDS delivers them): each opened once, checked against the first (variables,
  grid, members; times must not overlap), ordered by their first time and joined lazily along
  time, one dask chunk per file (:func:`_open_files`).

Then, in this order: one ensemble member (``member``) where the source has several; the time
range and step (``start``, ``end``, ``step_hours``: a subsample of the source's own step, never
an interpolation); the region (``region``: a lat/lon box, crossing 0° allowed; the output
longitudes are then one contiguous ascending run such as -15..35); and regridding
(``grid``: bilinear or conservative onto a regular grid of the given spacing over the region).

Everything here is lazy: the result is a Dataset of dask/zarr-backed arrays that the shard
build reads one shard (``shard_steps`` time steps) at a time, so a multi-year 0.25° source is
never loaded whole. Every check that needs only metadata (variables, time range, gaps, region,
static-field grid) runs here, before the build writes anything.
"""

from __future__ import annotations

import glob
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from stratocast.config import ComponentConfig
from stratocast.shards.layout import ShardError

if TYPE_CHECKING:
    import xarray as xr

WORLD = "world"
_DEG_TOL = 1e-6


class TargetError(ShardError, ValueError):
    """The configured training target cannot give what the run asks for (checked up front)."""


class RegionConfig(ComponentConfig):
    """A lat/lon box. Longitudes in -180..180 or 0..360; ``lon_min > lon_max`` after folding
    into [0, 360) (e.g. -15..35) means the box crosses 0°."""

    lat_min: float = Field(ge=-90.0, le=90.0)
    lat_max: float = Field(ge=-90.0, le=90.0)
    lon_min: float = Field(ge=-180.0, le=360.0)
    lon_max: float = Field(ge=-180.0, le=360.0)

    @model_validator(mode="after")
    def _ordered(self) -> RegionConfig:
        if self.lat_min >= self.lat_max:
            raise ValueError(f"region lat_min {self.lat_min} must be below lat_max {self.lat_max}")
        if self.lon_span() <= 0.0:
            raise ValueError(f"region lon_min {self.lon_min} and lon_max {self.lon_max} coincide")
        return self

    def lon_span(self) -> float:
        span = (self.lon_max - self.lon_min) % 360.0
        return 360.0 if span == 0.0 and self.lon_max != self.lon_min else span

    def describe(self) -> str:
        return f"lat {self.lat_min}..{self.lat_max}, lon {self.lon_min}..{self.lon_max}"


class GridConfig(ComponentConfig):
    """Regrid onto a regular grid of ``resolution_deg`` over the region (or the globe)."""

    resolution_deg: float = Field(gt=0.0, le=90.0)
    method: Literal["bilinear", "conservative"] = "bilinear"


_Path = Annotated[str, Field(min_length=1)]


class TargetConfig(ComponentConfig):
    source: _Path | Annotated[list[_Path], Field(min_length=1)] = Field(
        default=WORLD,
        description=(
            "'world', a GRIB/NetCDF/Zarr path, a Zarr URL (https://, gs://, s3://), or "
            "several files along time: a list of paths or a glob (era5/*.nc)"
        ),
    )
    start: str | None = None  # first valid time kept; None: the source's first
    end: str | None = None  # last valid time kept (inclusive); None: the source's last
    step_hours: int | None = Field(default=None, ge=1, le=8784)  # None: the source's step
    region: RegionConfig | None = None
    grid: GridConfig | None = None
    member: int | None = Field(default=None, ge=0, le=10_000)  # ensemble sources only
    data_type: str | None = None  # GRIB dataType ('an', 'fc', ...) where a file mixes them
    lead_hours: float | None = None  # forecast sources: the one step to take
    static: str | None = None  # a file with orography, when the source has none
    storage_options: dict[str, Any] = Field(default_factory=dict)  # fsspec, for URLs
    cache_gib: float = Field(default=8.0, gt=0.0, le=100_000.0)  # disk cache for URLs

    @property
    def is_world(self) -> bool:
        return self.source == WORLD

    def sources(self) -> list[str]:
        """The source as a list: the paths given, a glob's matches sorted, or the one source."""
        if isinstance(self.source, list):
            return list(self.source)
        if _is_url(self.source) or not glob.has_magic(self.source):
            return [self.source]
        found = sorted(glob.glob(str(Path(self.source.removeprefix("file://")).expanduser())))
        if not found:
            raise TargetError(f"shards.target.source {self.source!r}: the glob matches no file")
        return found

    def describe(self) -> str:
        """The source as errors name it."""
        if isinstance(self.source, str):
            return self.source
        if len(self.source) == 1:
            return self.source[0]
        return f"{self.source[0]} … ({len(self.source)} files)"


def _is_url(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _open(cfg: TargetConfig, source: str, variables: Sequence[str], cache_dir: Path) -> xr.Dataset:
    from stratocast.gridded import open_gridded

    kwargs: dict[str, Any] = {"variables": list(variables)}
    if cfg.data_type is not None:
        kwargs["data_type"] = cfg.data_type
    if cfg.lead_hours is not None:
        kwargs["step"] = cfg.lead_hours
    if _is_url(source):
        kwargs.update(
            storage_options=cfg.storage_options,
            cache_dir=cache_dir,
            cache_bytes=int(cfg.cache_gib * (1 << 30)),
        )
        return open_gridded(source, **kwargs)
    return open_gridded(Path(source.removeprefix("file://")), **kwargs)


def _open_with_orography(
    cfg: TargetConfig, source: str, channels: Sequence[str], cache_dir: Path
) -> xr.Dataset:
    """The channels, and the source's own orography where it has one (ERA5's surface
    geopotential: a static of ARCO-ERA5 and WeatherBench2, a field of many GRIB files)."""
    from stratocast.gridded import GriddedFileError

    if "orography" in channels:
        return _open(cfg, source, channels, cache_dir)
    try:
        return _open(cfg, source, [*channels, "orography"], cache_dir)
    except GriddedFileError as err:
        if "orography" not in err.problem:
            raise
    # the source has no orography: reopen asking for the channels alone, so a channel the
    # source lacks is reported on its own
    return _open(cfg, source, channels, cache_dir)


def _open_files(
    cfg: TargetConfig, files: Sequence[str], channels: Sequence[str], cache_dir: Path
) -> xr.Dataset:
    """Several files along time as one lazy Dataset.

    Each file is opened once (the per-file cost is the reader's open, ~30 ms for a daily
    ERA5 NetCDF file): the first with its orography where it has one (a static field: the
    others are asked for the channels alone, so that a file without it is no error), the
    others checked against it — the same variables, grid and members, else an error naming
    the file — then ordered by their first time, refused where their times overlap, and
    joined along time without re-aligning (the grids are equal, checked), one dask chunk per
    file and variable as ``xarray.open_mfdataset`` has it."""
    import xarray as xr

    first = _open_with_orography(cfg, files[0], channels, cache_dir)
    oro = first.get("orography")
    if oro is not None:  # a static: one 2-D field, whichever file's times it came with
        oro = oro.isel({d: 0 for d in oro.dims if d not in ("lat", "lon")}, drop=True)
    parts = [(files[0], first[list(channels)])]
    for f in files[1:]:
        ds = _open(cfg, f, channels, cache_dir)
        _same_layout(files[0], parts[0][1], f, ds)
        parts.append((f, ds))
    parts.sort(key=lambda p: p[1]["time"].values[0])
    for (fa, a), (fb, b) in itertools.pairwise(parts):
        a_last, b_first = a["time"].values[-1], b["time"].values[0]
        if b_first <= a_last:
            raise TargetError(
                f"{fb}: its times {_fmt(b_first)}..{_fmt(b['time'].values[-1])} overlap those "
                f"of {fa} ({_fmt(a['time'].values[0])}..{_fmt(a_last)}); give each time once"
            )
    # A token per file (path, size, mtime) instead of hashing each lazy array: unique dask
    # names at no cost.
    chunked = [ds.chunk(token=_file_token(f)) for f, ds in parts]
    out = xr.concat(
        chunked,
        dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        join="override",
        combine_attrs="override",
    )
    if oro is not None:
        out["orography"] = oro
    return out


def _file_token(path: str) -> str:
    p = Path(path.removeprefix("file://"))
    try:
        st = p.stat()
    except OSError:
        return path
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _same_layout(ref_name: str, ref: xr.Dataset, name: str, ds: xr.Dataset) -> None:
    extra = sorted(set(map(str, ds.data_vars)) - set(map(str, ref.data_vars)))
    if extra:  # the readers keep only what was asked for: a defensive check
        raise TargetError(f"{name}: variables {extra} that {ref_name} does not have")
    if ("member" in ds.dims) != ("member" in ref.dims) or (
        "member" in ds.dims and ds.sizes["member"] != ref.sizes["member"]
    ):
        raise TargetError(
            f"{name}: {ds.sizes.get('member', 'no')} ensemble members, {ref_name} has "
            f"{ref.sizes.get('member', 'no')}; the files must be one source"
        )
    for axis in ("lat", "lon"):
        a = np.asarray(ref[axis].values, dtype=np.float64)
        b = np.asarray(ds[axis].values, dtype=np.float64)
        if a.shape != b.shape or not np.allclose(a, b, atol=_DEG_TOL, rtol=0.0):
            raise TargetError(
                f"{name}: its grid differs from {ref_name}'s along {axis} ({b.size} points "
                f"{b[0]:g}..{b[-1]:g}, expected {a.size} points {a[0]:g}..{a[-1]:g}); the "
                "files must be on one grid"
            )
    for var in map(str, ref.data_vars):
        if ds[var].dims != ref[var].dims:
            raise TargetError(
                f"{name}: {var} has dims {ds[var].dims}, {ref_name} has {ref[var].dims}"
            )


def open_target(
    cfg: TargetConfig,
    channels: Sequence[str],
    *,
    world_truth: Callable[[], Path],
    cache_dir: Path,
) -> xr.Dataset:
    """The target as a lazy Dataset with dims (time, lat, lon): ``channels`` as variables,
    ``orography`` where the source or ``static`` has it; lat ascending, lon ascending.

    ``world_truth`` returns the world's truth store (it raises when ``stratocast world`` has
    not run); it is called only for ``source: world``."""
    if cfg.is_world:
        from stratocast.world.truth import open_truth

        ds = open_truth(world_truth())
        missing = [c for c in channels if c not in ds]
        if missing:
            raise TargetError(
                f"the world's truth has no {missing} (it has {sorted(map(str, ds.data_vars))}); "
                "set shards.target.source to a reanalysis that has them"
            )
        what = "the world's truth"
    else:
        files = cfg.sources()
        if len(files) == 1:
            ds = _open_with_orography(cfg, files[0], channels, cache_dir)
        else:
            ds = _open_files(cfg, files, channels, cache_dir)
        what = cfg.describe()
    keep = [*channels, *(["orography"] if "orography" in ds else [])]
    ds = ds[keep]
    ds = _member(ds, cfg, what)
    if "orography" in ds:
        # ARCO-ERA5 repeats its statics every hour: the field is one, keep it 2-D
        oro = ds["orography"]
        ds["orography"] = oro.isel({d: 0 for d in oro.dims if d not in ("lat", "lon")}, drop=True)
    ds = _times(ds, cfg, what)
    ds = _static(ds, cfg, cache_dir)
    ds = _domain(ds, cfg, what)
    return ds


def _member(ds: xr.Dataset, cfg: TargetConfig, what: str) -> xr.Dataset:
    if "member" not in ds.dims:
        if cfg.member is not None:
            raise TargetError(f"{what}: shards.target.member={cfg.member} but it has no members")
        return ds
    n = ds.sizes["member"]
    if cfg.member is None:
        raise TargetError(
            f"{what} is an ensemble of {n} members: choose one with shards.target.member "
            f"(0..{n - 1})"
        )
    if cfg.member >= n:
        raise TargetError(f"{what}: member {cfg.member} asked, it has 0..{n - 1}")
    return ds.isel(member=cfg.member, drop=True)


def _fmt(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="m"))


def _times(ds: xr.Dataset, cfg: TargetConfig, what: str) -> xr.Dataset:
    """Cut to [start, end] on a regular ``step_hours`` axis; a gap is an error, not a skip."""
    if "time" not in ds.dims:
        raise TargetError(f"{what}: the fields have no time axis (dims {tuple(ds.dims)})")
    times = ds["time"].values.astype("datetime64[ns]")
    if times.size == 0:
        raise TargetError(f"{what}: the time axis is empty")
    if np.any(np.diff(times) <= np.timedelta64(0, "ns")):
        raise TargetError(f"{what}: the time axis is not strictly increasing")
    first, last = times[0], times[-1]
    lo = np.datetime64(cfg.start, "ns") if cfg.start else first
    hi = np.datetime64(cfg.end, "ns") if cfg.end else last
    if hi < lo:
        raise TargetError(f"shards.target: end {cfg.end} is before start {cfg.start}")
    if lo < first or hi > last:
        raise TargetError(
            f"{what}: the time range {_fmt(lo)}..{_fmt(hi)} asked for is outside the source's "
            f"{_fmt(first)}..{_fmt(last)}"
        )
    inside = times[(times >= lo) & (times <= hi)]
    if cfg.step_hours is not None:
        step = np.timedelta64(cfg.step_hours, "h")
    elif inside.size >= 2:
        step = np.min(np.diff(inside))
    else:
        raise TargetError(
            f"{what}: {inside.size} time step(s) in {_fmt(lo)}..{_fmt(hi)}; need at least two"
        )
    wanted = np.arange(lo, hi + np.timedelta64(1, "ns"), step).astype("datetime64[ns]")
    if wanted.size < 2:
        raise TargetError(f"{what}: {_fmt(lo)}..{_fmt(hi)} every {step} gives one time step")
    have = np.isin(wanted, times)
    if not have.all():
        gaps = wanted[~have]
        raise TargetError(
            f"{what}: the time axis has gaps: {gaps.size} of the {wanted.size} times "
            f"{_fmt(lo)}..{_fmt(hi)} every {step.astype('timedelta64[h]')} are missing "
            f"(first {_fmt(gaps[0])}); the source steps are "
            f"{sorted({str(d.astype('timedelta64[h]')) for d in np.diff(times)})[:4]}"
        )
    return ds.isel(time=_as_slice(np.searchsorted(times, wanted)))


def _static(ds: xr.Dataset, cfg: TargetConfig, cache_dir: Path) -> xr.Dataset:
    """Orography from ``static`` when the source has none: on exactly the source's grid."""
    if cfg.static is None:
        return ds
    static_cfg = cfg.model_copy(update={"data_type": None, "lead_hours": None})
    st = _open(static_cfg, cfg.static, ["orography"], cache_dir)["orography"]
    for dim in [d for d in st.dims if d not in ("lat", "lon")]:
        st = st.isel({dim: 0}, drop=True)  # a static field written once per time or member
    for axis in ("lat", "lon"):
        a = np.asarray(ds[axis].values, dtype=np.float64)
        b = np.asarray(st[axis].values, dtype=np.float64)
        if a.shape != b.shape or not np.allclose(a, b, atol=_DEG_TOL, rtol=0.0):
            raise TargetError(
                f"{cfg.static}: the static field's grid differs from {cfg.describe()}'s along "
                f"{axis} ({b.size} points {b[0]:g}..{b[-1]:g}, expected {a.size} points "
                f"{a[0]:g}..{a[-1]:g}); give a static file on the source's grid"
            )
    out = ds.copy()
    out["orography"] = st.drop_vars([c for c in st.coords if c not in ("lat", "lon")])
    return out


def region_columns(lon: np.ndarray, region: RegionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the source columns inside the region's longitudes, in west→east order, and
    their longitudes as one contiguous ascending run starting at or after ``lon_min``."""
    start = region.lon_min
    offset = np.mod(lon - start, 360.0)  # 0 at the region's western edge
    inside = offset <= region.lon_span() + _DEG_TOL
    idx = np.nonzero(inside)[0]
    idx = idx[np.argsort(offset[idx], kind="stable")]
    return idx, start + offset[idx]


def _as_slice(idx: np.ndarray) -> slice | np.ndarray:
    """Ascending indices at a constant stride as a slice: a lazy source then reads just that
    window (xarray and dask push slices down to the file; an index array makes every read
    take the whole field and copy the window out, and along time makes dask shuffle the
    whole axis's graph at open). Else the indices as they are (a region crossing the
    source's longitude seam)."""
    if idx.size == 1:
        return slice(int(idx[0]), int(idx[0]) + 1)
    if idx.size > 1:
        stride = int(idx[1] - idx[0])
        if stride > 0 and np.array_equal(idx, idx[0] + stride * np.arange(idx.size)):
            return slice(int(idx[0]), int(idx[-1]) + 1, stride)
    return idx


def _target_axis(lo: float, hi: float, res: float) -> np.ndarray:
    n = int(np.floor((hi - lo) / res + 1e-9)) + 1
    return lo + res * np.arange(n, dtype=np.float64)


def _domain(ds: xr.Dataset, cfg: TargetConfig, what: str) -> xr.Dataset:
    lat = np.asarray(ds["lat"].values, dtype=np.float64)
    lon = np.asarray(ds["lon"].values, dtype=np.float64)
    region = cfg.region
    if region is not None:
        in_lat = (lat >= region.lat_min - _DEG_TOL) & (lat <= region.lat_max + _DEG_TOL)
        cols, _ = region_columns(lon, region)
        if not in_lat.any() or cols.size == 0:
            dlat = abs(float(np.median(np.diff(lat)))) if lat.size > 1 else 0.0
            dlon = abs(float(np.median(np.diff(lon)))) if lon.size > 1 else 0.0
            raise TargetError(
                f"{what}: the region ({region.describe()}) holds no point of the source's grid "
                f"(lat {lat[0]:g}..{lat[-1]:g}, lon {lon[0]:g}..{lon[-1]:g}, spacing "
                f"{dlat:g}°×{dlon:g}°)"
            )
    if cfg.grid is None:
        if region is None:
            return ds
        rows = np.nonzero(in_lat)[0]
        cols, run = region_columns(lon, region)
        if rows.size < 2 or cols.size < 2:
            raise TargetError(
                f"{what}: the region ({region.describe()}) holds {rows.size}×{cols.size} grid "
                "points of the source; need at least 2×2 (or set shards.target.grid)"
            )
        return ds.isel(lat=_as_slice(rows), lon=_as_slice(cols)).assign_coords(lon=run)
    return _regridded(ds, cfg.grid, region, what)


def _regridded(
    ds: xr.Dataset, grid: GridConfig, region: RegionConfig | None, what: str
) -> xr.Dataset:
    from stratocast.gridded.regrid import regrid

    res = grid.resolution_deg
    if region is None:
        tlat = _target_axis(-90.0 + res / 2, 90.0 - res / 2, res)
        tlon = _target_axis(0.0, 360.0 - res, res)
        run = tlon
    else:
        tlat = _target_axis(region.lat_min, region.lat_max, res)
        run = _target_axis(region.lon_min, region.lon_min + region.lon_span(), res)
        tlon = np.mod(run, 360.0)
    if tlat.size < 2 or run.size < 2:
        raise TargetError(
            f"shards.target.grid: {res}° over the region gives {tlat.size}×{run.size} points; "
            "need at least 2×2"
        )
    order = np.argsort(tlon, kind="stable")
    out = regrid(ds, tlat, tlon[order], method=grid.method)
    # Back to the contiguous west→east run (a region crossing 0° comes out of regrid sorted
    # in [0, 360)).
    back = np.argsort(order, kind="stable")
    out = out.isel(lon=back).assign_coords(lon=run)
    out["lon"].attrs = dict(ds["lon"].attrs)
    src_lat = np.asarray(ds["lat"].values, dtype=np.float64)
    if tlat[0] < src_lat[0] - res or tlat[-1] > src_lat[-1] + res:
        raise TargetError(
            f"{what}: the target grid's latitudes {tlat[0]:g}..{tlat[-1]:g} reach beyond the "
            f"source's {src_lat[0]:g}..{src_lat[-1]:g}"
        )
    return out
