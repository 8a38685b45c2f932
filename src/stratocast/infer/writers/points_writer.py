"""Forecast point series for a site list, as CSV or Parquet.

Each variable is interpolated bilinearly to the sites, and t2m is moved from the interpolated
model orography to the site elevation by the verification stage's own code
(:func:`stratocast.verify.matching.derive_at_stations`, default lapse rate from
:class:`stratocast.verify.config.VerifyConfig`): a point product and its verification see the
same temperature. A site without a known elevation keeps the uncorrected value.

The table is long in time and wide in variables: one row per (site, init_time, [member,]
lead_time) with ``valid_time`` and one column per variable, in canonical SI units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.grid.interp import bilinear_weights
from stratocast.infer.writers.base import WriterError, atomic_target, field_array, forecast_fields
from stratocast.verify.config import VerifyConfig
from stratocast.verify.matching import Stations, derive_at_stations

SITE_COLUMNS = ("site_id", "lat", "lon", "elevation")
#: the verification stage's default lapse rate (K/km), so both agree unless told otherwise
DEFAULT_LAPSE_RATE = float(VerifyConfig.model_fields["lapse_rate"].default)


def load_sites(sites: pd.DataFrame | Path | str) -> Stations:
    """A site list (frame or CSV with site_id, lat, lon, elevation) as verification Stations."""
    where = "site list" if isinstance(sites, pd.DataFrame) else str(sites)
    if not isinstance(sites, pd.DataFrame):
        try:
            sites = pd.read_csv(sites, dtype={"site_id": str})
        except (OSError, ValueError) as err:
            raise WriterError(where, f"cannot read the site list: {err}") from err
    missing = [c for c in SITE_COLUMNS if c not in sites.columns]
    if missing:
        raise WriterError(where, f"site list lacks column(s) {missing}; has {list(sites.columns)}")
    if sites["site_id"].duplicated().any():
        dup = sorted(sites.loc[sites["site_id"].duplicated(), "site_id"].astype(str))
        raise WriterError(where, f"site ids repeat: {dup}")
    return Stations(
        ids=sites["site_id"].astype(str).to_numpy(),
        lat=sites["lat"].to_numpy(dtype=np.float64),
        lon=sites["lon"].to_numpy(dtype=np.float64),
        elevation=sites["elevation"].to_numpy(dtype=np.float64),
    )


def interpolate(
    ds: xr.Dataset, sites: Stations, lapse_rate: float, path: Path
) -> dict[str, np.ndarray]:
    """Each forecast variable at the sites: arrays (init, member, lead, site)."""
    fields = forecast_fields(ds, path)
    if "lat" in ds.dims and ds["lat"].size > 1 and float(ds["lat"][0]) > float(ds["lat"][-1]):
        ds = ds.isel(lat=slice(None, None, -1))  # the interpolation wants lat ascending
    weights = bilinear_weights(ds["lat"].values, ds["lon"].values, sites.lat, sites.lon)
    raw = {name: weights.apply(field_array(ds, name).values) for name in fields}
    out = dict(raw)
    if "t2m" in raw and lapse_rate > 0:
        if "orography" not in ds:
            raise WriterError(path, "no orography: t2m cannot be height-corrected", "t2m")
        oro = weights.apply(np.asarray(ds["orography"].transpose("lat", "lon").values))
        known = np.isfinite(sites.elevation)
        # unknown elevation: the site sits on the model surface (no correction)
        level = Stations(sites.ids, sites.lat, sites.lon, np.where(known, sites.elevation, oro))
        out["t2m"] = derive_at_stations({**raw, "orography": oro}, "t2m", level, lapse_rate)
    return out


def point_table(ds: xr.Dataset, sites: Stations, lapse_rate: float, path: Path) -> pd.DataFrame:
    values = interpolate(ds, sites, lapse_rate, path)
    inits = np.asarray(ds["init_time"].values, dtype="datetime64[ns]")
    leads = np.asarray(ds["lead_time"].values, dtype=np.int64)
    numbers = np.asarray(ds["member"].values) if "member" in ds.dims else np.array([-1])
    grid = np.meshgrid(
        np.arange(inits.size),
        np.arange(numbers.size),
        np.arange(leads.size),
        np.arange(len(sites)),
        indexing="ij",
    )
    i, m, j, s = (g.ravel() for g in grid)
    frame = pd.DataFrame(
        {
            "site_id": sites.ids[s],
            "lat": sites.lat[s],
            "lon": sites.lon[s],
            "elevation": sites.elevation[s],
            "init_time": inits[i],
            **({"member": numbers[m].astype(np.int64)} if "member" in ds.dims else {}),
            "lead_time": leads[j],
            "valid_time": inits[i] + leads[j].astype("timedelta64[h]"),
        }
    )
    for name, cube in values.items():
        frame[name] = cube.ravel()
    return frame


def table_to_dataset(frame: pd.DataFrame) -> xr.Dataset:
    """A point table back to (init_time, [member,] lead_time, site) arrays."""
    index = ["init_time", *(["member"] if "member" in frame.columns else []), "lead_time"]
    index.append("site_id")
    skip = {*index, "lat", "lon", "elevation", "valid_time"}
    names = [c for c in frame.columns if c not in skip]
    ds = xr.Dataset.from_dataframe(frame.set_index(index)[names])
    return ds.rename({"site_id": "site"})


class PointsWriter:
    suffix: str
    packing_bits: int | None = None  # float64 written in full (CSV: shortest exact repr)

    def __init__(
        self,
        sites: pd.DataFrame | Path | str | None = None,
        fmt: Literal["csv", "parquet"] = "csv",
        lapse_rate: float = DEFAULT_LAPSE_RATE,
    ) -> None:
        if fmt not in ("csv", "parquet"):
            raise WriterError("points writer", f"unknown point format {fmt!r} (csv, parquet)")
        self.fmt = fmt
        self.name = f"points_{fmt}"
        self.suffix = ".csv" if fmt == "csv" else ".parquet"
        self.lapse_rate = lapse_rate
        self.sites = None if sites is None else load_sites(sites)

    def table(self, ds: xr.Dataset, path: Path) -> pd.DataFrame:
        if self.sites is None:
            raise WriterError(path, f"{self.name} needs a site list (sites=...)")
        return point_table(ds, self.sites, self.lapse_rate, path)

    def write(self, ds: xr.Dataset, path: Path) -> Path:
        path = Path(path)
        frame = self.table(ds, path)
        with atomic_target(path) as tmp:
            if self.fmt == "csv":
                frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S")
            else:
                frame.to_parquet(tmp, index=False)
        return path

    def read_table(self, path: Path) -> pd.DataFrame:
        if self.fmt == "csv":
            frame = pd.read_csv(path, dtype={"site_id": str})
            for col in ("init_time", "valid_time"):
                frame[col] = pd.to_datetime(frame[col]).astype("datetime64[ns]")
            return frame
        return pd.read_parquet(path)

    def read(self, path: Path) -> xr.Dataset:
        return table_to_dataset(self.read_table(path))

    def expected(self, ds: xr.Dataset, path: Path) -> xr.Dataset:
        """What :meth:`read` gives back for ``ds``: the interpolated point series."""
        return table_to_dataset(self.table(ds, path))
