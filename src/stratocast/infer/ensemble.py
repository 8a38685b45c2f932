"""Ensemble members from perturbed observations, until a generative model exists.

Member 0 is the control (the observations as received); member k > 0 analyses the same
observations with independent Gaussian errors of a typical surface-observation size added
(the idea of an ensemble of data assimilations, at its cheapest): the spread then reflects how
much the forecast depends on the observations it was given, nothing more — a learned
ensemble should beat it, and the ensemble issue's benchmark is where it is judged. Each
member's noise comes from (cycle time, member) alone: member k of a cycle is reproducible,
whatever the number of members or the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

# Typical errors of one surface observation (instrument + representativeness), in SI units;
# the order of the values operational assimilation assigns, not tuned here.
OBS_ERROR: dict[str, float] = {
    "t2m": 1.0,
    "d2m": 1.5,
    "u10": 1.5,
    "v10": 1.5,
    "msl": 100.0,
    "sp": 100.0,
}
_DEFAULT_FRACTION = 0.1  # of the variable's climatological std, for variables not listed


def member_seed(cycle_time: datetime, member: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(cycle_time.timestamp()), member])


def perturbed(
    dense: np.ndarray,
    variables: Sequence[str],
    obs_std: np.ndarray,
    cycle_time: datetime,
    members: int,
) -> np.ndarray:
    """(history, S, V) physical windows → (members, history, S, V); missing stays missing."""
    amp = np.asarray(
        [
            OBS_ERROR.get(v, _DEFAULT_FRACTION * float(s))
            for v, s in zip(variables, obs_std, strict=True)
        ],
        dtype=np.float32,
    )
    out = np.repeat(dense[None], members, axis=0)
    for k in range(1, members):
        rng = np.random.default_rng(member_seed(cycle_time, k))
        out[k] += (rng.standard_normal(dense.shape, dtype=np.float32) * amp).astype(np.float32)
    return out
