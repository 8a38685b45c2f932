"""CF discrete-sampling-geometry NetCDF station data: featureType ``timeSeries`` and ``point``.

Registry name ``cf_dsg``. Layouts (CF conventions, chapter 9 and appendix H):

* timeSeries, orthogonal multidimensional: data ``(station, time)`` with a 1-D ``time``
  (WeatherReal's ``station × time``; also without a featureType attribute when the file has
  a ``station`` dimension);
* timeSeries, incomplete multidimensional: data and ``time`` both ``(station, obs)``;
* timeSeries, contiguous ragged: a ``row_size`` variable (attribute ``sample_dimension``)
  counts each station's observations, stored one station after another along ``obs``;
* timeSeries, indexed ragged: a ``stationIndex`` variable (attribute ``instance_dimension``)
  gives each observation's station;
* timeSeries of one station: scalar station variables, data along ``time``;
* point: everything along one ``obs`` dimension (MADIS ``recNum`` files, also without a
  featureType attribute).

Variables are found by CF ``standard_name`` (:data:`STANDARD_NAMES`: ``air_temperature`` ->
t2m, ``wind_from_direction`` -> wd10, ``air_pressure_at_mean_sea_level`` -> msl, ...); a
variable without one is matched by its MADIS or WeatherReal name (``temperature``,
``seaLevelPress``; ``t``, ``msl``, ...), and the ``variables`` option maps any other
(``{tair: {variable: t2m, units: degC}}``, units optional). Values are converted to SI with
Pint from each variable's ``units`` attribute (UDUNITS spellings such as ``degrees_Celsius``
are translated). ``_FillValue``, ``missing_value`` and ``scale_factor``/``add_offset`` are
applied (xarray's CF decoding); time is decoded from its CF units to UTC.

The station id is the ``cf_role: timeseries_id`` variable (else ``station_variable``, else a
``station``/``station_id``/``stationName``/``stationId`` variable or the ``station`` dimension's
coordinate; a point file without any gets ids ``lat,lon``); positions are the latitude,
longitude and altitude variables (by standard_name, units or usual names), else the station
catalogue.

Accounting: one observation element (a station at a time) is one record, id
``file:station=i,time=j`` (multidimensional) or ``file:obs=k`` (ragged, point). Every element
becomes a Report or a Rejection (``bad_time``, ``unknown_station``, ``bad_position``,
``no_data``; ``non_finite`` for a value that converts or derives to inf or NaN;
``decode_error`` with the exception text for anything else that goes wrong decoding that
element, so one element never sinks the file), except the padding of the
multidimensional layouts (elements with no value and, incomplete layout, no time), which CF
defines as absent data, not records. A data
variable that cannot be decoded is one Rejection ``file:<variable>`` saying why its values are
not stored, and the other variables still land: units Pint does not know or of the wrong
dimension (``unknown_units``); a ``cell_methods`` over time other than ``time: point`` (a
maximum, a mean: ``skipped_variable``, unless the ``variables`` option maps it); a second
variable for the same target (``duplicate_variable``); dimensions not of the layout; data
that the NetCDF/HDF5 library cannot read (``decode_error``). A file that cannot be opened as
NetCDF, has no time variable, whose layout cannot be told, or whose time, station id,
position or ragged-count variable cannot be read (no element could be placed) raises
:class:`SourceFileError`.

Derived variables come from :func:`stratocast.obs.harmonise.derive`; reported ones are kept.
``valid_min``/``valid_max``/``valid_range`` are not applied: out-of-range values reach QC,
which quarantines them with a reason instead of losing them as missing.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stratocast.obs.base import Record, Rejection, Report, SourceFileError
from stratocast.obs.lexicon import LexiconEntry
from stratocast.obs.sources.station_table import (
    TableOptionError,
    east,
    finish_values,
    load_stations,
    lookup,
    non_finite,
    position_problem,
)
from stratocast.obs.stations import StationCatalogue
from stratocast.vocab.units import Affine, UnitConversionError, converter
from stratocast.vocab.variables import VARIABLES

# CF standard name -> canonical surface variable (a station reports at screen / 10 m height)
STANDARD_NAMES: dict[str, str] = {
    "air_temperature": "t2m",
    "dew_point_temperature": "d2m",
    "relative_humidity": "rh2m",
    "specific_humidity": "q2m",
    "wind_speed": "ws10",
    "wind_from_direction": "wd10",
    "eastward_wind": "u10",
    "northward_wind": "v10",
    "air_pressure_at_mean_sea_level": "msl",
    "air_pressure_at_sea_level": "msl",  # the name before CF standard-name table v23
    "surface_air_pressure": "sp",
    "altimeter_setting": "qnh",  # not a CF name; the canonical vocabulary's, for round trips
}
# variables without a standard_name: MADIS names, and WeatherReal's with its fixed units
# (WeatherReal files may carry no units attribute; MADIS files always do)
MADIS_NAMES: dict[str, str] = {
    "temperature": "t2m",
    "dewpoint": "d2m",
    "relHumidity": "rh2m",
    "windSpeed": "ws10",
    "windDir": "wd10",
    "seaLevelPress": "msl",
    "stationPressure": "sp",
    "altimeter": "qnh",
}
WEATHERREAL_NAMES: dict[str, tuple[str, str]] = {
    "t": ("t2m", "degC"),
    "td": ("d2m", "degC"),
    "sp": ("sp", "hPa"),
    "msl": ("msl", "hPa"),
    "ws": ("ws10", "m s-1"),
    "wd": ("wd10", "degree"),
}
# UDUNITS spellings Pint does not know
UNIT_ALIASES: dict[str, str] = {
    "degrees_Celsius": "degC",
    "degree_C": "degC",
    "degrees_C": "degC",
    "deg_C": "degC",
    "Celsius": "degC",
    "degrees_Fahrenheit": "degF",
    "degree_F": "degF",
    "degree_true": "degree",
    "degrees_true": "degree",
    "degrees_north": "degree",
    "degree_north": "degree",
    "degree_N": "degree",
    "degrees_N": "degree",
    "degrees_east": "degree",
    "degree_east": "degree",
    "degree_E": "degree",
    "degrees_E": "degree",
    "mb": "mbar",
    "meters": "m",
}
_LAT = ({"latitude"}, ("lat", "latitude", "Latitude", "LAT", "stationLatitude"))
_LON = ({"longitude"}, ("lon", "longitude", "Longitude", "LON", "stationLongitude"))
_ALT = (
    {"altitude", "surface_altitude", "height_above_mean_sea_level", "station_elevation"},
    # not "height": in CF station files that is the sensor's height above ground (2 m, 10 m)
    ("alt", "altitude", "elevation", "elev", "stationElevation"),
)
_ID_NAMES = ("station_id", "stationId", "station", "stationName", "station_name", "platform_id")
_TIME_NAMES = ("time", "valid_time", "timeObs", "obs_time", "observationTime")
# the method over time in a cell_methods attribute ("time: point", "area: mean time: maximum")
_TIME_METHOD = re.compile(r"\btime\s*:\s*(\w+)")

LEXICON: dict[str, LexiconEntry] = {
    std: LexiconEntry(std, VARIABLES[var].units, var) for std, var in STANDARD_NAMES.items()
}


def cf_unit(unit: str) -> str:
    """A UDUNITS unit string in the spelling Pint understands."""
    unit = unit.strip()
    return UNIT_ALIASES.get(unit, unit)


def _load(path: Path, da: Any, what: str) -> NDArray[Any]:
    """The values of a variable the layout needs (time, ids, positions, ragged counts).

    Without them no element can be placed, so a read that fails (an HDF5 chunk or heap the
    library cannot decode) is the whole file's :class:`SourceFileError`.
    """
    try:
        return np.asarray(da.values)
    except Exception as err:  # whatever netCDF4/HDF5 raise for damaged bytes
        raise SourceFileError(
            f"{path}: cannot read {what} {da.name!r}: {type(err).__name__}: {err}"
        ) from None


_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")


def _decode_times(path: Path, da: Any) -> NDArray[np.datetime64]:
    """A CF time variable as datetime64 (NaT where missing or outside the datetime range).

    Units that are not ``<unit> since <date>`` or a calendar other than the standard one are
    the file's :class:`SourceFileError`; one undecodable value is only that element's
    ``bad_time`` (its Rejection), found by bisecting the array.
    """
    units = da.attrs.get("units")
    calendar = str(da.attrs.get("calendar", "standard")).strip().lower()
    if not isinstance(units, str) or " since " not in f" {units.strip()} ":
        raise SourceFileError(
            f"{path}: time variable {da.name!r} has units {units!r}, not '<unit> since <date>'"
        )
    if calendar not in _CALENDARS:
        raise SourceFileError(
            f"{path}: time variable {da.name!r}: calendar {calendar!r} (station data uses the "
            f"standard calendar: one of {_CALENDARS})"
        )
    raw = _load(path, da, "time variable")
    if raw.dtype.kind == "M":
        return raw
    if raw.dtype.kind not in "fiu":
        raise SourceFileError(f"{path}: time variable {da.name!r} is not numeric ({raw.dtype})")
    attrs = {"units": units, "calendar": calendar}
    if _cf_times(np.zeros(1), attrs) is None:
        raise SourceFileError(f"{path}: time variable {da.name!r}: units {units!r} do not decode")
    flat = raw.reshape(-1)
    return _bisect_times(flat, attrs).reshape(raw.shape)


def _cf_times(values: NDArray[Any], attrs: dict[str, str]) -> NDArray[np.datetime64] | None:
    """xarray's CF decoding of ``values``; None when it fails or leaves the datetime range."""
    import xarray as xr

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "dates out of range": cftime objects, refused
            decoded = xr.decode_cf(xr.Dataset({"t": ("n", values, attrs)}))["t"].values
    except Exception:  # OverflowError, OutOfBoundsDatetime, ValueError: not a datetime64 time
        return None
    return decoded.astype("datetime64[ns]") if decoded.dtype.kind == "M" else None


