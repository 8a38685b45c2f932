"""A correction replaces the report it corrects, end to end through ingest (real bulletins)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from stratocast.obs.accounting import SourceAccount, store_totals
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.qc import check_corrections
from stratocast.obs.sources.synop_tac import catalogue_from_wmo_csv
from stratocast.obs.store import (
    read_observations,
    read_quarantine,
    read_stored,
    read_superseded,
)

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


# --- corrections arriving in a later run than the report they correct -------------------
#
# Real wis2box bulletins, hand-decoded (AAXX 18001: day 18, 00 UTC, iw=1 → wind in m/s):
#   plain  15280 01/90 92032 11034 21040 37301 ...   dd=20 → 200°, ff=32 m/s, T −3.4 °C
#   CCA    15280 01/90 92034 11034 21040 37301 ...   ff=34 m/s: the correction
# P 37301 → station pressure 730.1 hPa. The other CCx repeat their original's values.
PLAIN_00 = [
    "A_SMRO01YRBK180000_C_EDZW_20230118000502_51936144.txt",
    "A_SMRO01YRBK180000_C_EDZW_20230118001801_51945941.txt",  # the resend
]
CCA_00 = "A_SMRO01YRBK180000CCA_C_EDZW_20230118004301_51967254.txt"
T00 = pd.Timestamp("2023-01-18T00:00", tz="UTC")


def _run(store: Path, names: list[str]) -> SourceAccount:
    paths = [str(WIS2BOX / n) for n in names]
    cfg = IngestConfig.model_validate({"sources": [{"name": "synop_tac", "paths": paths}]})
    acc = ingest(cfg, store, catalogue_from_wmo_csv(WIS2BOX / "station_list.csv"), False)
    acc.verify()
    a = acc.sources["synop_tac"]
    assert a.reports_read == a.reports_stored + a.reports_quarantined
    assert a.values_decoded == a.values_stored + a.values_quarantined
    _store_adds_up(store)
    return a


def _store_adds_up(store: Path) -> None:
    """The identities over all runs (accounting docstring) against the rows on disk."""
    t = store_totals(store)["synop_tac"]
    q = read_quarantine(store)
    assert t.values_stored - t.values_superseded_in_store == len(read_observations(store))
    assert t.values_superseded_in_store == len(read_superseded(store))
    assert t.values_quarantined == int(q["variable"].notna().sum())
    assert t.values_decoded == t.values_stored + t.values_quarantined


def _at(df: pd.DataFrame, station: str, t: pd.Timestamp) -> dict[str, float]:
    rows = df[(df["station_id"] == station) & (df["time"] == t)]
    return dict(zip(rows["variable"], rows["value"], strict=True))


def test_later_correction_retracts_the_stored_original(tmp_path: Path) -> None:
    store = tmp_path / "store"
    plain = sorted(p.name for p in WIS2BOX.glob("*.txt") if "CC" not in p.name)
    corrections = sorted(p.name for p in WIS2BOX.glob("*CC*.txt"))
    assert len(corrections) == 5 and PLAIN_00[0] in plain and CCA_00 in corrections

    run1 = _run(store, plain)
    assert run1.values_superseded_in_store == 0
    before = read_observations(store)
    assert _at(before, "15280", T00)["ws10"] == 32.0
    corrected = {("15108", "2023-01-17T12"), ("15280", "2023-01-17T12")}
    corrected |= {("15090", "2023-01-17T18"), ("15280", "2023-01-17T18")}
    corrected |= {("15280", "2023-01-18T00")}
    at = before["time"].dt.strftime("%Y-%m-%dT%H")
    originals = before[[(s, t) in corrected for s, t in zip(before["station_id"], at, strict=True)]]
    assert originals["report_id"].nunique() == 5

    run2 = _run(store, corrections)
    # every value of the five stored originals moved out; none of the corrections is a
    # "duplicate" of the original it replaces, though four of them repeat its values
    assert run2.values_superseded_in_store == len(originals)
    assert run2.reports_superseded_in_store == 5
    assert run2.reports_stored == 5 and run2.values_quarantined == 0
    after = read_observations(store)
    assert len(after) == len(before)  # same station/times, one version each
    new = _at(after, "15280", T00)
    assert new["ws10"] == 34.0 and new["wd10"] == 200.0
    assert new["t2m"] == pytest.approx(273.15 - 3.4) and new["sp"] == pytest.approx(73010.0)
    assert new["u10"] == pytest.approx(-34 * math.sin(math.radians(200)))
    assert new["v10"] == pytest.approx(-34 * math.cos(math.radians(200)))
    rows = after[(after["station_id"] == "15280") & (after["time"] == T00)]
    assert set(rows["report_id"]) == {f"{CCA_00}:5:CCA"}
    assert _at(after, "15108", pd.Timestamp("2023-01-17T12:00", tz="UTC"))["t2m"] == (
        pytest.approx(270.35)  # 11028: −2.8 °C
    )
    assert not after["report_id"].isin(originals["report_id"]).any()

    gone = read_superseded(store)
    assert len(gone) == len(originals) and set(gone["check"]) == {"superseded"}
    old = gone[(gone["station_id"] == "15280") & (gone["time"] == T00)]
    assert dict(zip(old["variable"], old["value"], strict=True))["ws10"] == 32.0
    assert set(old["report_id"]) == {f"{PLAIN_00[0]}:67"}
    assert set(old["superseded_by"]) == {f"{CCA_00}:5:CCA"}
    assert (old["reason"] == f"replaced by correction {CCA_00}:5:CCA").all()

    # run 3 = run 2 again: nothing read, nothing moved back
    snapshot = (len(after), len(gone), len(read_quarantine(store)))
    run3 = _run(store, corrections)
    assert (run3.files_skipped, run3.reports_read, run3.values_superseded_in_store) == (5, 0, 0)
    again = read_observations(store)
    assert (len(again), len(read_superseded(store)), len(read_quarantine(store))) == snapshot
    assert _at(again, "15280", T00)["ws10"] == 34.0
    # and the originals again, by content: skipped too, the correction stays
    assert _run(store, plain).files_skipped == len(plain)
    assert _at(read_observations(store), "15280", T00)["ws10"] == 34.0


def test_late_original_does_not_overwrite_the_stored_correction(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = _run(store, [CCA_00])
    assert first.reports_stored == 1  # its original never arrived: it simply lands
    late = _run(store, PLAIN_00)
    assert late.values_superseded_in_store == 0 and len(read_superseded(store)) == 0
    kept = read_observations(store)
    assert _at(kept, "15280", T00)["ws10"] == 34.0
    rows = kept[(kept["station_id"] == "15280") & (kept["time"] == T00)]
    assert set(rows["report_id"]) == {f"{CCA_00}:5:CCA"}
    q = read_quarantine(store)
    q = q[(q["station_id"] == "15280") & (q["time"] == T00)]
    assert len(q) == 2 * len(rows)  # the bulletin and its resend, every value
    assert set(q["check"]) == {"corrected"}
    assert set(q["reason"]) == {f"replaced by correction {CCA_00}:5:CCA (stored)"}
    assert dict(zip(q["variable"], q["value"], strict=True))["ws10"] == 32.0
    assert late.values_quarantined_by_check["corrected"] == 2 * len(rows)


@pytest.mark.parametrize(
    "crash_in", ["stratocast.obs.store.remove_rows", "stratocast.obs.ingest.write_observations"]
)
def test_crash_while_retracting_leaves_one_copy_and_the_rerun_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_in: str
) -> None:
    store = tmp_path / "store"
    _run(store, [PLAIN_00[0]])
    n_before = len(read_observations(store))

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(crash_in, crash)
        with pytest.raises(KeyboardInterrupt):
            _run(store, [CCA_00])
    # superseded is written first: the original is there, and only there, for readers
    seen = read_observations(store)
    assert len(read_superseded(store)) == 9
    assert not ((seen["station_id"] == "15280") & (seen["time"] == T00)).any()
    assert len(seen) == n_before - 9

    rerun = _run(store, [CCA_00])  # no manifest for the CCA: the next run redoes it
    assert rerun.values_superseded_in_store == 9 and rerun.reports_superseded_in_store == 1
    obs, gone = read_stored(store, None, None, ["15280"], ["synop_tac"])
    physical = obs[obs["time"] == T00]
    assert set(physical["report_id"]) == {f"{CCA_00}:5:CCA"}  # the leftover was removed
    assert len(gone) == 9 and len(read_observations(store)) == n_before
    assert _at(read_observations(store), "15280", T00)["ws10"] == 34.0
