"""Station-level derivations (hand-computed) and the streaming path end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from verify_world import World

from stratocast.cli.main import main
from stratocast.verify.io_weatherreal import write_weatherreal
from stratocast.verify.matching import (
    Stations,
    derive_at_stations,
    precip_from_accumulation,
    wind_direction,
    wrap_degrees,
)


def test_wind_direction_and_wrap_hand_values() -> None:
    u = np.array([0.0, 1.0, 0.0, -1.0, 0.0])
    v = np.array([-1.0, 0.0, 1.0, 0.0, 0.0])
    # from the north, from the west, from the south, from the east, calm
    np.testing.assert_allclose(wind_direction(u, v)[:4], [0.0, 270.0, 180.0, 90.0], atol=1e-12)
    assert np.isnan(wind_direction(u, v)[4])
    np.testing.assert_allclose(
        wrap_degrees(np.array([340.0, -340.0, 180.0, 10.0])), [-20, 20, -180, 10]
    )


def test_precipitation_from_accumulation() -> None:
    tp = np.array([[[0.0], [2.0], [5.0], [5.5]]])  # [init, lead 0/6/12/18, station]
    leads = np.array([0, 6, 12, 18])
    got = precip_from_accumulation(tp, leads, leads, 6)[0, :, 0]
    np.testing.assert_allclose(got, [np.nan, 2.0, 3.0, 0.5])
    got12 = precip_from_accumulation(tp[:, 1:], leads[1:], leads, 12)[0, :, 0]
    # lead 12 from 0 (not stored: zero by definition); 18 needs lead 6
    np.testing.assert_allclose(got12, [np.nan, np.nan, 5.0, 3.5])


def test_surface_pressure_hypsometric_hand_value() -> None:
    st = Stations(np.array(["A"]), np.array([0.0]), np.array([0.0]), np.array([1000.0]))
    raw = {"sp": np.array([100000.0]), "orography": np.array([0.0]), "t2m": np.array([280.0])}
    # 1000 m above the model surface at 280 K: p exp(-9.80665*1000/(287.05*280))
    got = derive_at_stations(raw, "sp", st, 6.5)
    assert got[0] == pytest.approx(100000.0 * np.exp(-9.80665 * 1000.0 / (287.05 * 280.0)))


def test_cli_forecast_obs_reference_form(world: World, tmp_path: Path, capsys) -> None:
    zarr = tmp_path / "fc.zarr"
    world.forecast.to_zarr(zarr, zarr_format=3, consolidated=False)
    nc = write_weatherreal(world.obs[world.obs["time"].dt.minute == 10], tmp_path / "wr.nc")
    out = tmp_path / "out"
    rc = main(
        [
            "verify",
            "--forecast",
            str(zarr),
            "--obs",
            str(nc),
            "--reference",
            "persistence",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert (out / "report.html").is_file() and (out / "scorecard.nc").is_file()
    assert "skipped d2m" in text and "skipped tp24h" in text
    # the truth forecast at its own observations: t2m RMSE ~ float32 rounding only
    assert "report:" in text
    rc = main(["verify", "--forecast", str(zarr), "--obs", str(tmp_path / "nope.nc")])
    assert rc == 2 and "observations not found" in capsys.readouterr().err
