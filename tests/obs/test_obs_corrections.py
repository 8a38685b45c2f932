"""A correction replaces the report it corrects, end to end through ingest (real bulletins)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.qc import check_corrections
from stratocast.obs.sources.synop_tac import catalogue_from_wmo_csv
from stratocast.obs.store import read_observations, read_quarantine

WIS2BOX = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "synop_tac" / "wis2box_data"
)
pytestmark = pytest.mark.skipif(not WIS2BOX.is_dir(), reason=f"{WIS2BOX} absent")


def test_cca_replaces_the_plain_reports_and_the_rest_stays(tmp_path: Path) -> None:
    cfg = IngestConfig.model_validate(
        {"sources": [{"name": "synop_tac", "paths": [str(WIS2BOX / "*.txt")]}]}
    )
    acc = ingest(
        cfg, tmp_path / "store", catalogue_from_wmo_csv(WIS2BOX / "station_list.csv"), False
    )
    src = acc.to_dict()["sources"]["synop_tac"]
    assert src["reports_read"] == src["reports_stored"] + src["reports_quarantined"]
    t = pd.Timestamp("2023-01-17T12:00", tz="UTC")
    kept = read_observations(tmp_path / "store", variables=["t2m"], stations=["15108"])
    kept = kept[kept["time"] == t]
    # 11028: sign digit 1 → −2.8 °C, in the CCA and in the two plain copies it corrects
    assert len(kept) == 1
    assert kept["value"].iloc[0] == pytest.approx(270.35)
    assert kept["report_id"].iloc[0].endswith(":CCA")
    q = read_quarantine(tmp_path / "store", variables=["t2m"])
    replaced = q[(q["station_id"] == "15108") & (q["check"] == "corrected")]
    assert len(replaced) == 2  # the bulletin and its resend, both superseded
    assert src["values_quarantined_by_check"]["corrected"] >= 2 * 5


def test_later_letter_wins_within_a_run() -> None:
    t = pd.Timestamp("2023-01-17T12:00", tz="UTC")
    df = pd.DataFrame(
        {
            "station_id": ["15108"] * 3 + ["15090"],
            "time": [t] * 4,
            "variable": ["msl"] * 4,
            "value": [101000.0, 101010.0, 101020.0, 100900.0],
            "report_id": ["a.txt:3", "b.txt:3:CCA", "c.txt:3:CCB", "a.txt:9"],
            "check": [None] * 4,
            "reason": [None] * 4,
        }
    )
    check_corrections(df)
    assert df["check"].tolist() == ["corrected", "corrected", None, None]
