"""Forecast steps as the ``step=`` argument takes them and as messages print them."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from stratocast.errors import StratocastError

StepLike = int | float | timedelta | np.timedelta64


class StepError(StratocastError, ValueError):
    """A ``step=`` argument that is not a duration."""


def as_step(value: StepLike) -> np.timedelta64:
    """``step=`` as ``timedelta64[ns]``: a number is hours (the GRIB/WB2 habit), a timedelta
    or ``np.timedelta64`` is taken as it is."""
    if isinstance(value, np.timedelta64):
        return value.astype("timedelta64[ns]")
    if isinstance(value, timedelta):
        return np.timedelta64(int(value / timedelta(microseconds=1)), "us").astype(
            "timedelta64[ns]"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StepError(f"step={value!r}: give hours (a number), a timedelta or np.timedelta64")
    return np.timedelta64(round(float(value) * 3_600_000_000_000), "ns")


def format_step(step: np.timedelta64) -> str:
    """``6h``, ``90min``: how error messages and the skip list print a step."""
    minutes = int(np.timedelta64(step, "ns") / np.timedelta64(1, "m"))
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}min"


def step_hint(step: np.timedelta64) -> str:
    """``step`` as the ``step=`` argument would take it, for error messages: ``24``, ``0.25``."""
    hours = float(np.timedelta64(step, "ns") / np.timedelta64(1, "h"))
    return f"{hours:g}"
