from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from verify_world import scipy_bilinear

from stratocast.verify.config import VerifyConfig
from stratocast.verify.matching import (
    Stations,
    VerifyInputError,
    bilinear_weights,
    check_forecast,
    forecast_at_stations,
    match_obs,
    prepare_obs,
)


def _stations(lat, lon, elev=None) -> Stations:
    lat = np.asarray(lat, dtype=float)
    return Stations(
        ids=np.array([f"S{i}" for i in range(lat.size)]),
        lat=lat,
        lon=np.mod(np.asarray(lon, dtype=float), 360.0),
        elevation=np.zeros(lat.size) if elev is None else np.asarray(elev, dtype=float),
    )


def test_bilinear_matches_scipy_including_seam():
    rng = np.random.default_rng(1)
    lat = np.linspace(-80.0, 80.0, 17)
    lon = np.arange(0.0, 360.0, 7.5)
    field = rng.standard_normal((3, lat.size, lon.size))
    plat = np.concatenate([rng.uniform(-80, 80, 50), [0.0, 45.3, -12.0, 80.0]])
    plon = np.concatenate([rng.uniform(-180, 360, 50), [359.9, 352.6, -0.4, 0.0]])
    got = bilinear_weights(lat, lon, plat, plon).apply(field)
    for k in range(field.shape[0]):
        np.testing.assert_allclose(
            got[k], scipy_bilinear(lat, lon, field[k], plat, plon), atol=1e-12
        )


def test_poles_clamp_on_global_grid_and_nan_outside_regional_grid():
    lat = np.arange(-87.5, 88.0, 5.0)
    lon = np.arange(0.0, 360.0, 5.0)
    field = np.random.default_rng(2).standard_normal((lat.size, lon.size))
    w = bilinear_weights(lat, lon, np.array([89.9, 87.5, -90.0]), np.array([12.5, 12.5, 200.0]))
    got = w.apply(field)
    assert got[0] == pytest.approx(got[1])  # beyond the last row = the last row
    assert got[2] == pytest.approx(field[0, 40])  # 200° E is column 40 of the first row
    regional_lat, regional_lon = np.arange(30.0, 60.1, 1.0), np.arange(350.0, 360.0, 1.0)
    w = bilinear_weights(
        regional_lat, regional_lon, np.array([70.0, 40.0, 40.0]), np.array([355.0, 10.0, 355.5])
    )
    got = w.apply(np.ones((regional_lat.size, regional_lon.size)))
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == pytest.approx(1.0)


def test_lapse_rate_hand_computed():
    lat, lon = np.array([0.0, 10.0]), np.arange(0.0, 360.0, 10.0)
    ds = xr.Dataset(
        {
            "t2m": (("init_time", "lead_time", "lat", "lon"), np.full((1, 1, 2, 36), 288.0)),
            "orography": (("lat", "lon"), np.full((2, 36), 500.0)),
        },
        coords={
            "init_time": [np.datetime64("2024-01-01")],
            "lead_time": [0],
            "lat": lat,
            "lon": lon,
        },
    )
    st = _stations([5.0, 5.0], [15.0, 15.0], elev=[1500.0, 0.0])
    w = bilinear_weights(lat, lon, st.lat, st.lon)
    t = forecast_at_stations(ds, w, st, ["t2m"], lapse_rate_k_per_km=6.5)["t2m"]
    # 1000 m above the model surface: 6.5 K colder; 500 m below: 3.25 K warmer.
    np.testing.assert_allclose(t[0, 0], [288.0 - 6.5, 288.0 + 3.25])
    t0 = forecast_at_stations(ds, w, st, ["t2m"], lapse_rate_k_per_km=0.0)["t2m"]
    np.testing.assert_allclose(t0[0, 0], [288.0, 288.0])


def test_ws10_is_speed_of_interpolated_components():
    lat, lon = np.array([0.0, 10.0]), np.arange(0.0, 360.0, 10.0)
    u = np.zeros((1, 1, 2, 36))
    v = np.zeros((1, 1, 2, 36))
    u[..., 0, :], u[..., 1, :] = 4.0, -4.0  # cancels halfway: speeds would not
    v[...] = 3.0
    dims = ("init_time", "lead_time", "lat", "lon")
    ds = xr.Dataset(
        {"u10": (dims, u), "v10": (dims, v)},
        coords={
            "init_time": [np.datetime64("2024-01-01")],
            "lead_time": [0],
            "lat": lat,
            "lon": lon,
        },
    )
    st = _stations([5.0], [3.0])
    ws = forecast_at_stations(ds, bilinear_weights(lat, lon, st.lat, st.lon), st, ["ws10"], 6.5)
    np.testing.assert_allclose(ws["ws10"][0, 0], [3.0])


def _obs(rows):
    df = pd.DataFrame(rows, columns=["station_id", "time", "variable", "value"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df.assign(
        source="x", lat=0.0, lon=0.0, elevation=0.0, report_id=[f"r{i}" for i in range(len(df))]
    )


def test_match_obs_nearest_within_tolerance():
    obs = _obs(
        [
            ("S0", "2024-01-01T11:40", "t2m", 1.0),
            ("S0", "2024-01-01T12:10", "t2m", 2.0),  # nearest to 12:00
            ("S1", "2024-01-01T12:31", "t2m", 3.0),  # outside ±30 min
            ("S1", "2024-01-01T18:29", "t2m", 4.0),  # inside for 18:00
            ("S1", "2024-01-01T18:29", "t2m", 6.0),  # same time: averaged
        ]
    )
    rows = prepare_obs(obs, ["t2m"], ["S0", "S1"], "test obs")["t2m"]
    st = _stations([0.0, 0.0], [0.0, 0.0])
    targets = pd.DatetimeIndex(["2024-01-01T12:00", "2024-01-01T18:00"], tz="UTC")
    got = match_obs(rows, st, targets, pd.Timedelta(minutes=30))
    np.testing.assert_array_equal(got, [[2.0, np.nan], [np.nan, 5.0]])


def test_ws10_derived_from_components_when_absent():
    obs = _obs([("S0", "2024-01-01T12:00", "u10", 3.0), ("S0", "2024-01-01T12:00", "v10", 4.0)])
    obs["report_id"] = "same"
    rows = prepare_obs(obs, ["ws10"], ["S0"], "test obs")["ws10"]
    assert rows["value"].tolist() == [5.0]


def test_missing_forecast_variable_is_named():
    ds = xr.Dataset(
        {"t2m": (("init_time", "lead_time", "lat", "lon"), np.zeros((1, 1, 2, 2)))},
        coords={
            "init_time": [np.datetime64("2024-01-01")],
            "lead_time": [0],
            "lat": [0.0, 1.0],
            "lon": [0.0, 1.0],
        },
    )
    with pytest.raises(VerifyInputError, match=r"forecast 'modelB' lacks variable 'orography'"):
        check_forecast("modelB", ds, ["t2m"], 6.5)
    with pytest.raises(VerifyInputError, match=r"'u10' \(needed for ws10\)"):
        check_forecast("modelB", ds, ["ws10"], 0.0)


def test_config_rejects_unknown_keys_and_variables():
    with pytest.raises(ValueError, match="extra"):
        VerifyConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="cannot verify"):
        VerifyConfig(variables=["z500"])
