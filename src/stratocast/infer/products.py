"""Forecast products in config: what runs when, on which observations, delivered by when.

Free of torch (every CLI command validates the whole run config first). A product is

    products:
      deterministic: {kind: deterministic, cycle: "0 0,6,12,18 * * *", cutoff_minutes: 120,
                      deadline_minutes: 180, horizon_hours: 240, outputs: [zarr]}

``cycle`` is a crontab line in UTC (APScheduler's parser: the scheduler that runs it parses it
the same way); a cycle at time T uses the observations received by T + cutoff and must be
published by T + deadline, or its fallback (the previous cycle's forecast, re-labelled and
flagged) is published instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

from stratocast.config import HORIZON_HOURS_MAX, ComponentConfig, count
from stratocast.errors import StratocastError

Kind = Literal["deterministic", "early", "ensemble", "rapid_refresh"]
MEMBERS_MAX = 1_000  # a person would not mean more members than that on one machine
MINUTES_MAX = 7 * 24 * 60  # a cut-off or deadline a week after the cycle time is a mistake


class ProductError(StratocastError, ValueError):
    """A product request that cannot be served (the message says which product and why)."""


def cron_trigger(expr: str) -> CronTrigger:
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expr, timezone="UTC")
    except ValueError as err:
        raise ValueError(
            f"cycle {expr!r} is not a crontab line (minute hour day month weekday): {err}"
        ) from None


class ProductConfig(ComponentConfig):
    kind: Kind = "deterministic"
    cycle: str = "0 0,6,12,18 * * *"
    cutoff_minutes: int = count(120, ge=0, le=MINUTES_MAX)
    deadline_minutes: int = count(180, ge=1, le=MINUTES_MAX)
    horizon_hours: int = count(240, ge=0, le=HORIZON_HOURS_MAX)
    members: int = count(1, le=MEMBERS_MAX)
    # formats by writer name (stratocast.infer.writers.registry); Zarr is always written too:
    # it is the archive that verification and the fallback read
    outputs: list[str] = Field(default=["zarr"], min_length=1, max_length=16)
    sites: str | None = None  # CSV of site_id, lat, lon[, elevation] for point outputs
    fallback: Literal["previous", "none"] = "previous"
    checkpoint: str | None = None  # default: the run's trained model (<workdir>/train/model.pt)

    @model_validator(mode="after")
    def _check(self) -> ProductConfig:
        cron_trigger(self.cycle)
        from stratocast.infer.writers.registry import available_writers

        unknown = [o for o in self.outputs if o not in available_writers()]
        if unknown:
            raise ValueError(f"outputs {unknown} have no writer; available: {available_writers()}")
        if self.sites is None and any(o.startswith("points") for o in self.outputs):
            raise ValueError("point outputs need `sites` (a CSV of site_id, lat, lon)")
        if self.cutoff_minutes >= self.deadline_minutes:
            raise ValueError(
                f"cutoff_minutes {self.cutoff_minutes} is not before deadline_minutes "
                f"{self.deadline_minutes}: nothing could be computed in between"
            )
        if self.kind == "ensemble" and self.members < 2:
            raise ValueError(f"an ensemble product needs at least 2 members, got {self.members}")
        if self.kind != "ensemble" and self.members != 1:
            raise ValueError(f"a {self.kind} product has one member, got members={self.members}")
        return self

    def cutoff(self, cycle_time: datetime) -> datetime:
        return cycle_time + timedelta(minutes=self.cutoff_minutes)

    def deadline(self, cycle_time: datetime) -> datetime:
        return cycle_time + timedelta(minutes=self.deadline_minutes)

    def cycle_times(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The cycle times in [start, end], UTC."""
        trigger = cron_trigger(self.cycle)
        prev: datetime | None = None
        now = start.astimezone(UTC)
        while True:
            t = trigger.get_next_fire_time(prev, now)
            if t is None or t > end:
                return
            yield t.astimezone(UTC)
            prev, now = t, t + timedelta(seconds=1)

    def is_cycle_time(self, t: datetime) -> bool:
        return next(self.cycle_times(t, t), None) == t.astimezone(UTC)


class OperateConfig(ComponentConfig):
    """What the demo's ``operate`` stage replays (both unset: the stage is skipped)."""

    replay_start: str | None = None
    replay_end: str | None = None

    @model_validator(mode="after")
    def _check(self) -> OperateConfig:
        if (self.replay_start is None) != (self.replay_end is None):
            raise ValueError("replay_start and replay_end go together")
        start, end = self.replay_start, self.replay_end
        if start is not None and end is not None and parse_time(end) < parse_time(start):
            raise ValueError(f"replay_end {end} is before replay_start {start}")
        return self


def parse_time(text: str, what: str = "time") -> datetime:
    """An ISO time, UTC when no zone is given."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ProductError(f"{what} {text!r} is not an ISO time (e.g. 2000-11-20T06:00)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