def _bisect_times(values: NDArray[Any], attrs: dict[str, str]) -> NDArray[np.datetime64]:
    whole = _cf_times(values, attrs)
    if whole is not None:
        return whole
    if len(values) <= 1:
        return np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    mid = len(values) // 2
    return np.concatenate([_bisect_times(values[:mid], attrs), _bisect_times(values[mid:], attrs)])


def _strings(arr: NDArray[Any]) -> NDArray[np.str_]:
    """Station ids as text: bytes decoded, char arrays joined, numbers written as integers."""
    if arr.dtype.kind == "S" and arr.dtype.itemsize == 1 and arr.ndim >= 1 and arr.shape[-1] > 1:
        arr = arr.view(f"S{arr.shape[-1]}")[..., 0]
    if arr.dtype.kind == "S":
        out = np.char.decode(arr, "utf-8", "replace")
    elif arr.dtype.kind == "f":
        out = np.array(["" if not math.isfinite(v) else f"{v:.0f}" for v in arr.ravel()])
        out = out.reshape(arr.shape)
    else:
        out = arr.astype(str)
    return np.char.strip(np.char.strip(out.astype(str), "\x00"))


@dataclass
class _Layout:
    """How observation elements are laid out, and how to flatten any variable onto them."""

    kind: str  # orthogonal | incomplete | ragged | point | single
    n: int  # elements
    inst_dim: str | None
    obs_dim: str  # the time dimension (orthogonal) or the observation dimension
    inst: NDArray[np.intp] | None  # instance of each element (ragged), else None
    shape: tuple[int, ...]  # element array shape before flattening

    def flat(self, dims: tuple[str, ...], arr: NDArray[Any]) -> NDArray[Any] | None:
        """``arr`` (with dimensions ``dims``) as one value per element; None if not aligned."""
        if self.kind in ("ragged", "point", "single"):
            if dims == (self.obs_dim,):
                return arr
            if dims == ():
                return np.broadcast_to(arr, (self.n,))
            if self.inst is not None and dims == (self.inst_dim,):
                return arr[self.inst]
            return None
        if self.kind == "incomplete" and dims == (self.obs_dim,):
            return None  # an obs-only variable is not meaningful here
        order = (self.inst_dim, self.obs_dim)
        if set(dims) - set(order) or len(dims) != len(set(dims)):
            return None
        keep = [d for d in order if d in dims]
        arr = np.moveaxis(arr, [dims.index(d) for d in keep], range(len(keep)))
        if dims == (self.obs_dim,):
            arr = arr[None, :]
        elif dims == (self.inst_dim,):
            arr = arr[:, None]
        return np.broadcast_to(arr, self.shape).reshape(-1)

    def where(self, k: int) -> str:
        if self.kind in ("orthogonal", "incomplete"):
            i, j = divmod(k, self.shape[1])
            return f"{self.inst_dim}={i},{self.obs_dim}={j}"
        return f"{self.obs_dim}={k}"


