"""Receipt times: ingest records when each file was received, a cycle reads what had arrived
by its cut-off, an inbox is ingested incrementally, and stores older than the column read.

Real code paths on real files: the world writes a small network, :func:`replay` fills an
inbox folder with its bulletins, and the real readers ingest them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import (
    OBS_SCHEMA,
    SUPERSEDED_SCHEMA,
    count_late,
    late_mask,
    read_observations,
    read_superseded,
)
from stratocast.testing.synthetic import synthetic_truth
from stratocast.world.arrivals import ArrivalConfig, Schedule, load_schedule
from stratocast.world.network import NetworkConfig, write_observations
from stratocast.world.replay import replay

T0 = pd.Timestamp("2000-01-01T00:00", tz="UTC")
FAR = pd.Timestamp("2000-02-01T00:00", tz="UTC")
NET = NetworkConfig(
    n_metar=50,
    n_synop=25,
    seed=7,
    gross_error_rate=0.05,
    arrivals=ArrivalConfig(late_fraction=0.3, correction_fraction=1.0),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("received") / "obs"
    write_observations(synthetic_truth(n_time=8, n_lat=32, n_lon=64), NET, out, progress=False)
    return out


@pytest.fixture(scope="module")
def schedule(world: Path) -> Schedule:
    return load_schedule(world)


@pytest.fixture(scope="module")
def catalogue(world: Path) -> StationCatalogue:
    return StationCatalogue.from_csv(world / "stations.csv")


def _cfg(inbox: Path, **kw: object) -> IngestConfig:
    return IngestConfig.model_validate(
        {
            "sources": [
                {"name": "metar", "paths": [str(inbox / "metar" / "*.txt")]},
                {"name": "synop_bufr", "paths": [str(inbox / "synop_bufr" / "*.bufr")]},
            ],
            **kw,
        }
    )


def _arrival_of(schedule: Schedule) -> dict[str, pd.Timestamp]:
    """Inbox file name -> scheduled arrival."""
    items = schedule.items
    return dict(zip(items["item"].str.rsplit("/", n=1).str[-1], items["arrival"], strict=True))


def _file_of(report_id: pd.Series) -> pd.Series:
    return report_id.str.split(":").str[0]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["source", "report_id", "variable"], ignore_index=True)


def test_inbox_twice_second_run_ingests_nothing(
    schedule: Schedule, catalogue: StationCatalogue, tmp_path: Path
) -> None:
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    sent = replay(schedule, inbox, T0 - pd.Timedelta(days=1), FAR)
    first = ingest(_cfg(inbox), store, catalogue, progress=False)
    n_ok = sum(a.files_ok for a in first.sources.values())
    assert n_ok == len(sent) and not first.file_errors
    before = _sorted(read_observations(store))
    again = ingest(_cfg(inbox), store, catalogue, progress=False)
    assert sum(a.files_ok for a in again.sources.values()) == 0
    assert sum(a.files_skipped for a in again.sources.values()) == len(sent)
    pd.testing.assert_frame_equal(_sorted(read_observations(store)), before)
    # received = mtime (the default): replay stamped each file with its arrival time
    arrival = _arrival_of(schedule)
    got = before["received"]
    assert got.notna().all()
    assert (got == _file_of(before["report_id"]).map(arrival)).all()
    manifest = next((store / "manifest" / "metar").glob("*.json"))
    entry = json.loads(manifest.read_text())
    assert pd.Timestamp(entry["received"]) == arrival[Path(entry["path"]).name]


def test_received_modes_arrival_and_ingest(
    world: Path, schedule: Schedule, catalogue: StationCatalogue, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    replay(schedule, inbox, T0, T0 + pd.Timedelta(hours=13), stamp_mtime=False)
    # by the manifest: the mtime is now wall-clock time, the arrival still the schedule's
    ingest(_cfg(inbox, received="arrival", arrivals=str(world)), tmp_path / "a", catalogue, False)
    a = read_observations(tmp_path / "a")
    assert len(a) and (a["received"] == _file_of(a["report_id"]).map(_arrival_of(schedule))).all()
    before = pd.Timestamp(datetime.now(UTC)).floor("us")
    ingest(_cfg(inbox, received="ingest"), tmp_path / "b", catalogue, progress=False)
    after = pd.Timestamp(datetime.now(UTC))
    b = read_observations(tmp_path / "b")
    assert b["received"].nunique() == 1  # one run, one receipt time
    assert before <= b["received"].iloc[0] <= after
    # per source: METAR by the manifest, SYNOP by the run's clock
    cfg = IngestConfig.model_validate(
        {
            "sources": [
                {"name": "metar", "paths": [str(inbox / "metar" / "*.txt")], "received": "arrival"},
                {"name": "synop_bufr", "paths": [str(inbox / "synop_bufr" / "*.bufr")]},
            ],
            "received": "ingest",
            "arrivals": str(world / "arrivals.csv"),
        }
    )
    ingest(cfg, tmp_path / "c", catalogue, progress=False)
    c = read_observations(tmp_path / "c")
    metar, synop = c[c["source"] == "metar"], c[c["source"] == "synop_bufr"]
    assert (metar["received"] < pd.Timestamp("2000-01-02", tz="UTC")).all()
    assert (synop["received"] >= before).all()


def test_cutoff_selects_what_had_arrived(
    schedule: Schedule, catalogue: StationCatalogue, tmp_path: Path
) -> None:
    """Two cycles: what arrived by the first cut-off is exactly what the first ingest stored;
    the rest (late bulletins among them) is used by the next cycle and counted as late."""
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    cut1 = T0 + pd.Timedelta(hours=6, minutes=40)
    cut2 = T0 + pd.Timedelta(hours=12, minutes=40)
    replay(schedule, inbox, T0 - pd.Timedelta(days=1), cut1 + pd.Timedelta(seconds=1))
    ingest(_cfg(inbox), store, catalogue, progress=False)
    seen1 = _sorted(read_observations(store))
    replay(schedule, inbox, cut1 + pd.Timedelta(seconds=1), FAR)
    ingest(_cfg(inbox), store, catalogue, progress=False)

    at1 = read_observations(store, received_by=cut1)
    assert len(at1) and (at1["received"] <= cut1).all()
    # every row received by the cut-off came from the first ingest, and every one of those
    # that was not retracted by a later correction is still there
    assert set(at1["report_id"]) <= set(seen1["report_id"])
    assert len(at1) == len(seen1) - _retracted_after(store, seen1, cut1)
    everything = read_observations(store)
    after1 = everything[everything["received"] > cut1]
    assert len(after1) and not set(after1["report_id"]) & set(at1["report_id"])

    at2 = read_observations(store, received_by=cut2)
    items = schedule.items
    late_items = items[items["late"] & (items["arrival"] > cut1) & (items["arrival"] <= cut2)]
    late_files = set(late_items["item"].str.rsplit("/", n=1).str[-1])
    assert late_files, "the schedule should put some late bulletins between the cut-offs"
    late_rows = at2[_file_of(at2["report_id"]).isin(late_files)]
    # a late 00 UTC bulletin is not in the 06 UTC cycle but is in the 12 UTC one
    assert len(late_rows) and not set(late_rows["report_id"]) & set(at1["report_id"])
    assert late_mask(late_rows, "1h").all()
    want = late_rows.drop_duplicates(["source", "report_id"])
    assert count_late(at2, "1h") >= len(want)
    on_time = at2[~_file_of(at2["report_id"]).isin(set(items.loc[items["late"], "item"].str[6:]))]
    assert count_late(on_time[on_time["source"] == "synop_bufr"], "1h") == 0


def _retracted_after(store: Path, seen: pd.DataFrame, cut: pd.Timestamp) -> int:
    """Rows of ``seen`` retracted by a correction received after ``cut`` (shown again at
    ``cut``) do not reduce the count; only those retracted by ``cut`` do."""
    gone = read_superseded(store)
    early = gone[gone["superseded_at"] <= cut]
    keys = set(zip(early["report_id"], early["variable"], strict=True))
    return sum((r, v) in keys for r, v in zip(seen["report_id"], seen["variable"], strict=True))


def test_correction_received_later_replaces_original_from_then_on(
    schedule: Schedule, catalogue: StationCatalogue, tmp_path: Path
) -> None:
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    items = schedule.items
    originals = Schedule(schedule.root, items[~items["correction"]], schedule.outages)
    corrections = Schedule(schedule.root, items[items["correction"]], schedule.outages)
    replay(originals, inbox, T0 - pd.Timedelta(days=1), FAR)
    ingest(_cfg(inbox), store, catalogue, progress=False)
    replay(corrections, inbox, T0 - pd.Timedelta(days=1), FAR)
    acc = ingest(_cfg(inbox), store, catalogue, progress=False)
    assert acc.sources["metar"].values_superseded_in_store > 0
    gone = read_superseded(store)
    assert gone["superseded_at"].notna().all()
    row = gone.iloc[0]
    at = row["superseded_at"]
    assert at == _arrival_of(schedule)[row["superseded_by"].split(":")[0]]
    key = ["station_id", "time", "variable"]

    def value_at(cut: pd.Timestamp) -> pd.DataFrame:
        df = read_observations(store, received_by=cut, sources=["metar"])
        return df.merge(pd.DataFrame([row[key]]), on=key)

    before = value_at(at - pd.Timedelta(seconds=1))
    assert before["report_id"].tolist() == [row["report_id"]]  # the original, as then
    assert before["value"].iloc[0] == row["value"]
    now = value_at(at)
    assert len(now) == 1 and now["report_id"].iloc[0].endswith(":CCA")
    assert now["value"].iloc[0] != row["value"]
    latest = read_observations(store, sources=["metar"]).merge(pd.DataFrame([row[key]]), on=key)
    assert latest["report_id"].tolist() == now["report_id"].tolist()


def test_old_store_without_received_still_reads(
    schedule: Schedule, catalogue: StationCatalogue, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    old_obs = pa.schema([f for f in OBS_SCHEMA if f.name not in ("source", "received")])
    t = pd.Timestamp("1999-12-31T18:00", tz="UTC")
    row = {
        "station_id": "OLD1",
        "lat": 1.0,
        "lon": 2.0,
        "elevation": 3.0,
        "time": t,
        "variable": "t2m",
        "value": 280.0,
        "report_id": "old.txt:1",
    }
    part = store / "obs" / "source=metar" / "date=1999-12-31" / "part-0000000000000000.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=old_obs), part)
    old_gone = pa.schema(
        [f for f in SUPERSEDED_SCHEMA if f.name not in ("source", "received", "superseded_at")]
    )
    gpart = store / "superseded" / "source=metar" / "date=1999-12-31" / "part-1.parquet"
    gpart.parent.mkdir(parents=True)
    gone_row = {**row, "report_id": "older.txt:1", "value": 290.0}
    gone_row |= {"reason": "replaced", "check": "superseded", "superseded_by": "old.txt:1"}
    pq.write_table(pa.Table.from_pylist([gone_row], schema=old_gone), gpart)

    obs = read_observations(store)
    assert obs["report_id"].tolist() == ["old.txt:1"] and obs["received"].isna().all()
    assert read_superseded(store)["superseded_at"].isna().all()
    # unknown receipt: received by any cut-off, unless asked otherwise; the old retraction
    # (no superseded_at) stays in force at every cut-off
    assert read_observations(store, received_by=t)["report_id"].tolist() == ["old.txt:1"]
    assert read_observations(store, received_by=t, include_unknown=False).empty
    # new ingest into the old store: both kinds of part read together
    inbox = tmp_path / "inbox"
    replay(schedule, inbox, T0, T0 + pd.Timedelta(hours=2))
    ingest(_cfg(inbox), store, catalogue, progress=False)
    both = read_observations(store)
    assert both["received"].isna().sum() == 1 and both["received"].notna().sum() > 10
    assert len(read_observations(store, received_by=T0, include_unknown=False)) == 0


def test_arrival_mode_needs_a_manifest_and_listed_files(
    world: Path, schedule: Schedule, catalogue: StationCatalogue, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    with pytest.raises(ValidationError, match="arrivals"):
        _cfg(inbox, received="arrival")
    replay(schedule, inbox, T0, T0 + pd.Timedelta(hours=1))
    stray = inbox / "metar" / "200001010000_SAXX99_KWBC.txt"
    eol = "\r\r\n"
    stray.write_bytes(
        eol.join(["\x01", "001 ", "SAXX99 KWBC 010000", "METAR", "KXYZ=", "\x03", ""]).encode()
    )
    acc = ingest(_cfg(inbox, received="arrival", arrivals=str(world)), tmp_path / "s", catalogue)
    errors = [e for e in acc.file_errors if e.path == str(stray)]
    assert len(errors) == 1 and "not in the arrival manifest" in errors[0].error
    assert not (read_observations(tmp_path / "s")["report_id"].str.startswith(stray.name)).any()


def test_day_files_get_each_bulletins_arrival(
    world: Path, schedule: Schedule, catalogue: StationCatalogue, tmp_path: Path
) -> None:
    """The world's day collectives (what the demo ingests) hold many transmissions: with
    received='arrival' every report gets the arrival of the bulletin it was cut into, the
    same receipt as when that bulletin comes through the inbox by itself."""
    inbox = tmp_path / "inbox"
    replay(schedule, inbox, T0, FAR)
    ingest(_cfg(inbox, received="arrival", arrivals=str(world)), tmp_path / "a", catalogue, False)
    ingest(_cfg(world, received="arrival", arrivals=str(world)), tmp_path / "b", catalogue, False)
    key = ["source", "station_id", "time", "variable"]
    a_rows = read_observations(tmp_path / "a").drop_duplicates(key).set_index(key)
    a, b = a_rows["received"], read_observations(tmp_path / "b").drop_duplicates(key)
    b = b.set_index(key)["received"]
    both = a.index.intersection(b.index)
    assert len(both) > 0.9 * len(b) and len(b) > 1000
    differ = both[(a.loc[both] != b.loc[both]).to_numpy()]
    # what differs is exactly what the world re-sent as a correction (not in the day files):
    # the inbox store holds the corrected report with its later receipt
    corrections = set(
        schedule.items.loc[schedule.items["correction"], "item"].str.split("/").str[-1]
    )
    assert set(_file_of(a_rows.loc[differ, "report_id"])) <= corrections
    assert (a.loc[differ] > b.loc[differ]).all()
    assert len(differ) < 0.05 * len(both)
    metar = b.loc[[k for k in both if k[0] == "metar"]]
    assert metar.nunique() > 10  # per bulletin, not one time per file
