"""Reference forecasts at stations: persistence and climatology.

Both produce arrays ``[init, lead, station]`` like a model, so they pass through the same
mask and the same metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stratocast.verify.matching import Stations, match_obs


def persistence(
    rows: pd.DataFrame,
    stations: Stations,
    inits: pd.DatetimeIndex,
    n_leads: int,
    tolerance: pd.Timedelta,
) -> np.ndarray:
    """The station's observation at init time (nearest within tolerance), for every lead."""
    at_init = match_obs(rows, stations, inits, tolerance)  # [init, station]
    return np.broadcast_to(at_init[:, None, :], (inits.size, n_leads, len(stations))).copy()


def _hour_of_day(times: np.ndarray) -> np.ndarray:
    """Hour of day after rounding to the nearest hour: a 11:50 report describes 12 UTC."""
    rounded = pd.DatetimeIndex(np.ravel(times)).round("h")
    return np.asarray(rounded.hour, dtype=np.int64).reshape(np.shape(times))


@dataclass(frozen=True)
class Climatology:
    """Per-station mean by hour of day, falling back to the station mean for thin hours."""

    table: np.ndarray  # [station, 24]; NaN for a station without climatology observations
    hourly_used: np.ndarray  # [station, 24] bool: True where the hour-of-day mean was used

    @classmethod
    def fit(cls, rows: pd.DataFrame, stations: Stations, min_samples: int) -> Climatology:
        """Fit from one variable's climatology-period rows (station_id, time, value)."""
        n = len(stations)
        sums = np.zeros((n, 24))
        counts = np.zeros((n, 24))
        pos = pd.Index(stations.ids).get_indexer(rows["station_id"].to_numpy())
        keep = pos >= 0
        if keep.any():
            hours = _hour_of_day(
                rows["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()[keep]
            )
            values = rows["value"].to_numpy(dtype=np.float64)[keep]
            np.add.at(sums, (pos[keep], hours), values)
            np.add.at(counts, (pos[keep], hours), 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            station_mean = sums.sum(axis=1) / counts.sum(axis=1)
            hourly = sums / counts
        used = counts >= min_samples
        table = np.where(used, hourly, station_mean[:, None])
        return cls(table=table, hourly_used=used)

    def predict(self, valid: np.ndarray) -> np.ndarray:
        """Climatological value at valid times ``[init, lead]``: ``[init, lead, station]``."""
        hours = _hour_of_day(valid)
        return np.moveaxis(self.table[:, hours], 0, -1)