@dataclass
class _Columns:
    """Per-element columns of one file, as Python lists (the element loop's inputs)."""

    name: str  # file name, for report ids
    layout: _Layout
    times: list[Any]  # datetime (naive UTC) or None
    ids: list[str] | None
    lat: list[float] | None
    lon: list[float] | None
    alt: list[float] | None
    kept: list[_Var]
    natives: list[list[float]]  # per kept variable, in the file's unit (NaN: missing)
    si: list[list[float]]  # the same in SI


@dataclass
class _Var:
    name: str
    variable: str
    convert: Affine
    native: NDArray[np.float64]  # per element, NaN where missing


# Damaged HDF5 metadata can make netCDF-C loop forever while opening a file (seen in the fuzz
# runs: one flipped byte; h5py opens the same file). A loop in C cannot be interrupted from
# Python, so the open is first tried in a child process with a time limit: it costs one
# interpreter start per file (~0.1-0.3 s), small beside reading a station archive. 0: off.
OPEN_TIMEOUT_S = 15.0
_PROBE = "import sys, netCDF4; netCDF4.Dataset(sys.argv[1]).close()"


def _opens_in_time(path: Path, timeout_s: float) -> None:
    """Raise SourceFileError when opening ``path`` does not finish within ``timeout_s``; any
    other failure is left to the real open, which names it."""
    import subprocess
    import sys

    try:
        subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SourceFileError(
            f"{path}: opening it did not finish in {timeout_s:g} s (damaged HDF5 metadata makes "
            "netCDF-C loop); the file is skipped"
        ) from None


