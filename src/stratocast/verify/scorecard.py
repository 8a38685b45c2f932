"""The scorecard on disk: Parquet (tidy rows) and NetCDF (system × variable × lead cube)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

SCORE_COLUMNS = ("n", "n_stations", "rmse", "mae", "bias", "mse_skill")


def to_dataset(scorecard: pd.DataFrame, attrs: Mapping[str, Any]) -> xr.Dataset:
    """Scores as arrays over (system, variable, lead_hours); ``attrs`` describe the mask."""
    cube = scorecard.set_index(["system", "variable", "lead_hours"])
    ds = xr.Dataset.from_dataframe(cube[list(SCORE_COLUMNS)])
    for name in ("valid_start", "valid_end"):
        # NetCDF time has no time zone: store naive UTC and say so.
        naive = pd.DatetimeIndex(cube[name]).tz_convert("UTC").tz_localize(None)
        ds[name] = xr.DataArray.from_series(pd.Series(naive, index=cube.index))
        ds[name].attrs["long_name"] = f"{name.replace('_', ' ')} of the sampled period (UTC)"
    ds["n"].attrs["long_name"] = "samples (station, valid time) in the common mask"
    ds["n_stations"].attrs["long_name"] = "stations with at least one sample"
    ds["mse_skill"].attrs["long_name"] = f"1 - MSE/MSE_ref, reference {attrs.get('reference')}"
    ds["bias"].attrs["long_name"] = "mean of forecast minus observation"
    ds["lead_hours"].attrs["units"] = "hours"
    # NetCDF attributes must be scalars or strings: anything structured travels as JSON.
    ds.attrs.update({k: _attr(v) for k, v in attrs.items()})
    return ds


def _attr(value: Any) -> str | int | float:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    return json.dumps(value, default=str, sort_keys=True)


def write_scorecard(
    scorecard: pd.DataFrame, attrs: Mapping[str, Any], out_dir: Path
) -> tuple[Path, Path]:
    """Write ``scorecard.parquet`` and ``scorecard.nc`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet = out_dir / "scorecard.parquet"
    netcdf = out_dir / "scorecard.nc"
    scorecard.to_parquet(parquet, index=False)
    ds = to_dataset(scorecard, attrs)
    for name in ("system", "variable"):
        ds[name] = ds[name].astype(str)
    ds.to_netcdf(netcdf)
    return parquet, netcdf


def rmse_table(scorecard: pd.DataFrame) -> pd.DataFrame:
    """Tidy (system, variable, lead_hours, rmse, n), sorted for printing."""
    cols = ["system", "variable", "lead_hours", "rmse", "n"]
    table = scorecard[cols].sort_values(["variable", "lead_hours", "system"], kind="stable")
    return table.reset_index(drop=True)


def rmse_wide(scorecard: pd.DataFrame, variable: str) -> pd.DataFrame:
    """RMSE of one variable as lead × system, systems in scorecard order (for the report)."""
    rows = scorecard[scorecard["variable"] == variable]
    order = list(dict.fromkeys(rows["system"]))
    wide = rows.pivot(index="lead_hours", columns="system", values="rmse")[order]
    wide.columns = pd.Index([str(c) for c in wide.columns])
    return wide.astype(np.float64)
