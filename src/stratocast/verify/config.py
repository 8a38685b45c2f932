"""Configuration of the verification stage."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from stratocast.config import ComponentConfig

#: Names the stage reserves for its own reference systems; forecasts may not use them.
PERSISTENCE = "persistence"
CLIMATOLOGY = "climatology"
BASELINES = (PERSISTENCE, CLIMATOLOGY)

#: Variables the stage knows how to verify (ws10 is derived from u10/v10 on both sides).
SUPPORTED_VARIABLES = ("t2m", "ws10", "msl", "u10", "v10", "d2m")


class VerifyConfig(ComponentConfig):
    """How forecasts are verified against held-out stations."""

    variables: list[str] = Field(default_factory=lambda: ["t2m", "ws10", "msl"])
    #: Lead times (hours) to score; None scores every lead time all forecasts share.
    lead_hours: list[int] | None = None
    #: An observation counts for a valid time when it lies within this many minutes of it.
    match_tolerance_minutes: float = Field(default=30.0, ge=0.0)
    #: Only initialisations at these UTC hours are scored.
    init_hours: list[int] = Field(default_factory=lambda: [0, 12])
    #: Standard-atmosphere lapse rate in K per km, applied to t2m from the interpolated model
    #: orography to the station elevation.
    lapse_rate: float = Field(default=6.5, ge=0.0, le=15.0)
    #: Reference system of the skill score (a baseline or one of the forecast names).
    skill_reference: str = CLIMATOLOGY
    #: Climatology uses the mean for an hour of day only when that hour has this many samples
    #: at the station; otherwise it falls back to the station mean over all hours.
    climatology_min_samples: int = Field(default=10, ge=1)
    #: Explicit climatology period [start, end); by default every observation before the
    #: first scored initialisation (so the climatology never sees the verification period).
    climatology_start: datetime | None = None
    climatology_end: datetime | None = None
    #: Lead time (hours) of the station skill map; the nearest scored lead is used.
    map_lead_hours: int = 24
    #: Initialisations processed together; bounds memory for long verification periods.
    init_chunk_size: int = Field(default=8, ge=1)

    @field_validator("variables")
    @classmethod
    def _known_variables(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in SUPPORTED_VARIABLES]
        if unknown:
            raise ValueError(f"cannot verify {unknown}; supported: {list(SUPPORTED_VARIABLES)}")
        if not value:
            raise ValueError("at least one variable is needed")
        return value

    @field_validator("init_hours")
    @classmethod
    def _valid_hours(cls, value: list[int]) -> list[int]:
        bad = [h for h in value if not 0 <= h < 24]
        if bad:
            raise ValueError(f"init hours must lie in 0..23, got {bad}")
        return value
