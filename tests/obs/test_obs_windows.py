"""Temporal alignment (stratocast.obs.windows) on hand-built edge cases."""

from __future__ import annotations

import pandas as pd
import pytest

from stratocast.obs.windows import WindowError, assign_windows

T = pd.Timestamp("2024-01-01T12:00Z")
H = pd.Timedelta(hours=1)


def _obs(rows: list[tuple[str, str, pd.Timestamp, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["station_id", "variable", "time", "value"])
    df["time"] = df["time"].astype("datetime64[us, UTC]")  # the store's resolution
    df["source"] = "test"
    return df


def _windows(out: pd.DataFrame) -> dict[float, pd.Timestamp]:
    return dict(zip(out["value"], out["analysis_time"], strict=True))


def test_right_closed_bounds_go_to_the_earlier_window() -> None:
    obs = _obs(
        [
            ("A", "t2m", T - 3 * H, 1.0),  # exactly t - 3h: the window ending at t - 3h
            ("A", "t2m", T - 3 * H + pd.Timedelta(seconds=1), 2.0),  # just inside (t-3h, t]
            ("A", "t2m", T, 3.0),  # exactly t: window t
            ("A", "t2m", T + pd.Timedelta(microseconds=1), 4.0),  # just after t: window t+3h
        ]
    )
    out = assign_windows(obs, [T - 3 * H, T, T + 3 * H])
    assert _windows(out) == {1.0: T - 3 * H, 2.0: T, 3.0: T, 4.0: T + 3 * H}
    row = out[out["value"] == 3.0].iloc[0]
    assert (row["window_start"], row["window_end"], row["closed"]) == (T - 3 * H, T, "right")


def test_left_closed_bounds() -> None:
    obs = _obs([("A", "t2m", T - 3 * H, 1.0), ("A", "t2m", T, 2.0)])
    out = assign_windows(obs, [T, T + 3 * H], closed="left")
    # [t-3h, t): t-3h is in window t; t itself only in the next window [t, t+3h)
    assert _windows(out) == {1.0: T, 2.0: T + 3 * H}
    assert set(out["closed"]) == {"left"}


def test_outside_every_window_is_not_selected_and_columns_are_kept() -> None:
    obs = _obs([("A", "t2m", T - 5 * H, 1.0), ("A", "msl", T - H, 101000.0)])
    out = assign_windows(obs, [T])
    assert list(out["value"]) == [101000.0]
    assert out["source"].tolist() == ["test"]
    assert str(out["window_start"].dt.tz) == "UTC"


def test_configurable_width_and_overlapping_windows() -> None:
    obs = _obs([("A", "t2m", T - 2 * H, 1.0)])
    out = assign_windows(obs, [T - H, T], width="6h")
    # windows (t-7h, t-1h] and (t-6h, t] overlap: the observation is in both
    assert list(out["analysis_time"]) == [T - H, T]
    assert list(out["window_start"]) == [T - 7 * H, T - 6 * H]


def test_latest_per_window_station_variable() -> None:
    obs = _obs(
        [
            ("A", "t2m", T - 2 * H, 1.0),
            ("A", "t2m", T - H, 2.0),
            ("A", "msl", T - 2 * H, 3.0),
            ("B", "t2m", T - 2.5 * H, 4.0),
            ("A", "t2m", T - H, 5.0),  # same time as 2.0, later row (a correction): wins
        ]
    )
    out = assign_windows(obs, [T], select="latest")
    assert sorted(out["value"]) == [3.0, 4.0, 5.0]
    assert len(out) == 3


def test_all_keeps_every_observation_in_time_order() -> None:
    obs = _obs([("A", "t2m", T - H, 2.0), ("A", "t2m", T - 2 * H, 1.0)])
    out = assign_windows(obs, [T], select="all")
    assert list(out["value"]) == [1.0, 2.0]


def test_nearest_with_centred_windows() -> None:
    obs = _obs(
        [
            ("A", "t2m", T - H, 1.0),
            ("A", "t2m", T + pd.Timedelta(minutes=30), 2.0),  # nearest to t
            ("A", "t2m", T + H, 3.0),
        ]
    )
    # windows centred on t: (t - 1.5h, t + 1.5h]
    out = assign_windows(obs, [T], width="3h", offset="90min", select="nearest")
    assert list(out["value"]) == [2.0]
    assert out["window_start"].iloc[0] == T - 1.5 * H
    assert out["window_end"].iloc[0] == T + 1.5 * H
    # ending at t, nearest is the latest
    out = assign_windows(obs, [T], select="nearest")
    assert list(out["value"]) == [1.0]


def test_empty_observations() -> None:
    out = assign_windows(_obs([]), [T])
    assert out.empty
    assert {"window_start", "window_end", "closed", "analysis_time"} <= set(out.columns)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"closed": "both"}, "closed must be one of"),
        ({"select": "first"}, "select must be one of"),
        ({"width": "0h"}, "width must be positive"),
        ({"analysis_times": [pd.Timestamp("2024-01-01T12:00")]}, "timezone-aware"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"analysis_times": [T], **kwargs}
    with pytest.raises(WindowError, match=match):
        assign_windows(_obs([("A", "t2m", T, 1.0)]), **args)  # type: ignore[arg-type]


def test_naive_observation_times_raise() -> None:
    obs = _obs([("A", "t2m", T, 1.0)])
    obs["time"] = obs["time"].dt.tz_localize(None)
    with pytest.raises(WindowError, match="'time' must be timezone-aware"):
        assign_windows(obs, [T])
    with pytest.raises(WindowError, match="lack column"):
        assign_windows(obs.drop(columns="variable"), [T])