class CfDsgSource:
    """Source ``cf_dsg``: CF discrete-sampling-geometry station NetCDF (timeSeries, point)."""

    name = "cf_dsg"
    lexicon = LEXICON

    def __init__(
        self,
        variables: Mapping[str, Mapping[str, Any]] | None = None,
        station_variable: str | None = None,
        stations: str | None = None,
        open_timeout_s: float = OPEN_TIMEOUT_S,
    ) -> None:
        """``variables``: NetCDF variable -> ``{variable: <canonical>, units: <unit>}`` for
        variables the automatic matching misses (units default to the ``units`` attribute);
        ``station_variable``: the variable holding station ids; ``stations``: a station file
        (isd-history or stations.csv) placing stations the file and catalogue do not."""
        self.explicit: dict[str, tuple[str, str | None]] = {}
        for name, spec in (variables or {}).items():
            where = f"options.variables.{name}"
            if not isinstance(spec, Mapping) or set(spec) - {"variable", "units"}:
                raise TableOptionError(f"{where}: expected {{variable: ..., units: ...}}")
            var, unit = spec.get("variable"), spec.get("units")
            if not isinstance(var, str) or var not in VARIABLES:
                raise TableOptionError(f"{where}.variable: {var!r} is not a canonical variable")
            if unit is not None:
                try:
                    converter(cf_unit(str(unit)), VARIABLES[var].units)
                except UnitConversionError as err:
                    raise TableOptionError(f"{where}.units: {err}") from None
            self.explicit[str(name)] = (var, None if unit is None else str(unit))
        self.station_variable = station_variable
        self.stations = stations
        if not 0 <= open_timeout_s <= 3600:
            raise TableOptionError(f"options.open_timeout_s: {open_timeout_s} is not in 0..3600")
        self.open_timeout_s = float(open_timeout_s)

    def read(self, path: Path, catalogue: StationCatalogue | None = None) -> Iterator[Record]:
        import xarray as xr

        path = Path(path)
        if not path.is_file():
            raise SourceFileError(f"cannot read {path}: file not found")
        if self.open_timeout_s:
            _opens_in_time(path, self.open_timeout_s)
        try:
            with warnings.catch_warnings():
                # MADIS declares both _FillValue and missing_value: both are missing, as meant
                warnings.filterwarnings("ignore", ".*multiple fill values", xr.SerializationWarning)
                # times are decoded here, per value: xarray's decoding at open fails the whole
                # file for one value outside the datetime range (a flipped bit in the time axis)
                ds = xr.open_dataset(
                    path, mask_and_scale=True, decode_times=False, decode_timedelta=False
                )
        except Exception as err:  # not NetCDF, or its HDF5 structure is damaged: whole file
            raise SourceFileError(
                f"{path}: cannot open as CF NetCDF: {type(err).__name__}: {err}"
            ) from None
        with ds:
            yield from self._read(path, ds, catalogue)

    def _read(self, path: Path, ds: Any, catalogue: StationCatalogue | None) -> Iterator[Record]:
        name = path.name
        feature = str(ds.attrs.get("featureType", "")).strip().lower()
        if feature not in ("", "timeseries", "point"):
            raise SourceFileError(
                f"{path}: featureType {ds.attrs['featureType']!r}; cf_dsg reads timeSeries and "
                "point station data"
            )
        time_name = self._time_variable(path, ds)
        time_da = ds[time_name]
        id_name = self._id_variable(ds, feature)
        layout = self._layout(path, ds, feature, time_name, id_name)
        used = {time_name, *([id_name] if id_name else [])}

        times = layout.flat(time_da.dims, _decode_times(path, time_da))
        if times is None:
            raise SourceFileError(f"{path}: time {time_name!r} has dimensions {time_da.dims}")
        coords = {}
        for key, spec in (("lat", _LAT), ("lon", _LON), ("alt", _ALT)):
            coords[key] = self._coordinate(path, ds, layout, spec, key, used)
        if id_name is not None:
            id_da = ds[id_name]
            dims = id_da.dims[:-1] if id_da.dtype.kind == "S" and id_da.ndim == 2 else id_da.dims
            ids = layout.flat(tuple(dims), _strings(_load(path, id_da, "station id variable")))
            if ids is None:
                raise SourceFileError(f"{path}: station id {id_name!r} has dimensions {id_da.dims}")
        else:
            ids = None
        for aux in ds.variables:  # layout bookkeeping, not data
            a = ds[aux].attrs
            if "sample_dimension" in a or "instance_dimension" in a:
                used.add(str(aux))

        kept, problems = self._data_variables(ds, layout, used)
        for var_name, check, reason in problems:
            where = f"{name}:{var_name}"
            attrs = ds[var_name].attrs
            raw = " ".join(
                f"{k}={attrs[k]}" for k in ("standard_name", "units", "cell_methods") if k in attrs
            )
            yield Rejection(where, check, f"{where}: {reason}", f"{var_name}: {raw}".strip())
        yield from self._elements(name, layout, times, ids, coords, kept, catalogue)

    # -- discovery --------------------------------------------------------------------------

    @staticmethod
    def _time_variable(path: Path, ds: Any) -> str:
        for v in ds.variables:
            a = ds[v].attrs
            if a.get("standard_name") == "time" or a.get("axis") == "T":
                return str(v)
        for v in _TIME_NAMES:
            if v in ds.variables:
                return v
        raise SourceFileError(
            f"{path}: no time variable (standard_name 'time', axis 'T', or one of {_TIME_NAMES})"
        )

    def _id_variable(self, ds: Any, feature: str) -> str | None:
        if self.station_variable is not None:
            if self.station_variable not in ds.variables:
                raise TableOptionError(
                    f"options.station_variable: {self.station_variable!r} is not in the file"
                )
            return self.station_variable
        for v in ds.variables:
            if ds[v].attrs.get("cf_role") == "timeseries_id":
                return str(v)
        for v in _ID_NAMES:
            if v in ds.variables:
                return v
        return None

    @staticmethod
    def _layout(path: Path, ds: Any, feature: str, time_name: str, id_name: str | None) -> _Layout:
        time_dims = ds[time_name].dims
        for v in ds.variables:
            a = ds[v].attrs
            if "sample_dimension" in a:  # contiguous ragged: row sizes per instance
                obs_dim, inst_dim = str(a["sample_dimension"]), ds[v].dims[0]
                sizes = _load(path, ds[v], "row_size variable")
                if not np.all(np.isfinite(sizes)) or (sizes < 0).any():
                    raise SourceFileError(f"{path}: {v} (row_size) has missing or negative counts")
                counts = sizes.astype(np.intp)
                n = ds.sizes[obs_dim]
                if counts.sum() != n:
                    raise SourceFileError(
                        f"{path}: {v} row sizes sum to {counts.sum()}, dimension {obs_dim!r} "
                        f"has {n}"
                    )
                inst = np.repeat(np.arange(len(counts), dtype=np.intp), counts)
                return _Layout("ragged", n, inst_dim, obs_dim, inst, (n,))
            if "instance_dimension" in a:  # indexed ragged: instance index per observation
                inst_dim, obs_dim = str(a["instance_dimension"]), ds[v].dims[0]
                idx = np.asarray(_load(path, ds[v], "stationIndex variable"), dtype=np.float64)
                n_inst = ds.sizes[inst_dim]
                bad = ~np.isfinite(idx) | (idx < 0) | (idx >= n_inst)
                if bad.any():
                    k = int(np.flatnonzero(bad)[0])
                    raise SourceFileError(
                        f"{path}: {v}[{k}] = {idx[k]} is not an index into {inst_dim!r} "
                        f"(0..{n_inst - 1}); {int(bad.sum())} such"
                    )
                n = len(idx)
                return _Layout("ragged", n, inst_dim, obs_dim, idx.astype(np.intp), (n,))
        if len(time_dims) == 2:
            inst_dim, obs_dim = time_dims
            shape = (ds.sizes[inst_dim], ds.sizes[obs_dim])
            return _Layout("incomplete", shape[0] * shape[1], inst_dim, obs_dim, None, shape)
        if len(time_dims) != 1:
            raise SourceFileError(f"{path}: time {time_name!r} has dimensions {time_dims}")
        (tdim,) = time_dims
        inst_dim = None
        if id_name is not None:
            id_da = ds[id_name]
            dims = id_da.dims[:-1] if id_da.dtype.kind == "S" and id_da.ndim == 2 else id_da.dims
            inst_dim = dims[0] if len(dims) == 1 and dims[0] != tdim else None
        elif "station" in ds.dims and tdim != "station":
            inst_dim = "station"
        if inst_dim is not None:
            shape = (ds.sizes[inst_dim], ds.sizes[tdim])
            return _Layout("orthogonal", shape[0] * shape[1], inst_dim, tdim, None, shape)
        n = ds.sizes[tdim]
        kind = "point" if feature == "point" or id_name is None else "single"
        if feature == "timeseries" and id_name is None:
            raise SourceFileError(f"{path}: timeSeries without a cf_role timeseries_id variable")
        return _Layout(kind, n, None, tdim, None, (n,))

    @staticmethod
    def _coordinate(
        path: Path,
        ds: Any,
        layout: _Layout,
        spec: tuple[set[str], tuple[str, ...]],
        key: str,
        used: set[str],
    ) -> NDArray[np.float64] | None:
        """Per element latitude/longitude (degrees) or altitude (m); None when absent."""
        std, names = spec
        found = next((v for v in ds.variables if ds[v].attrs.get("standard_name") in std), None)
        if found is None:
            found = next((v for v in names if v in ds.variables), None)
        if found is None:
            return None
        da = ds[found]
        used.add(str(found))
        if da.dtype.kind not in "fiu":  # e.g. decoded as times: its units say "since"
            raise SourceFileError(
                f"{path}: {key} variable {found!r} is not numeric (dtype {da.dtype}, units "
                f"{da.attrs.get('units', da.encoding.get('units'))!r})"
            )
        unit = cf_unit(str(da.attrs.get("units", "degree" if key != "alt" else "m")))
        try:
            conv = converter(unit, "m" if key == "alt" else "degree")
        except UnitConversionError as err:
            raise SourceFileError(f"{path}: {key} variable {found!r}: {err}") from None
        arr = layout.flat(da.dims, np.asarray(_load(path, da, f"{key} variable"), np.float64))
        if arr is None:
            raise SourceFileError(f"{path}: {key} variable {found!r} has dimensions {da.dims}")
        return np.asarray(conv(arr), dtype=np.float64)

    def _target(self, name: str, attrs: Mapping[str, Any]) -> tuple[str, str | None] | None:
        """(canonical variable, unit or None for the attribute) a variable maps to, if any."""
        if name in self.explicit:
            return self.explicit[name]
        std = attrs.get("standard_name")
        if isinstance(std, str):
            var = STANDARD_NAMES.get(std.strip())
            return None if var is None else (var, None)
        if name in MADIS_NAMES:
            return MADIS_NAMES[name], None
        if name in WEATHERREAL_NAMES:
            var, unit = WEATHERREAL_NAMES[name]
            return var, str(attrs.get("units", unit))
        return None

    def _data_variables(
        self, ds: Any, layout: _Layout, used: set[str]
    ) -> tuple[list[_Var], list[tuple[str, str, str]]]:
        kept: list[_Var] = []
        problems: list[tuple[str, str, str]] = []
        by_target: dict[str, str] = {}
        # variables the 'variables' option names first: they win their target over a match
        names = sorted(map(str, ds.variables), key=lambda v: v not in self.explicit)
        for name in names:
            if name in used:
                continue
            try:
                got = self._data_variable(name, ds[name], layout, by_target)
            except Exception as err:  # one variable's surprise must not sink the file
                got = ("decode_error", f"decoding failed: {type(err).__name__}: {err}")
            if isinstance(got, _Var):
                by_target[got.variable] = name
                kept.append(got)
            elif got is not None:
                problems.append((name, *got))
        return kept, problems

    def _data_variable(
        self, name: str, da: Any, layout: _Layout, by_target: Mapping[str, str]
    ) -> _Var | tuple[str, str] | None:
        """Variable ``name`` read, or (check, reason) why it is not; None: not a data
        variable of ours."""
        target = self._target(name, da.attrs)
        if target is None:
            return None
        var, unit = target
        methods = str(da.attrs.get("cell_methods", ""))
        over_time = _TIME_METHOD.search(methods)
        # a maximum, mean or sum over time is not the instant value; a variable mapped by
        # the 'variables' option is the user's call
        if over_time and over_time.group(1) != "point" and name not in self.explicit:
            reason = (
                f"cell_methods {methods.strip()!r}: not an instantaneous {var} (map it with "
                "the 'variables' option to read it anyway)"
            )
            return "skipped_variable", reason
        if var in by_target:
            return (
                "duplicate_variable",
                f"{var} is already read from {by_target[var]!r}; choose with the "
                "'variables' option",
            )
        if da.dtype.kind not in "fiu":
            return "skipped_variable", f"not numeric (dtype {da.dtype})"
        declared = unit if unit is not None else da.attrs.get("units")
        if declared is None:
            return "unknown_units", f"no units attribute for {var}"
        try:
            conv = converter(cf_unit(str(declared)), VARIABLES[var].units)
        except UnitConversionError as err:
            return "unknown_units", f"units {declared!r} for {var}: {err}"
        try:
            values = np.asarray(da.values, dtype=np.float64)
        except Exception as err:  # a damaged chunk: this variable is lost, not the file
            return "decode_error", f"its data cannot be read: {type(err).__name__}: {err}"
        arr = layout.flat(da.dims, values)
        if arr is None:
            return "skipped_variable", f"dimensions {da.dims} are not the layout's"
        native = np.where(np.isfinite(arr), arr, np.nan)
        return _Var(name, var, conv, native)

    # -- elements ---------------------------------------------------------------------------

    def _elements(
        self,
        name: str,
        layout: _Layout,
        times: NDArray[Any],
        ids: NDArray[np.str_] | None,
        coords: dict[str, NDArray[np.float64] | None],
        kept: list[_Var],
        catalogue: StationCatalogue | None,
    ) -> Iterator[Record]:
        own = load_stations(self.stations) if self.stations is not None else None
        n = layout.n
        has_time = ~np.isnat(times)
        if kept:
            stack = np.stack([k.native for k in kept])
            has_value = np.isfinite(stack).any(axis=0)
            with np.errstate(over="ignore", invalid="ignore"):  # inf: a non_finite Rejection
                si = [np.asarray(k.convert(k.native), dtype=np.float64).tolist() for k in kept]
            natives = [k.native.tolist() for k in kept]
        else:
            has_value = np.zeros(n, dtype=bool)
            si, natives = [], []
        if layout.kind == "orthogonal":
            present = has_value
        elif layout.kind == "incomplete":
            present = has_value | has_time
        else:
            present = np.ones(n, dtype=bool)
        pytimes = times.astype("datetime64[us]").tolist()
        lat, lon, alt = (coords[k] for k in ("lat", "lon", "alt"))
        latl = lat.tolist() if lat is not None else None
        lonl = lon.tolist() if lon is not None else None
        altl = alt.tolist() if alt is not None else None
        idl = ids.tolist() if ids is not None else None
        cols = _Columns(name, layout, pytimes, idl, latl, lonl, altl, kept, natives, si)
        for k in np.flatnonzero(present).tolist():
            try:
                yield self._element(cols, k, catalogue, own)
            except Exception as err:  # one element's surprise must not sink the file (issue 12)
                where = f"{name}:{layout.where(k)}"
                station = str(idl[k]) if idl is not None else None
                why = f"{where}: decoding failed: {type(err).__name__}: {err}"
                yield Rejection(where, "decode_error", why, _raw(cols, k), station or None)

    @staticmethod
    def _element(
        c: _Columns, k: int, catalogue: StationCatalogue | None, own: StationCatalogue | None
    ) -> Record:
        """Element ``k`` as its Report or Rejection."""
        where = f"{c.name}:{c.layout.where(k)}"
        t = c.times[k]
        t = None if t is None else t.replace(tzinfo=UTC)
        la = c.lat[k] if c.lat is not None else math.nan
        lo = c.lon[k] if c.lon is not None else math.nan
        el = c.alt[k] if c.alt is not None else math.nan
        if c.ids is not None:
            station = str(c.ids[k])
        elif la == la and lo == lo:
            station = f"{la:.4f},{lo:.4f}"
        else:
            station = ""
        raw = _raw(c, k)
        if t is None:
            return Rejection(where, "bad_time", f"{where}: time is missing", raw, station or None)
        if not station:
            return Rejection(where, "unknown_station", f"{where}: no station id", raw, None, t)
        if not (la == la and lo == lo):
            found = lookup(station, catalogue, own)
            if found is None:
                reason = f"{where}: station {station!r} has no position in the file or catalogue"
                return Rejection(where, "unknown_station", reason, raw, station, t)
            la, lo = found.lat, found.lon
            if el != el:
                el = found.elevation
        problem = position_problem(la, lo, el)
        if problem is not None:
            return Rejection(where, "bad_position", f"{where}: {problem}", raw, station, t)
        si = c.si
        values = {kv.variable: si[j][k] for j, kv in enumerate(c.kept) if si[j][k] == si[j][k]}
        if not values:
            reason = f"{where}: every data variable is missing (_FillValue/missing_value)"
            return Rejection(where, "no_data", reason, raw, station, t)
        values, flags = finish_values(values, float(el))
        if (bad := non_finite(values)) is not None:
            return Rejection(where, "non_finite", f"{where}: {bad}", raw, station, t)
        return Report(where, station, float(la), east(float(lo)), float(el), t, values, raw, flags)


def _raw(c: _Columns, k: int) -> str:
    """Element ``k`` as ``station=... time=... var=value ...`` in the file's units."""
    t = c.times[k]
    station = str(c.ids[k]) if c.ids is not None else ""
    if c.ids is None and c.lat is not None and c.lon is not None:
        la, lo = c.lat[k], c.lon[k]
        station = f"{la:.4f},{lo:.4f}" if la == la and lo == lo else ""
    parts = [f"{kv.name}={c.natives[j][k]:g}" for j, kv in enumerate(c.kept)]
    when = t.replace(tzinfo=UTC).isoformat() if t is not None else "NaT"
    return " ".join([f"station={station}", f"time={when}", *parts])
