"""QC on a synthetic table with injected range, spike, step, duplicate and consistency errors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stratocast.obs.qc import QCConfig, correction_rank, run_qc, superseded_in_store


def _table(rows: list[tuple[str, str, str, float, int]]) -> pd.DataFrame:
    st, t, var, val, key = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "station_id": list(st),
            "time": pd.to_datetime(list(t), utc=True).astype("datetime64[us, UTC]"),
            "variable": list(var),
            "value": np.array(val, dtype=float),
            "report_key": list(key),
            "check": pd.Series([None] * len(st), dtype=object),
            "reason": pd.Series([None] * len(st), dtype=object),
        }
    )


def _series(station: str, values: list[float], start: int = 0) -> list:
    return [
        (station, f"2024-01-01T{h:02d}:00", "t2m", v, start + i)
        for i, (h, v) in enumerate(zip(range(0, 3 * len(values), 3), values, strict=True))
    ]


def test_injected_errors_are_caught() -> None:
    rows = _series("A", [280.0, 281.0, 295.0, 281.5, 282.0])  # spike at 06 h (+14, -13.5 K)
    rows += _series("B", [280.0, 280.5, 297.0, 297.5], start=100)  # step of +16.5 K at 06 h
    rows += [("C", "2024-01-01T00:00", "t2m", 400.0, 200)]  # out of range
    rows += [("D", "2024-01-01T00:00", "msl", 101000.0, 300)] * 2  # exact duplicate
    rows += [
        ("E", "2024-01-01T00:00", "t2m", 280.0, 400),
        ("E", "2024-01-01T00:00", "d2m", 285.0, 400),  # dewpoint above temperature
        ("E", "2024-01-01T00:00", "rh2m", 1.4, 400),  # derived from the bad dewpoint (+range)
        ("E", "2024-01-01T00:00", "ws10", 0.0, 400),
        ("E", "2024-01-01T00:00", "wd10", 270.0, 400),  # calm with a direction
        ("E", "2024-01-01T00:00", "u10", 0.0, 400),  # derived from the bad direction
    ]
    out = run_qc(_table(rows), QCConfig())
    flagged = out[out["check"].notna()]
    got = {(r.station_id, str(r.time.hour), r.variable): r.check for r in flagged.itertuples()}
    assert got == {
        ("A", "6", "t2m"): "spike",
        ("B", "6", "t2m"): "step",
        ("C", "0", "t2m"): "range",
        ("D", "0", "msl"): "duplicate",
        ("E", "0", "d2m"): "consistency",
        ("E", "0", "rh2m"): "range",  # first failing check wins
        ("E", "0", "wd10"): "consistency",
        ("E", "0", "u10"): "derived",
    }
    assert out["reason"].notna().sum() == len(flagged)
    assert "400" in out.loc[out["station_id"] == "C", "reason"].iloc[0]
    assert (out["station_id"] == "D").sum() == 2  # one kept, one quarantined


def test_context_rows_count_but_are_not_judged() -> None:
    new = _table([("A", "2024-01-01T06:00", "t2m", 300.0, 0)])
    context = _table(
        [("A", "2024-01-01T03:00", "t2m", 280.0, 0), ("A", "2024-01-01T06:00", "msl", 1e5, 1)]
    )
    out = run_qc(new, QCConfig(), context)
    assert out["check"].tolist() == ["step"]  # +20 K after the stored 03 h value
    dup = run_qc(_table([("A", "2024-01-01T06:00", "msl", 1e5, 0)]), QCConfig(), context)
    assert dup["check"].tolist() == ["duplicate"]


def test_clean_series_passes_and_gaps_reset() -> None:
    rows = _series("A", [280.0, 283.0, 286.0, 284.0])
    rows += [("A", "2024-01-03T00:00", "t2m", 300.0, 99)]  # +16 K but 2 days later: no step
    out = run_qc(_table(rows), QCConfig())
    assert out["check"].isna().all()


def _reports(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    """(source, station, msl value, report id) at one time."""
    src, st, val, rid = zip(*rows, strict=True)
    at = "2024-01-01T12:00"
    df = _table([(s, at, "msl", v, i) for i, (s, v) in enumerate(zip(st, val, strict=True))])
    return df.assign(source=list(src), report_id=list(rid))


def test_corrections_against_the_store() -> None:
    stored = _reports(
        [
            ("synop_tac", "S1", 101000.0, "a.txt:3"),  # original: a new CCA replaces it
            ("synop_tac", "S2", 101000.0, "b.txt:4:CCB"),  # a stored CCB outranks new rows
            ("metar", "S1", 101010.0, "m.txt:1"),  # another source: untouched
        ]
    )
    new = _reports(
        [
            ("synop_tac", "S1", 101000.0, "c.txt:3:CCA"),  # same value: still a correction
            ("synop_tac", "S2", 100900.0, "d.txt:4:CCA"),  # late CCA after the CCB
            ("synop_tac", "S2", 100900.0, "e.txt:4"),  # late original
        ]
    )
    assert superseded_in_store(new, stored).tolist() == ["c.txt:3:CCA", None, None]
    remaining = stored.iloc[1:]  # what ingest passes on once it retracted the first row
    out = run_qc(new, QCConfig(), remaining)
    assert out["check"].tolist() == [None, "corrected", "corrected"]
    assert out["reason"].iloc[1] == "replaced by correction b.txt:4:CCB (stored)"


def test_correction_ranks_and_sources_within_a_run() -> None:
    assert correction_rank(pd.Series(["x:1", "x:1:CCA", "x:1:CCC", "x:1:AAB"])).tolist() == [
        0.0,
        1.0,
        3.0,
        2.0,
    ]
    df = _reports(
        [("metar", "S1", 101000.0, "m.txt:1"), ("synop_tac", "S1", 101100.0, "s.txt:1:CCA")]
    )
    out = run_qc(df, QCConfig())
    assert out["check"].isna().all()  # a SYNOP correction does not replace a METAR
