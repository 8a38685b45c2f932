"""Scores from running sums, so any number of initialisations streams through in chunks.

Consistent mask: a sample (station, init, lead) of a variable counts only when the
observation and *every* system (models and baselines) have a finite value there. All systems
are therefore scored on exactly the same set, and their scores are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import pandas as pd

from stratocast.verify.metrics_base import Accumulator, check_same, common_mask
from stratocast.verify.metrics_categorical import (
    PRECIP_THRESHOLDS_MM,
    ContingencyAccumulator,
    contingency_scores,
    ets,
    far,
    frequency_bias,
    pod,
)
from stratocast.verify.metrics_continuous import (
    ACCURACY_THRESHOLDS,
    CIRCULAR_VARIABLES,
    ContinuousAccumulator,
    accuracy_within,
    bias,
    mae,
    mean_error,
    mse,
    mse_skill,
    rmse,
    skill_score,
    wrap_degrees,
)
from stratocast.verify.metrics_ensemble import (
    EnsembleAccumulator,
    crps_ensemble,
    spread_skill_ratio,
)
from stratocast.verify.metrics_gridded import (
    GriddedAccumulator,
    latitude_weights,
    weighted_acc,
    weighted_rmse,
)

__all__ = [
    "ACCURACY_THRESHOLDS",
    "CIRCULAR_VARIABLES",
    "PRECIP_THRESHOLDS_MM",
    "Accumulator",
    "ContingencyAccumulator",
    "ContinuousAccumulator",
    "EnsembleAccumulator",
    "GriddedAccumulator",
    "ScoreAccumulator",
    "VariableSums",
    "accuracy_within",
    "bias",
    "common_mask",
    "contingency_scores",
    "crps_ensemble",
    "ets",
    "far",
    "frequency_bias",
    "latitude_weights",
    "mae",
    "mean_error",
    "mse",
    "mse_skill",
    "pod",
    "rmse",
    "skill_score",
    "spread_skill_ratio",
    "systems_order",
    "weighted_acc",
    "weighted_rmse",
    "wrap_degrees",
]


@dataclass
class VariableSums:
    """Running sums for one variable: ``[system, lead, station]`` (n is shared by systems)."""

    n: np.ndarray
    sum_err: np.ndarray
    sum_abs: np.ndarray
    sum_sq: np.ndarray
    first_valid: np.ndarray  # [lead] datetime64[ns], NaT until a sample arrives
    last_valid: np.ndarray

    @classmethod
    def zeros(cls, n_systems: int, n_leads: int, n_stations: int) -> VariableSums:
        shape = (n_systems, n_leads, n_stations)
        return cls(
            n=np.zeros((n_leads, n_stations), dtype=np.int64),
            sum_err=np.zeros(shape),
            sum_abs=np.zeros(shape),
            sum_sq=np.zeros(shape),
            first_valid=np.full(n_leads, np.datetime64("NaT", "ns")),
            last_valid=np.full(n_leads, np.datetime64("NaT", "ns")),
        )


@dataclass
class ScoreAccumulator:
    """Accumulates errors chunk by chunk; :meth:`scorecard` turns them into scores."""

    systems: list[str]
    variables: list[str]
    lead_hours: np.ndarray
    station_ids: np.ndarray
    sums: dict[str, VariableSums] = field(init=False)

    def __post_init__(self) -> None:
        self.sums = {
            v: VariableSums.zeros(len(self.systems), self.lead_hours.size, self.station_ids.size)
            for v in self.variables
        }

    def update(
        self,
        variable: str,
        obs: np.ndarray,
        systems: Mapping[str, np.ndarray],
        valid: np.ndarray,
    ) -> None:
        """Add one chunk: obs and systems ``[init, lead, station]``, ``valid`` ``[init, lead]``."""
        missing = [s for s in self.systems if s not in systems]
        if missing:
            raise ValueError(f"update for {variable!r} lacks system(s) {missing}")
        acc = self.sums[variable]
        mask = common_mask(obs, *(systems[s] for s in self.systems))
        acc.n += mask.sum(axis=0)
        for i, name in enumerate(self.systems):
            err = np.where(mask, systems[name] - obs, 0.0)
            acc.sum_err[i] += err.sum(axis=0)
            acc.sum_abs[i] += np.abs(err).sum(axis=0)
            acc.sum_sq[i] += (err**2).sum(axis=0)
        self._update_period(acc, np.asarray(mask.any(axis=2)), valid)

    def merge(self, other: ScoreAccumulator) -> Self:
        """Add another accumulator's sums (same systems, variables, leads and stations)."""
        check_same("systems", self.systems, other.systems)
        check_same("variables", self.variables, other.variables)
        check_same("lead hours", self.lead_hours.tolist(), other.lead_hours.tolist())
        check_same("stations", self.station_ids.tolist(), other.station_ids.tolist())
        for name, acc in self.sums.items():
            theirs = other.sums[name]
            acc.n += theirs.n
            acc.sum_err += theirs.sum_err
            acc.sum_abs += theirs.sum_abs
            acc.sum_sq += theirs.sum_sq
            acc.first_valid = np.fmin(acc.first_valid, theirs.first_valid)
            acc.last_valid = np.fmax(acc.last_valid, theirs.last_valid)
        return self

    @staticmethod
    def _update_period(acc: VariableSums, used: np.ndarray, valid: np.ndarray) -> None:
        times = np.where(used, valid, np.datetime64("NaT", "ns"))
        # fmin/fmax skip NaT (min/max would propagate it).
        lo, hi = np.fmin.reduce(times, axis=0), np.fmax.reduce(times, axis=0)
        acc.first_valid = np.fmin(acc.first_valid, lo)
        acc.last_valid = np.fmax(acc.last_valid, hi)

    def scorecard(self, reference: str) -> pd.DataFrame:
        """One row per (system, variable, lead): n, n_stations, rmse, mae, bias, skill."""
        if reference not in self.systems:
            raise ValueError(f"skill reference {reference!r} is not one of {self.systems}")
        ref = self.systems.index(reference)
        frames = [self._variable_rows(v, ref, reference) for v in self.variables]
        return pd.concat(frames, ignore_index=True)

    def _variable_rows(self, variable: str, ref: int, reference: str) -> pd.DataFrame:
        acc = self.sums[variable]
        n = acc.n.sum(axis=1).astype(np.float64)  # [lead]
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = acc.sum_sq.sum(axis=2) / n  # [system, lead]
            mean_err = acc.sum_err.sum(axis=2) / n
            mean_abs = acc.sum_abs.sum(axis=2) / n
        skill = mse_skill(mse, mse[ref][None, :])
        n_sys, n_lead = mse.shape
        return pd.DataFrame(
            {
                "system": np.repeat(self.systems, n_lead),
                "variable": variable,
                "lead_hours": np.tile(self.lead_hours, n_sys),
                "n": np.tile(acc.n.sum(axis=1), n_sys),
                "n_stations": np.tile((acc.n > 0).sum(axis=1), n_sys),
                "rmse": np.sqrt(mse).ravel(),
                "mae": mean_abs.ravel(),
                "bias": mean_err.ravel(),
                "mse_skill": skill.ravel(),
                "reference": reference,
                "valid_start": pd.to_datetime(np.tile(acc.first_valid, n_sys), utc=True),
                "valid_end": pd.to_datetime(np.tile(acc.last_valid, n_sys), utc=True),
            }
        )

    def station_scores(self, lead_hours: int, reference: str) -> pd.DataFrame:
        """Per-station RMSE and MSE skill at one lead, for the station map."""
        lead = int(np.argmin(np.abs(self.lead_hours - lead_hours)))
        ref = self.systems.index(reference)
        rows = []
        for variable in self.variables:
            acc = self.sums[variable]
            n = acc.n[lead].astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                mse = acc.sum_sq[:, lead, :] / n  # [system, station]
            skill = mse_skill(mse, mse[ref][None, :])
            for i, system in enumerate(self.systems):
                rows.append(
                    pd.DataFrame(
                        {
                            "system": system,
                            "variable": variable,
                            "lead_hours": int(self.lead_hours[lead]),
                            "station_id": self.station_ids,
                            "n": acc.n[lead],
                            "rmse": np.sqrt(mse[i]),
                            "mse_skill": skill[i],
                            "reference": reference,
                        }
                    )
                )
        return pd.concat(rows, ignore_index=True)


def systems_order(models: Sequence[str], baselines: Sequence[str]) -> list[str]:
    """Models first (as given), then baselines: the order of tables and plot legends."""
    return [*models, *baselines]
