"""The forecast product's config, free of torch (validated by every CLI command before any
stage runs; see :mod:`stratocast.train.config`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from stratocast.config import BATCH_MAX, HORIZON_HOURS_MAX, ComponentConfig, count


class ForecastConfig(ComponentConfig):
    start: str = "2000-11-16T00"
    end: str = "2000-12-28T12"
    init_hours: list[int] = Field(default=[0, 12], max_length=24)
    horizon_hours: int = count(72, ge=0, le=HORIZON_HOURS_MAX)
    batch_size: int = count(16, le=BATCH_MAX)

    @model_validator(mode="after")
    def _check(self) -> ForecastConfig:
        bad = [h for h in self.init_hours if not 0 <= h < 24]
        if bad:
            raise ValueError(f"init_hours must be in 0..23, got {bad}")
        return self
