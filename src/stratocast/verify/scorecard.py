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


#: Index dimensions of each extra scorecard table in the NetCDF groups (the tidy Parquet
#: files keep them as columns). Regions are keyed ``kind:region`` (e.g. ``ar6:WCE``) and
#: significance comparisons ``A vs B``, so each group is a dense cube.
TABLE_INDEX: Mapping[str, tuple[str, ...]] = {
    "accuracy": ("system", "variable", "lead_hours", "threshold"),
    "contingency": ("system", "variable", "lead_hours", "threshold"),
    "ensemble": ("system", "variable", "lead_hours"),
    "gridded": ("system", "variable", "lead_hours"),
    "regions": ("region_key", "system", "variable", "lead_hours"),
    "significance": ("comparison", "variable", "lead_hours"),
    "station_regions": ("row",),
}


def _group(name: str, table: pd.DataFrame) -> xr.Dataset:
    frame = table.reset_index(drop=True)
    if name == "regions":
        frame = frame.assign(region_key=frame["kind"] + ":" + frame["region"])
    elif name == "significance":
        frame = frame.assign(comparison=frame["system"] + " vs " + frame["versus"])
    elif name == "station_regions":
        frame = frame.rename_axis("row").reset_index()
    ds = xr.Dataset.from_dataframe(frame.set_index(list(TABLE_INDEX[name])))
    for var in list(ds.variables):
        if ds[var].dtype == object:
            ds[var] = ds[var].astype(str)  # NetCDF has no object type
    return ds


def write_scorecard(
    tables: pd.DataFrame | Mapping[str, pd.DataFrame], attrs: Mapping[str, Any], out_dir: Path
) -> tuple[Path, Path]:
    """Write ``scorecard.parquet`` (the scores) and ``scorecard_<table>.parquet`` for every
    other table, and ``scorecard.nc``: the scores cube at the root and one group per other
    non-empty table (open with ``xr.open_dataset(path, group="regions")``)."""
    if isinstance(tables, pd.DataFrame):
        tables = {"scores": tables}
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet = out_dir / "scorecard.parquet"
    netcdf = out_dir / "scorecard.nc"
    scores = tables["scores"]
    scores.to_parquet(parquet, index=False)
    extra = {k: v for k, v in tables.items() if k != "scores"}
    for name, table in extra.items():
        table.to_parquet(out_dir / f"scorecard_{name}.parquet", index=False)
    ds = to_dataset(scores, {**attrs, "groups": sorted(k for k, v in extra.items() if len(v))})
    for name in ("system", "variable"):
        ds[name] = ds[name].astype(str)
    ds.to_netcdf(netcdf, engine="netcdf4")
    for name, table in extra.items():
        if len(table):
            _group(name, table).to_netcdf(netcdf, mode="a", group=name, engine="netcdf4")
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
