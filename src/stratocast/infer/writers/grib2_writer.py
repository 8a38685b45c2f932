"""Forecast export to GRIB2 through ecCodes: one message per (variable, init, member, lead).

Product definition templates (code table 4.0): 4.0 an instantaneous deterministic field,
4.1 an instantaneous ensemble member, 4.8 / 4.11 a field statistically processed since the
initialisation (an accumulation: :attr:`GribParameter.statistic`), deterministic / member.

"ML-based forecast": WMO code table 4.3 (type of generating process) has no such entry (ecCodes
2.50, GRIB2 tables 37: codes 0-23, none for ML); the WMO marks ML products in code table 1.4
(type of data), code 10 "ML based forecast" (WMO GRIB2 issue 249, in the tables from version
34 on, `grib2/tables/34/1.4.table`). So ``typeOfProcessedData = 10`` with ``tablesVersion =
34``, and ``typeOfGeneratingProcess`` = 2 "Forecast" (4 "Ensemble forecast" for members).

Steps are in hours (code table 4.4 value 1), the unit of the contract's ``lead_time``.
Members keep their numbers (``perturbationNumber``, ``numberOfForecastsInEnsemble``). Values
are simple-packed (16 bits by default); a NaN is a missing point in the bitmap (section 6),
never a sentinel value a reader could take for data.

Speed: every static key is set once per (variable, member) on one handle, which then encodes
each of its fields in turn: a message costs the date, the step and the values (packed inside
ecCodes), no clone. The static
orography is not written (a GRIB product carries forecast fields; Zarr and NetCDF carry it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import eccodes
import numpy as np
import xarray as xr

from stratocast.infer.writers.base import (
    WriterError,
    atomic_target,
    field_array,
    forecast_fields,
    members,
)
from stratocast.vocab.variables import VARIABLES, parse_level_variable

#: code table 1.4 "ML based forecast" (GRIB2 tables version 34 and later)
ML_BASED_FORECAST = 10
TABLES_VERSION = 34
#: code table 4.3: 2 Forecast, 4 Ensemble forecast
FORECAST, ENSEMBLE_FORECAST = 2, 4
#: code table 4.4: hour
HOUR = 1
#: code table 4.10: accumulation
ACCUMULATION = 1
#: code table 4.5 surfaces used here
SURFACE, ISOBARIC, MEAN_SEA, ABOVE_GROUND = 1, 100, 101, 103


@dataclass(frozen=True)
class GribParameter:
    """Where one canonical variable goes in GRIB2 (WMO discipline 0 tables 4.1/4.2/4.5)."""

    discipline: int
    category: int
    number: int
    surface: int  # typeOfFirstFixedSurface (code table 4.5)
    level: int = 0  # scaledValueOfFirstFixedSurface, in the surface's unit (m, Pa)
    #: code table 4.10 statistic over (init, valid] (1 accumulation), None: instantaneous
    statistic: int | None = None
    #: GRIB value = canonical value × factor (relative humidity: canonical 1, GRIB %)
    factor: float = 1.0


def _single_level() -> dict[str, GribParameter]:
    return {
        "t2m": GribParameter(0, 0, 0, ABOVE_GROUND, 2),
        "d2m": GribParameter(0, 0, 6, ABOVE_GROUND, 2),
        "q2m": GribParameter(0, 1, 0, ABOVE_GROUND, 2),
        "rh2m": GribParameter(0, 1, 1, ABOVE_GROUND, 2, factor=100.0),
        "u10": GribParameter(0, 2, 2, ABOVE_GROUND, 10),
        "v10": GribParameter(0, 2, 3, ABOVE_GROUND, 10),
        "ws10": GribParameter(0, 2, 1, ABOVE_GROUND, 10),
        "wd10": GribParameter(0, 2, 0, ABOVE_GROUND, 10),
        # 0/3/0 on mean sea level is ecCodes' "msl" (ECMWF's convention, which the gridded
        # reader's lexicon knows); 0/3/1 would be NCEP's "prmsl"
        "msl": GribParameter(0, 3, 0, MEAN_SEA),
        "sp": GribParameter(0, 3, 0, SURFACE),
        "qnh": GribParameter(0, 3, 11, SURFACE),  # altimeter setting
        "crr": GribParameter(0, 1, 37, SURFACE),  # convective precipitation rate
    }


#: pressure-level quantity -> (category, number, factor)
_LEVEL_PARAMS: dict[str, tuple[int, int, float]] = {
    "t": (0, 0, 1.0),
    "z": (3, 4, 1.0),
    "u": (2, 2, 1.0),
    "v": (2, 3, 1.0),
    "q": (1, 0, 1.0),
    "r": (1, 1, 100.0),
    "w": (2, 8, 1.0),
}

PARAMETERS: dict[str, GribParameter] = _single_level()


def parameter(name: str, extra: Mapping[str, GribParameter]) -> GribParameter | None:
    """The GRIB parameter of canonical ``name`` (``extra`` first), None if it has none."""
    if name in extra:
        return extra[name]
    if name in PARAMETERS:
        return PARAMETERS[name]
    parsed = parse_level_variable(name)
    if parsed is not None and name in VARIABLES:
        cat, num, factor = _LEVEL_PARAMS[parsed[0]]
        return GribParameter(0, cat, num, ISOBARIC, parsed[1] * 100, factor=factor)
    return None


def _regular(path: Path, axis: str, values: np.ndarray) -> float:
    """The spacing of a regular axis (GRIB regular_ll cannot say anything else)."""
    if values.size < 2:
        raise WriterError(path, f"GRIB regular_ll needs at least 2 {axis} points")
    steps = np.diff(values)
    if not np.allclose(steps, steps[0], rtol=0, atol=1e-6 * max(1.0, abs(float(steps[0])))):
        raise WriterError(path, f"{axis} is not evenly spaced: GRIB regular_ll cannot hold it")
    return float(steps[0])


class Grib2Writer:
    name = "grib2"
    suffix = ".grib2"

    def __init__(
        self,
        bits_per_value: int = 16,
        centre: int = 255,
        generating_process: int = 255,
        parameters: Mapping[str, GribParameter] | None = None,
    ) -> None:
        self.packing_bits: int | None = bits_per_value
        self.centre = centre
        self.generating_process = generating_process
        self.parameters = dict(parameters or {})

    # ------------------------------------------------------------------ templates

    def _grid_template(self, ds: xr.Dataset, path: Path) -> int:
        lat = np.asarray(ds["lat"].values, dtype=np.float64)
        lon = np.asarray(ds["lon"].values, dtype=np.float64)
        dlat, dlon = _regular(path, "lat", lat), _regular(path, "lon", lon)
        if dlon <= 0:
            raise WriterError(path, "lon must be ascending for GRIB regular_ll")
        h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
        keys: list[tuple[str, float | int]] = [
            ("tablesVersion", TABLES_VERSION),
            ("centre", self.centre),
            ("subCentre", 0),
            ("significanceOfReferenceTime", 1),  # start of forecast
            ("productionStatusOfProcessedData", 0),
            ("typeOfProcessedData", ML_BASED_FORECAST),
            ("Ni", lon.size),
            ("Nj", lat.size),
            ("iScansNegatively", 0),
            ("jScansPositively", 1 if dlat > 0 else 0),
            ("jPointsAreConsecutive", 0),
            ("latitudeOfFirstGridPointInDegrees", lat[0]),
            ("latitudeOfLastGridPointInDegrees", lat[-1]),
            ("longitudeOfFirstGridPointInDegrees", lon[0] % 360.0),
            ("longitudeOfLastGridPointInDegrees", lon[-1] % 360.0),
            ("iDirectionIncrementInDegrees", abs(dlon)),
            ("jDirectionIncrementInDegrees", abs(dlat)),
            ("bitsPerValue", self.packing_bits or 16),
        ]
        for key, value in keys:
            eccodes.codes_set(h, key, value)
        return h

    def _field_template(
        self, grid: int, path: Path, name: str, number: int | None, n_members: int
    ) -> int:
        param = parameter(name, self.parameters)
        if param is None:
            raise WriterError(
                path,
                "no GRIB2 parameter for this variable (add a GribParameter for it with "
                "Grib2Writer(parameters={...}))",
                name,
            )
        ensemble = number is not None
        # 4.0 / 4.1 instantaneous, 4.8 / 4.11 statistically processed (deterministic / member)
        template = (1 if ensemble else 0) if param.statistic is None else (11 if ensemble else 8)
        h = eccodes.codes_clone(grid)
        keys: list[tuple[str, int]] = [
            ("productDefinitionTemplateNumber", template),
            ("discipline", param.discipline),
            ("parameterCategory", param.category),
            ("parameterNumber", param.number),
            ("typeOfGeneratingProcess", ENSEMBLE_FORECAST if ensemble else FORECAST),
            ("generatingProcessIdentifier", self.generating_process),
            ("typeOfFirstFixedSurface", param.surface),
            ("scaleFactorOfFirstFixedSurface", 0),
            ("scaledValueOfFirstFixedSurface", param.level),
            ("typeOfSecondFixedSurface", 255),
            ("stepUnits", HOUR),
            ("indicatorOfUnitOfTimeRange", HOUR),
        ]
        if param.statistic is not None:
            keys.append(("typeOfStatisticalProcessing", param.statistic))
        if ensemble:
            assert number is not None
            keys += [
                ("typeOfEnsembleForecast", 0 if number == 0 else 3),
                ("perturbationNumber", number),
                ("numberOfForecastsInEnsemble", n_members),
            ]
        try:
            for key, value in keys:
                eccodes.codes_set(h, key, value)
        except eccodes.GribInternalError as err:
            eccodes.codes_release(h)
            raise WriterError(path, f"ecCodes refused {key}={value}: {err}", name) from err
        return h

    # ------------------------------------------------------------------ writing

    def _messages(self, ds: xr.Dataset, path: Path) -> Iterator[bytes]:
        fields = forecast_fields(ds, path)
        numbers = members(ds)
        inits = np.asarray(ds["init_time"].values).astype("datetime64[m]")
        leads = [int(x) for x in np.asarray(ds["lead_time"].values)]
        if any(lead < 0 for lead in leads):
            raise WriterError(path, f"negative lead_time in {leads}")
        # date keys per init, computed once
        dates = []
        for t in inits:
            day = t.astype("datetime64[D]")
            ymd = int(str(day).replace("-", ""))
            minutes = int((t - day).astype(np.int64))
            dates.append((ymd, minutes // 60 * 100 + minutes % 60))
        grid = self._grid_template(ds, path)
        try:
            for name in fields:
                yield from self._variable(ds, path, name, grid, numbers, dates, leads)
        finally:
            eccodes.codes_release(grid)

    def _variable(
        self,
        ds: xr.Dataset,
        path: Path,
        name: str,
        grid: int,
        numbers: np.ndarray | None,
        dates: list[tuple[int, int]],
        leads: list[int],
    ) -> Iterator[bytes]:
        param = parameter(name, self.parameters)
        cube = field_array(ds, name).values  # (init, member, lead, lat, lon)
        accumulated = param is not None and param.statistic is not None
        n_members = 0 if numbers is None else int(numbers.size)
        for m in range(cube.shape[1]):
            number = None if numbers is None else int(numbers[m])
            tmpl = self._field_template(grid, path, name, number, n_members)
            try:
                for i, (ymd, hhmm) in enumerate(dates):
                    eccodes.codes_set(tmpl, "dataDate", ymd)
                    eccodes.codes_set(tmpl, "dataTime", hhmm)
                    for j, lead in enumerate(leads):
                        values = np.asarray(cube[i, m, j], dtype=np.float64)
                        if param is not None and param.factor != 1.0:
                            values = values * param.factor
                        yield self._message(tmpl, path, name, lead, accumulated, values)
            finally:
                eccodes.codes_release(tmpl)

    @staticmethod
    def _message(
        h: int, path: Path, name: str, lead: int, accumulated: bool, values: np.ndarray
    ) -> bytes:
        """Encode one field on the (variable, member) handle ``h`` itself: reusing it, not a
        clone, saves re-parsing a whole message per field (cloning was half the time on a
        181×360 grid); everything a field changes — step, bitmap, values — is set each time."""
        try:
            if accumulated:  # statistically processed over (init, init + lead]
                eccodes.codes_set(h, "startStep", 0)
                eccodes.codes_set(h, "endStep", lead)
            else:
                eccodes.codes_set(h, "forecastTime", lead)
            flat = values.ravel()
            missing = ~np.isfinite(flat)
            if missing.all():
                raise WriterError(path, f"lead {lead} h is all NaN: nothing to encode", name)
            if missing.any():
                # a sentinel outside the field's range, so no real value can be taken for it
                sentinel = float(np.nanmax(np.abs(flat))) * 2.0 + 9999.0
                eccodes.codes_set(h, "bitmapPresent", 1)
                eccodes.codes_set(h, "missingValue", sentinel)
                flat = np.where(missing, sentinel, flat)
            elif eccodes.codes_get(h, "bitmapPresent"):
                eccodes.codes_set(h, "bitmapPresent", 0)  # left on by an earlier field
            eccodes.codes_set_values(h, flat)
            return bytes(eccodes.codes_get_message(h))
        except eccodes.GribInternalError as err:
            raise WriterError(path, f"ecCodes cannot encode lead {lead} h: {err}", name) from err

    def write(self, ds: xr.Dataset, path: Path) -> Path:
        path = Path(path)
        with atomic_target(path) as tmp, tmp.open("wb") as fh:
            for message in self._messages(ds, path):
                fh.write(message)
        return path

    # ------------------------------------------------------------------ reading

    def read(self, path: Path) -> xr.Dataset:
        """Decode a file this writer wrote back to the contract (ecCodes, header keys and the
        bitmap; the parameter table inverted). cfgrib and :func:`stratocast.gridded.
        open_gridded` read the same files; the tests hold all three to the same values."""
        return read_grib2(path, self.parameters)


def read_grib2(path: Path, extra: Mapping[str, GribParameter] | None = None) -> xr.Dataset:
    extra = dict(extra or {})
    fields: dict[tuple[str, np.datetime64, int | None, int], np.ndarray] = {}
    grid: tuple[np.ndarray, np.ndarray] | None = None
    names: dict[tuple[int, ...], str] = {}
    for candidate in [*VARIABLES, *extra]:
        p = parameter(candidate, extra)
        if p is not None:
            key = (p.discipline, p.category, p.number, p.surface, p.level)
            names.setdefault(key, candidate)
    factors: dict[str, float] = {}
    with Path(path).open("rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                found: tuple[int, ...] = tuple(
                    int(eccodes.codes_get_long(h, k))
                    for k in (
                        "discipline",
                        "parameterCategory",
                        "parameterNumber",
                        "typeOfFirstFixedSurface",
                        "scaledValueOfFirstFixedSurface",
                    )
                )
                name = names.get(found)
                if name is None:
                    raise WriterError(path, f"a message with GRIB parameter {found} we never write")
                p = parameter(name, extra)
                assert p is not None
                factors[name] = p.factor
                date, time = (
                    int(eccodes.codes_get(h, "dataDate")),
                    int(eccodes.codes_get(h, "dataTime")),
                )
                init = np.datetime64(
                    f"{date // 10000:04d}-{date // 100 % 100:02d}-{date % 100:02d}"
                    f"T{time // 100:02d}:{time % 100:02d}",
                    "ns",
                )
                lead = int(eccodes.codes_get(h, "endStep"))
                number = (
                    int(eccodes.codes_get(h, "perturbationNumber"))
                    if eccodes.codes_is_defined(h, "perturbationNumber")
                    else None
                )
                ni, nj = int(eccodes.codes_get(h, "Ni")), int(eccodes.codes_get(h, "Nj"))
                values = np.asarray(eccodes.codes_get_values(h), dtype=np.float64)
                if eccodes.codes_get(h, "bitmapPresent"):
                    bitmap = np.asarray(eccodes.codes_get_array(h, "bitmap"), dtype=np.int64)
                    values[bitmap == 0] = np.nan
                if grid is None:
                    lat0 = eccodes.codes_get(h, "latitudeOfFirstGridPointInDegrees")
                    lat1 = eccodes.codes_get(h, "latitudeOfLastGridPointInDegrees")
                    lon0 = eccodes.codes_get(h, "longitudeOfFirstGridPointInDegrees")
                    lon1 = eccodes.codes_get(h, "longitudeOfLastGridPointInDegrees")
                    lon1 = lon1 + 360.0 if lon1 < lon0 else lon1
                    grid = (np.linspace(lat0, lat1, nj), np.linspace(lon0, lon1, ni))
                fields[(name, init, number, lead)] = values.reshape(nj, ni) / p.factor
            finally:
                eccodes.codes_release(h)
    if grid is None:
        raise WriterError(path, "no GRIB message in the file")
    vars_ = sorted({k[0] for k in fields}, key=[*VARIABLES, *extra].index)
    inits = sorted({k[1] for k in fields})
    nums = sorted({k[2] for k in fields if k[2] is not None})
    leads = sorted({k[3] for k in fields})
    lat, lon = grid
    shape = (len(inits), max(1, len(nums)), len(leads), lat.size, lon.size)
    data = {}
    for name in vars_:
        cube = np.full(shape, np.nan, np.float32)
        for (n, t0, number, lead), values in fields.items():
            if n == name:
                m = nums.index(number) if nums and number is not None else 0
                cube[inits.index(t0), m, leads.index(lead)] = values
        var = VARIABLES.get(name)
        attrs = {"units": var.units, "standard_name": var.standard_name} if var else {}
        data[name] = (("init_time", "member", "lead_time", "lat", "lon"), cube, attrs)
    ds = xr.Dataset(
        data,
        coords={
            "init_time": np.array(inits, dtype="datetime64[ns]"),
            "lead_time": ("lead_time", np.array(leads, dtype=np.int64), {"units": "hours"}),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    if nums:
        return ds.assign_coords(member=np.array(nums, dtype=np.int64))
    return ds.squeeze("member", drop=True)
