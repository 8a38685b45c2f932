"""Scores from running sums, so any number of initialisations streams through in chunks.

Consistent mask: a sample (station, init, lead) of a variable counts only when the
observation and *every* system (models and baselines) have a finite value there. All systems
are therefore scored on exactly the same set, and their scores are comparable.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import pandas as pd

from stratocast.verify.config import PRECIP_HOURS
from stratocast.verify.metrics_base import (
    Accumulator,
    MetricInputError,
    check_same,
    common_mask,
    safe_ratio,
)
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
    MissingMembers,
    crps_ensemble,
    spread_skill_ratio,
)
from stratocast.verify.metrics_gridded import (
    GriddedAccumulator,
    latitude_weights,
    weighted_acc,
    weighted_rmse,
)
from stratocast.verify.significance import SIGNIFICANCE_COLUMNS, DmMethod, compare_at_lead

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
class PerInitSums:
    """Σe, Σ|e|, Σe² per (system, initialisation, lead) over stations, on the common mask.

    Cheap (no station axis) and what the significance tests resample: kept as the chunks
    arrive and concatenated in initialisation order on demand.
    """

    init_times: list[np.ndarray] = field(default_factory=list)  # datetime64[ns] [init]
    err: list[np.ndarray] = field(default_factory=list)  # [system, init, lead]
    abs: list[np.ndarray] = field(default_factory=list)
    sq: list[np.ndarray] = field(default_factory=list)
    n: list[np.ndarray] = field(default_factory=list)  # [init, lead]

    def add(self, init_times: np.ndarray, errors: np.ndarray, mask: np.ndarray) -> None:
        """``errors`` ``[system, init, lead, station]`` (0 where masked), ``mask`` without the
        system axis."""
        self.init_times.append(np.asarray(init_times, dtype="datetime64[ns]"))
        self.err.append(errors.sum(axis=3))
        self.abs.append(np.abs(errors).sum(axis=3))
        self.sq.append((errors * errors).sum(axis=3))
        self.n.append(mask.sum(axis=2).astype(np.int64))

    def merge(self, other: PerInitSums) -> None:
        for name in ("init_times", "err", "abs", "sq", "n"):
            getattr(self, name).extend(getattr(other, name))

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """(init times, {err, abs, sq: [system, init, lead]}, n [init, lead]), time-sorted."""
        if not self.init_times:
            raise MetricInputError("no initialisation has been accumulated")
        times = np.concatenate(self.init_times)
        order = np.argsort(times, kind="stable")
        sums = {k: np.concatenate(getattr(self, k), axis=1)[:, order] for k in ("err", "abs", "sq")}
        return times[order], sums, np.concatenate(self.n)[order]


@dataclass
class VariableSums:
    """Running sums of one variable, built from the metric accumulators.

    ``continuous[i]`` (system i) keeps n, Σe, Σ|e|, Σe² and threshold counts over
    ``[lead, station]`` (station resolution feeds the station map and region scores);
    ``contingency[i]`` keeps precipitation tables over ``[lead]``; ``ensemble`` (system
    name → accumulator over ``[lead]``) exists for systems with members. n is the same for
    every system (one common mask).
    """

    continuous: list[ContinuousAccumulator]
    contingency: list[ContingencyAccumulator]
    ensemble: dict[str, EnsembleAccumulator]
    per_init: PerInitSums
    first_valid: np.ndarray  # [lead] datetime64[ns], NaT until a sample arrives
    last_valid: np.ndarray

    @classmethod
    def zeros(cls, variable: str, n_systems: int, n_leads: int, n_stations: int) -> VariableSums:
        thresholds = tuple(ACCURACY_THRESHOLDS.get(variable, ()))
        circular = variable in CIRCULAR_VARIABLES
        precip = variable in PRECIP_HOURS
        return cls(
            continuous=[
                ContinuousAccumulator((n_leads, n_stations), thresholds, circular)
                for _ in range(n_systems)
            ],
            contingency=[
                ContingencyAccumulator((n_leads,), PRECIP_THRESHOLDS_MM) for _ in range(n_systems)
            ]
            if precip
            else [],
            ensemble={},
            per_init=PerInitSums(),
            first_valid=np.full(n_leads, np.datetime64("NaT", "ns")),
            last_valid=np.full(n_leads, np.datetime64("NaT", "ns")),
        )

    @property
    def n(self) -> np.ndarray:
        """Samples ``[lead, station]`` (shared by all systems)."""
        return self.continuous[0].n

    @property
    def sum_err(self) -> np.ndarray:
        """Σ(f − o) ``[system, lead, station]``."""
        return np.stack([c.sum_err for c in self.continuous])

    @property
    def sum_abs(self) -> np.ndarray:
        return np.stack([c.sum_abs for c in self.continuous])

    @property
    def sum_sq(self) -> np.ndarray:
        return np.stack([c.sum_sq for c in self.continuous])


@dataclass
class ScoreAccumulator:
    """Accumulates errors chunk by chunk; :meth:`scorecard` turns them into scores."""

    systems: list[str]
    variables: list[str]
    lead_hours: np.ndarray
    station_ids: np.ndarray
    # how a NaN ensemble member is scored (metrics_ensemble: drop the pair, or score the
    # finite members as `scores` does)
    missing_members: MissingMembers = "drop_pair"
    sums: dict[str, VariableSums] = field(init=False)

    def __post_init__(self) -> None:
        self.sums = {
            v: VariableSums.zeros(v, len(self.systems), self.lead_hours.size, self.station_ids.size)
            for v in self.variables
        }

    def update(
        self,
        variable: str,
        obs: np.ndarray,
        systems: Mapping[str, np.ndarray],
        valid: np.ndarray,
        ensembles: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Add one chunk: obs and systems ``[init, lead, station]``, ``valid`` ``[init, lead]``.

        ``ensembles`` (system → ``[init, lead, station, member]``) adds CRPS and spread–skill
        for systems with members; their deterministic value in ``systems`` is the ensemble
        mean (NaN where any member is, so the common mask covers the members too).
        """
        missing = [s for s in self.systems if s not in systems]
        if missing:
            raise MetricInputError(f"update for {variable!r} lacks system(s) {missing}")
        acc = self.sums[variable]
        mask = common_mask(obs, *(systems[s] for s in self.systems))
        errors = np.empty((len(self.systems), *mask.shape))
        for i, name in enumerate(self.systems):
            acc.continuous[i].update(systems[name], obs, axis=0, mask=mask)
            err = systems[name] - obs
            if acc.continuous[i].circular:
                err = wrap_degrees(err)
            errors[i] = np.where(mask, err, 0.0)
            if acc.contingency:
                acc.contingency[i].update(systems[name], obs, axis=(0, 2), mask=mask)
        for name, members in (ensembles or {}).items():
            ens = acc.ensemble.get(name)
            if ens is None:
                ens = acc.ensemble[name] = EnsembleAccumulator(
                    members.shape[-1], (self.lead_hours.size,), self.missing_members
                )
            ens.update(members, obs, member_axis=-1, axis=(0, 2), mask=mask)
        inits = valid[:, 0] - np.timedelta64(int(self.lead_hours[0]), "h")
        acc.per_init.add(inits, errors, mask)
        self._update_period(acc, np.asarray(mask.any(axis=2)), valid)

    def merge(self, other: ScoreAccumulator) -> Self:
        """Add another accumulator's sums (same systems, variables, leads and stations)."""
        check_same("systems", self.systems, other.systems)
        check_same("variables", self.variables, other.variables)
        check_same("lead hours", self.lead_hours.tolist(), other.lead_hours.tolist())
        check_same("stations", self.station_ids.tolist(), other.station_ids.tolist())
        for name, acc in self.sums.items():
            theirs = other.sums[name]
            for mine, their in zip(acc.continuous, theirs.continuous, strict=True):
                mine.merge(their)
            for cmine, ctheir in zip(acc.contingency, theirs.contingency, strict=True):
                cmine.merge(ctheir)
            for system, ens in theirs.ensemble.items():
                if system in acc.ensemble:
                    acc.ensemble[system].merge(ens)
                else:
                    acc.ensemble[system] = copy.deepcopy(ens)
            acc.per_init.merge(theirs.per_init)
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

    # ----------------------------------------------------------------------- tables

    def _keys(self, variable: str, n_rows_per_system: int) -> dict[str, np.ndarray]:
        return {
            "system": np.repeat(self.systems, n_rows_per_system),
            "variable": np.full(len(self.systems) * n_rows_per_system, variable),
        }

    def accuracy_table(self) -> pd.DataFrame:
        """Fraction of samples with |error| <= threshold: (system, variable, lead_hours,
        threshold, accuracy, n), for variables with :data:`ACCURACY_THRESHOLDS`."""
        rows = []
        for variable in self.variables:
            for i, system in enumerate(self.systems):
                cont = self.sums[variable].continuous[i]
                n = cont.n.sum(axis=1)
                for k, thr in enumerate(cont.thresholds):
                    rows.append(
                        pd.DataFrame(
                            {
                                "system": system,
                                "variable": variable,
                                "lead_hours": self.lead_hours,
                                "threshold": thr,
                                "accuracy": safe_ratio(cont.within[k].sum(axis=1), n),
                                "n": n,
                            }
                        )
                    )
        return _concat(rows, ["system", "variable", "lead_hours", "threshold", "accuracy", "n"])

    def contingency_table(self) -> pd.DataFrame:
        """Precipitation contingency counts and scores per (system, variable, lead, threshold)."""
        rows = []
        for variable in self.variables:
            for i, system in enumerate(self.systems[: len(self.sums[variable].contingency)]):
                table = self.sums[variable].contingency[i]
                res = table.result()  # [threshold, lead]
                for k, thr in enumerate(table.thresholds):
                    rows.append(
                        pd.DataFrame(
                            {
                                "system": system,
                                "variable": variable,
                                "lead_hours": self.lead_hours,
                                "threshold": thr,
                                **{key: values[k] for key, values in res.items()},
                            }
                        )
                    )
        return _concat(rows, ["system", "variable", "lead_hours", "threshold"])

    def ensemble_table(self) -> pd.DataFrame:
        """CRPS (fair and ecdf) and spread–skill per (system, variable, lead) of ensembles."""
        rows = []
        for variable in self.variables:
            for system, ens in self.sums[variable].ensemble.items():
                rows.append(
                    pd.DataFrame(
                        {
                            "system": system,
                            "variable": variable,
                            "lead_hours": self.lead_hours,
                            "members": ens.members,
                            **ens.result(),
                        }
                    )
                )
        return _concat(rows, ["system", "variable", "lead_hours", "members"])

    def significance_table(
        self,
        pairs: Sequence[tuple[str, str]],
        n_boot: int,
        seed: int,
        confidence: float = 0.95,
        dm_method: DmMethod = "hln",
    ) -> pd.DataFrame:
        """For each (A, B) pair, variable and lead: RMSE(A) − RMSE(B) with its paired block
        bootstrap CI and p-value, and the Diebold–Mariano p-value on per-init MSE."""
        rows = []
        for variable in self.variables:
            per_init = self.sums[variable].per_init
            if not per_init.init_times:
                continue
            times, sums, n = per_init.arrays()
            spacing_h = _spacing_hours(times)
            for a, b in pairs:
                ia, ib = self.systems.index(a), self.systems.index(b)
                for j, lead in enumerate(self.lead_hours):
                    row = compare_at_lead(
                        {k: v[ia, :, j] for k, v in sums.items()},
                        {k: v[ib, :, j] for k, v in sums.items()},
                        n[:, j],
                        horizon=max(1, int(lead) // spacing_h),
                        n_boot=n_boot,
                        seed=seed,
                        confidence=confidence,
                        dm_method=dm_method,
                    )
                    rows.append(
                        {"system": a, "versus": b, "variable": variable, "lead_hours": lead, **row}
                    )
        columns = ["system", "versus", "variable", "lead_hours", *SIGNIFICANCE_COLUMNS, "note"]
        table = pd.DataFrame(rows, columns=columns)
        return table.assign(metric="rmse", confidence=confidence)

    def scorecard(self, reference: str) -> pd.DataFrame:
        """One row per (system, variable, lead): n, n_stations, rmse, mae, bias, skill."""
        if reference not in self.systems:
            raise MetricInputError(f"skill reference {reference!r} is not one of {self.systems}")
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


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def _spacing_hours(times: np.ndarray) -> int:
    """Typical initialisation spacing (median step, hours; 12 when there is one init)."""
    steps = np.diff(np.unique(times)) / np.timedelta64(1, "h")
    return max(1, int(np.median(steps))) if steps.size else 12


def systems_order(models: Sequence[str], baselines: Sequence[str]) -> list[str]:
    """Models first (as given), then baselines: the order of tables and plot legends."""
    return [*models, *baselines]
