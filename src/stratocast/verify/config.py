"""Configuration of the verification stage."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from stratocast.config import BATCH_MAX, HORIZON_HOURS_MAX, SAMPLES_MAX, ComponentConfig, count

#: Names the stage reserves for its own reference systems; forecasts may not use them.
PERSISTENCE = "persistence"
CLIMATOLOGY = "climatology"
BASELINES = (PERSISTENCE, CLIMATOLOGY)

#: The WeatherReal benchmark's station variables, in its order, by their stratocast names:
#: 2 m temperature and dewpoint, surface and mean-sea-level pressure, 10 m wind speed and
#: direction, total cloud cover (fraction 0..1) and precipitation over 1/3/6/12/24 h
#: (kg m-2 = mm). ``tcc`` and ``tp<N>h`` are not in the canonical vocabulary yet; their units
#: are in :data:`EXTRA_UNITS`.
PROTOCOL_VARIABLES = (
    "t2m",
    "d2m",
    "sp",
    "msl",
    "ws10",
    "wd10",
    "tcc",
    "tp1h",
    "tp3h",
    "tp6h",
    "tp12h",
    "tp24h",
)
#: Accumulation period (hours) of each precipitation variable.
PRECIP_HOURS = {"tp1h": 1, "tp3h": 3, "tp6h": 6, "tp12h": 12, "tp24h": 24}
EXTRA_UNITS = {"tcc": "1", **{name: "kg m-2" for name in PRECIP_HOURS}}

#: Variables the stage knows how to verify (ws10 and wd10 are derived from u10/v10 on the
#: forecast side; precipitation from accumulated ``tp`` or the matching ``tp<N>h`` field).
SUPPORTED_VARIABLES = tuple(dict.fromkeys([*PROTOCOL_VARIABLES, "u10", "v10"]))


class VerifyConfig(ComponentConfig):
    """How forecasts are verified against held-out stations."""

    variables: list[str] = Field(default_factory=lambda: ["t2m", "ws10", "msl"])
    #: Lead times (hours) to score; None scores every lead time all forecasts share that is a
    #: multiple of ``lead_step_hours`` (WeatherReal: every 6 h to the forecast horizon).
    lead_hours: list[int] | None = Field(default=None, max_length=HORIZON_HOURS_MAX)
    lead_step_hours: int = count(6, le=HORIZON_HOURS_MAX)
    #: Variables the forecasts or the observations lack are skipped (and the report says why)
    #: instead of being an error: for scoring "every protocol variable both sides carry".
    skip_unavailable: bool = False
    #: Baselines scored alongside the forecasts (on the same mask).
    baselines: list[str] = Field(default_factory=lambda: list(BASELINES))
    #: An observation counts for a valid time when it lies within this many minutes of it.
    match_tolerance_minutes: float = Field(default=30.0, ge=0.0)
    #: Only initialisations at these UTC hours are scored.
    init_hours: list[int] = Field(default_factory=lambda: [0, 12], max_length=24)
    #: Standard-atmosphere lapse rate in K per km, applied to t2m from the interpolated model
    #: orography to the station elevation.
    lapse_rate: float = Field(default=6.5, ge=0.0, le=15.0)
    #: Reference system of the skill score (a baseline or one of the forecast names).
    skill_reference: str = CLIMATOLOGY
    #: Climatology uses the mean for an hour of day only when that hour has this many samples
    #: at the station; otherwise it falls back to the station mean over all hours.
    climatology_min_samples: int = count(10, le=SAMPLES_MAX)
    #: Explicit climatology period [start, end); by default every observation before the
    #: first scored initialisation (so the climatology never sees the verification period).
    climatology_start: datetime | None = None
    climatology_end: datetime | None = None
    #: Lead time (hours) of the station skill map; the nearest scored lead is used.
    map_lead_hours: int = count(24, ge=0, le=HORIZON_HOURS_MAX)
    #: Initialisations processed together; bounds memory for long verification periods.
    init_chunk_size: int = count(8, le=BATCH_MAX)
    #: Custom regions scored besides continents and AR6 land regions: name → (lon, lat)
    #: vertices in degrees (the polygon closes itself; regions may overlap).
    regions: dict[str, list[list[float]]] = Field(default_factory=dict)
    #: Score by AR6 land region and continent. The shapefile is found by
    #: ``stratocast.verify.regions.resolve_ar6_file`` (this path, $STRATOCAST_AR6_REGIONS,
    #: regionmask's cache, stratocast's cache, regionmask's download, PyPI); when every route
    #: fails the report says so and only custom regions are scored.
    ar6_regions: bool = True
    ar6_regions_path: Path | None = None
    #: Paired block bootstrap resamples and seed for the significance tables.
    bootstrap_samples: int = count(1000, ge=100, le=SAMPLES_MAX)
    bootstrap_seed: int = 0
    #: Diebold–Mariano statistic of the significance tables: "hln", Harvey–Leybourne–Newbold
    #: (1997), as ``scores`` computes it; "bartlett", a Newey–West (Bartlett kernel) variance
    #: against the normal (``stratocast.verify.significance``).
    dm_method: Literal["hln", "bartlett"] = "hln"
    #: An ensemble member that is NaN at a station and time: "drop_pair" leaves the pair out
    #: of every score (every scored pair has all members); "finite" scores it on its finite
    #: members when at least 2 are (the ``scores`` convention). Either way the ensemble table
    #: counts what was left out (``stratocast.verify.metrics_ensemble``).
    ensemble_missing_members: Literal["drop_pair", "finite"] = "drop_pair"
    #: Analysis for gridded scores (WeatherBench2 conventions): a Zarr store or NetCDF file
    #: with canonical names, dims (time, lat, lon), on the forecast grid; ``truth`` is the
    #: built-in world's truth (resolved by the run's verify stage). None: no gridded scores.
    analysis: str | None = None
    #: Variables scored on the grid; None: the station variables the analysis and every
    #: forecast carry as fields (ws10 from u10/v10), the others listed in the report.
    gridded_variables: list[str] | None = None
    #: ACC climatology from a file (canonical names, dims dayofyear, hour, lat, lon) instead
    #: of one fitted to the analysis.
    gridded_climatology: str | None = None
    #: [start, end) of the analysis the fitted climatology averages; None: all of it.
    gridded_climatology_period: tuple[datetime, datetime] | None = None
    #: Days of the window (centred on the day of year) of the fitted climatology; 61 as in
    #: WeatherBench2.
    gridded_climatology_window_days: int = Field(default=61, ge=1, le=366)

    @field_validator("variables")
    @classmethod
    def _known_variables(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in SUPPORTED_VARIABLES]
        if unknown:
            raise ValueError(f"cannot verify {unknown}; supported: {list(SUPPORTED_VARIABLES)}")
        if not value:
            raise ValueError("at least one variable is needed")
        return value

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
        return list(dict.fromkeys(value))

    @field_validator("regions")
    @classmethod
    def _valid_polygons(cls, value: dict[str, list[list[float]]]) -> dict[str, list[list[float]]]:
        for name, vertices in value.items():
            if len(vertices) < 3 or any(len(v) != 2 for v in vertices):
                raise ValueError(f"region {name!r} needs at least 3 (lon, lat) vertices")
            if any(abs(v[1]) > 90 for v in vertices):
                raise ValueError(f"region {name!r}: a latitude lies outside [-90, 90]")
        return value

    @field_validator("gridded_climatology_period")
    @classmethod
    def _ordered_period(
        cls, value: tuple[datetime, datetime] | None
    ) -> tuple[datetime, datetime] | None:
        if value is None:
            return value
        try:
            ordered = value[0] < value[1]
        except TypeError as err:  # one end with a time zone, the other without
            raise ValueError(f"gridded_climatology_period: {err}") from err
        if not ordered:
            raise ValueError(f"gridded_climatology_period must be [start, end), got {value}")
        return value

    @field_validator("init_hours")
    @classmethod
    def _valid_hours(cls, value: list[int]) -> list[int]:
        bad = [h for h in value if not 0 <= h < 24]
        if bad:
            raise ValueError(f"init hours must lie in 0..23, got {bad}")
        return value
