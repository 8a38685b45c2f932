"""QC's ``time`` check: a report dated centuries away (one flipped bit of a BUFR year) or in
the future is quarantined whole, with the time in the reason; real dates pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from stratocast.obs.qc import QCConfig, run_qc
from stratocast.obs.sources.synop_bufr import SynopBufrSource
from stratocast.obs.table import collect

DWD = (
    Path(__file__).parents[2] / ".." / "shared" / "data" / "bufr" / "dwd_synop_20210516T12.bufr"
).resolve()


@pytest.mark.skipif(not DWD.is_file(), reason=f"real DWD SYNOP BUFR sample absent ({DWD})")
def test_far_and_future_times_are_quarantined_real_ones_pass() -> None:
    values = collect(SynopBufrSource().read(DWD), "synop_bufr").values
    assert len(values) > 1000
    clean = run_qc(values, QCConfig())
    assert not (clean["check"] == "time").any()  # 2021 is a plausible date

    keys = values["report_key"].unique()
    moved = values.copy()
    far, future = keys[0], keys[1]
    moved.loc[moved["report_key"] == far, "time"] = pd.Timestamp("4067-05-16T12:00", tz="UTC")
    soon = pd.Timestamp(datetime.now(UTC) + timedelta(days=3)).floor("h")
    moved.loc[moved["report_key"] == future, "time"] = soon
    out = run_qc(moved, QCConfig())
    for key, year in ((far, "4067"), (future, str(soon.year))):
        # values the reader already flagged (e.g. a 32 m wind sensor) keep their first fault
        unflagged = values["check"].isna() & (values["report_key"] == key)
        rows = out[unflagged.to_numpy()]
        assert len(rows) and (rows["check"] == "time").all()
        assert rows["reason"].str.contains(f"time {year}-").all()
    others = out[~out["report_key"].isin([far, future])]
    assert not (others["check"] == "time").any()
    # the bound is config: a larger allowance lets the 3-day-ahead report through
    relaxed = run_qc(moved, QCConfig(max_future_hours=24 * 7))
    assert not (relaxed.loc[relaxed["report_key"] == future, "check"] == "time").any()
