"""Spatial buddy check on a synthetic network whose truth is known by construction.

The field is smooth (a gentle horizontal gradient, a 6.5 K/km lapse rate for temperature and
0.3 K / 30 Pa of noise), and the gross errors are injected at chosen stations: the check must
flag those and nothing else. The reference for "which values are wrong" is the injection, not
the check's own output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from stratocast.obs.buddy import BuddyConfig, buddy_check
from stratocast.obs.qc import QCConfig, run_qc

T0 = pd.Timestamp("2024-01-01T12:00", tz="UTC")
T_ERRORS = {7: 10.0, 40: -12.0, 99: 9.0}  # station index -> injected error (K)
P_ERRORS = {13: 1500.0, 77: -2000.0}  # Pa


def _network(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 150
    lat = rng.uniform(45.0, 55.0, n)
    lon = rng.uniform(0.0, 10.0, n)
    elev = rng.uniform(0.0, 1500.0, n)
    t = 290.0 - 0.5 * (lat - 45.0) + 0.2 * lon - 0.0065 * elev + rng.normal(0, 0.3, n)
    p = 101000.0 + 100.0 * lon - 80.0 * (lat - 45.0) + rng.normal(0, 30.0, n)
    for k, e in T_ERRORS.items():
        t[k] += e
    for k, e in P_ERRORS.items():
        p[k] += e
    # two isolated stations far north, with absurd-but-in-range values: no buddies, no verdict
    lat = np.append(lat, [70.0, 70.3])
    lon = np.append(lon, [40.0, 40.5])
    elev = np.append(elev, [10.0, 10.0])
    t = np.append(t, [250.0, 310.0])
    p = np.append(p, [95000.0, 106000.0])
    m = len(lat)
    # times jitter like METARs (:50, :56) around the hour; the check bins them together
    times = T0 + pd.to_timedelta(rng.choice([-10, -4, 0], m), unit="min")
    station = [f"S{i:03d}" for i in range(m)]
    rows = []
    for var, vals in (("t2m", t), ("msl", p)):
        rows.append(
            pd.DataFrame(
                {
                    "station_id": station,
                    "lat": lat,
                    "lon": lon,
                    "elevation": elev,
                    "time": times,
                    "variable": var,
                    "value": vals,
                }
            )
        )
    df = pd.concat(rows, ignore_index=True)
    df["report_key"] = np.tile(np.arange(m), 2)
    df["check"] = None
    df["reason"] = None
    return df


def _flagged(df: pd.DataFrame, reasons: pd.Series, var: str) -> set[int]:
    rows = df.loc[reasons.index]
    return set(rows.loc[rows["variable"] == var, "report_key"].tolist())


def test_flags_exactly_the_injected_errors() -> None:
    df = _network()
    reasons = buddy_check(df, BuddyConfig())
    assert _flagged(df, reasons, "t2m") == set(T_ERRORS)
    assert _flagged(df, reasons, "msl") == set(P_ERRORS)
    r = reasons[(df["variable"] == "t2m") & (df["report_key"] == 7)].iloc[0]
    assert "buddies within 200 km" in r and "threshold" in r and "median" in r


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_other_networks(seed: int) -> None:
    df = _network(seed)
    reasons = buddy_check(df, BuddyConfig())
    assert _flagged(df, reasons, "t2m") == set(T_ERRORS)
    assert _flagged(df, reasons, "msl") == set(P_ERRORS)


def test_mountain_station_is_judged_at_sea_level() -> None:
    # a lowland network plus one station at 3000 m, 19.5 K colder as the lapse rate says
    df = _network()
    t = df["variable"] == "t2m"
    df.loc[t, "value"] += 0.0065 * df.loc[t, "elevation"]
    df.loc[t, "elevation"] = 0.0
    mountain = t & (df["report_key"] == 0)
    df.loc[mountain, "elevation"] = 3000.0
    df.loc[mountain, "value"] -= 0.0065 * 3000.0
    assert _flagged(df, buddy_check(df, BuddyConfig()), "t2m") == set(T_ERRORS)
    flat = buddy_check(df, BuddyConfig(lapse_rate=0.0))
    assert _flagged(df, flat, "t2m") == set(T_ERRORS) | {0}


def test_isolated_and_sparse_are_not_judged() -> None:
    df = _network()
    reasons = buddy_check(df, BuddyConfig())
    assert not {150, 151} & (_flagged(df, reasons, "t2m") | _flagged(df, reasons, "msl"))
    few = df[df["report_key"].isin([0, 1, 2, 150, 151])]
    assert buddy_check(few, BuddyConfig()).empty


def test_already_flagged_rows_are_neither_judged_nor_buddies() -> None:
    df = _network()
    df.loc[(df["variable"] == "t2m") & (df["report_key"] == 7), "check"] = "range"
    reasons = buddy_check(df, BuddyConfig())
    assert _flagged(df, reasons, "t2m") == set(T_ERRORS) - {7}


def test_run_qc_flag_off_by_default_and_on_when_asked() -> None:
    df = _network()
    off = run_qc(df, QCConfig())
    assert off["check"].isna().all()
    on = run_qc(df, QCConfig(buddy=True))
    bad = on[on["check"] == "buddy"]
    assert set(zip(bad["variable"], bad["report_key"], strict=True)) == {
        *(("t2m", k) for k in T_ERRORS),
        *(("msl", k) for k in P_ERRORS),
    }
    assert bad["reason"].str.contains("buddies").all()


# --- reference: titanlib (MET Norway), the field's standard implementation ---------------


def _titanlib_flags(df: pd.DataFrame, var: str, titanlib: Any, cfg: BuddyConfig) -> set[int]:
    rows = df[df["variable"] == var].reset_index(drop=True)
    n = len(rows)
    points = titanlib.Points(
        rows["lat"].to_numpy(), rows["lon"].to_numpy(), rows["elevation"].to_numpy()
    )
    flags = titanlib.buddy_check(
        points,
        rows["value"].to_numpy(),
        np.full(n, cfg.radius_km * 1000.0),
        np.full(n, cfg.min_buddies, dtype=np.int32),
        cfg.threshold,
        1.0e6,  # max elevation difference (m): effectively none, as in ours
        -cfg.lapse_rate if var == "t2m" else 0.0,
        cfg.std_floor[var],
        5,  # iterations: mean/std need them to stop a gross error masking its neighbours
    )
    return set(rows.loc[np.asarray(flags) == 1, "report_key"].tolist())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_titanlib(seed: int) -> None:
    titanlib = pytest.importorskip("titanlib")
    df = _network(seed)
    cfg = BuddyConfig()
    reasons = buddy_check(df, cfg)
    for var in ("t2m", "msl"):
        assert _flagged(df, reasons, var) == _titanlib_flags(df, var, titanlib, cfg)
