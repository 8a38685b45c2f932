"""Point series: bilinear interpolation to sites, and t2m corrected to the site elevation by
the verification stage's own code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stratocast.errors import StratocastError
from stratocast.infer.writers.points_writer import DEFAULT_LAPSE_RATE, PointsWriter
from stratocast.testing.writers import synthetic_forecast
from stratocast.verify.config import VerifyConfig

SITES = pd.DataFrame(
    {
        "site_id": ["hill", "valley", "unknown"],
        "lat": [45.25, 52.5, 50.0],
        "lon": [3.3, -4.0, 10.0],
        "elevation": [1100.0, 100.0, np.nan],
    }
)


def test_bilinear_and_lapse_rate(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=2, channels=("t2m", "u10"))
    lat2, lon2 = np.meshgrid(ds["lat"].values, ds["lon"].values, indexing="ij")
    # a field linear in lat and lon: bilinear interpolation reproduces it exactly
    ds["u10"][:] = (2.0 * lat2 - 0.5 * lon2).astype(np.float32)
    ds["t2m"][:] = np.float32(280.0)
    ds["orography"][:] = np.float32(100.0)
    writer = PointsWriter(sites=SITES, fmt="parquet")
    table = writer.read_table(writer.write(ds, tmp_path / "p.parquet"))
    first = table[table["lead_time"] == 0].set_index("site_id")
    np.testing.assert_allclose(first["u10"], 2.0 * SITES["lat"] - 0.5 * SITES["lon"], atol=1e-4)
    # 1000 m above the model surface: 6.5 K colder; unknown elevation: uncorrected
    assert VerifyConfig().lapse_rate == DEFAULT_LAPSE_RATE
    np.testing.assert_allclose(first.loc["hill", "t2m"], 280.0 - 6.5, atol=1e-4)
    np.testing.assert_allclose(first.loc["valley", "t2m"], 280.0, atol=1e-4)
    np.testing.assert_allclose(first.loc["unknown", "t2m"], 280.0, atol=1e-4)
    assert (table["valid_time"] - table["init_time"]).dt.total_seconds().tolist()[-1] == 6 * 3600


def test_csv_columns_and_members(tmp_path: Path) -> None:
    ds = synthetic_forecast(n_init=1, n_lead=2, members=2).assign_coords(member=[3, 8])
    writer = PointsWriter(sites=SITES, fmt="csv")
    table = writer.read_table(writer.write(ds, tmp_path / "p.csv"))
    assert list(table.columns[:8]) == [
        "site_id",
        "lat",
        "lon",
        "elevation",
        "init_time",
        "member",
        "lead_time",
        "valid_time",
    ]
    assert sorted(table["member"].unique()) == [3, 8]
    assert len(table) == 3 * 2 * 2


def test_bad_site_list(tmp_path: Path) -> None:
    with pytest.raises(StratocastError, match="lacks column"):
        PointsWriter(sites=SITES.drop(columns="elevation"))
    with pytest.raises(StratocastError, match="repeat"):
        PointsWriter(sites=pd.concat([SITES, SITES]))
    ds = synthetic_forecast(channels=("t2m",)).drop_vars("orography")
    with pytest.raises(StratocastError, match="orography"):
        PointsWriter(sites=SITES).write(ds, tmp_path / "p.csv")
