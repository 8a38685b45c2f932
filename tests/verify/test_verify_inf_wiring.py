"""±inf in observations is refused where observations enter verification (the store table
through ``prepare_obs``, a WeatherReal file through its reader), and the ensemble and
significance options reach the accumulators that use them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stratocast.verify.io_weatherreal import read_weatherreal, write_weatherreal
from stratocast.verify.matching import prepare_obs
from stratocast.verify.metrics import ScoreAccumulator
from stratocast.verify.metrics_base import NonFiniteError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
FRANCE = sorted((DATA / "isd_lite").glob("07*-2017.gz"))
HISTORY = DATA / "stations" / "isd-history.csv"
needs_data = pytest.mark.skipif(
    not FRANCE or not HISTORY.is_file(), reason="real ISD-Lite sample data absent"
)


@pytest.fixture(scope="module")
def isd_obs() -> pd.DataFrame:
    """Real ISD-Lite reports (two French stations, January 2017) as the store's long table."""
    from stratocast.obs.base import Report
    from stratocast.obs.sources.isd_lite import IsdLiteSource

    source = IsdLiteSource(stations=HISTORY)
    rows = []
    for path in FRANCE[:2]:
        for rec in source.read(path):
            if isinstance(rec, Report) and rec.time.month == 1:
                for var, value in rec.values.items():
                    rows.append(
                        (rec.station_id, rec.lat, rec.lon, rec.elevation, rec.time, var, value)
                    )
    cols = ["station_id", "lat", "lon", "elevation", "time", "variable", "value"]
    df = pd.DataFrame(rows, columns=cols)
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df


@needs_data
def test_prepare_obs_refuses_inf_by_station_and_time(isd_obs: pd.DataFrame) -> None:
    stations = sorted(isd_obs["station_id"].unique())
    ok = prepare_obs(isd_obs, ["t2m"], stations, "verification observations")
    assert len(ok["t2m"]) > 500
    bad = isd_obs.copy()
    k = int(np.flatnonzero(bad["variable"].to_numpy() == "t2m")[7])
    bad.loc[k, "value"] = np.inf
    with pytest.raises(NonFiniteError, match="verification observations of t2m") as err:
        prepare_obs(bad, ["t2m"], stations, "verification observations")
    assert repr(bad.loc[k, "station_id"]) in str(err.value)
    # NaN stays a missing value: dropped, not an error
    bad.loc[k, "value"] = np.nan
    assert len(prepare_obs(bad, ["t2m"], stations, "x")["t2m"]) == len(ok["t2m"]) - 1


@needs_data
def test_weatherreal_reader_refuses_inf(isd_obs: pd.DataFrame, tmp_path: Path) -> None:
    path = write_weatherreal(isd_obs, tmp_path / "wr.nc")
    ds = xr.load_dataset(path)
    name = next(n for n in ds.data_vars if ds[n].dims == ("station", "time") and n.startswith("t"))
    values = ds[name].values.astype(np.float64)
    i, j = (int(a[0]) for a in np.nonzero(np.isfinite(values)))
    values[i, j] = np.inf
    ds[name] = (ds[name].dims, values.astype(ds[name].dtype), ds[name].attrs)
    for v in ds.variables.values():
        v.encoding.pop("_FillValue", None)
    bad = tmp_path / "wr-inf.nc"
    ds.to_netcdf(bad)
    start, end = pd.Timestamp("2017-01-01", tz="UTC"), pd.Timestamp("2017-02-01", tz="UTC")
    assert len(read_weatherreal(path, start=start, end=end)) > 0
    with pytest.raises(NonFiniteError, match=rf"{bad}: {name} holds 1 infinite"):
        read_weatherreal(bad, start=start, end=end)


def test_missing_members_option_reaches_the_ensemble_scores() -> None:
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(4, 2, 3))
    members = obs[..., None] + rng.normal(size=(4, 2, 3, 5))
    members[0, 0, 0, 2] = np.nan  # one member missing in one pair
    valid = np.array(
        [
            [np.datetime64("2020-01-01T00") + np.timedelta64(6 * (i + j), "h") for j in range(2)]
            for i in range(4)
        ]
    )
    results = {}
    for policy in ("drop_pair", "finite"):
        acc = ScoreAccumulator(
            ["A"], ["t2m"], np.array([6, 12]), np.array(["a", "b", "c"]), missing_members=policy
        )  # type: ignore[arg-type]
        mean = np.nanmean(members, axis=-1) if policy == "finite" else members.mean(axis=-1)
        acc.update("t2m", obs, {"A": mean}, valid, ensembles={"A": members})
        results[policy] = acc.sums["t2m"].ensemble["A"]
    assert results["drop_pair"].missing_members == "drop_pair"
    assert results["finite"].missing_members == "finite"
    assert int(results["finite"].n.sum()) == int(results["drop_pair"].n.sum()) + 1
