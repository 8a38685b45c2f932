"""The text accounting identity through ingest, unparsed text in quarantine, the raw-text cap.

Real SYNOP TAC bulletins and ISD-Lite files from ``../shared/data``; every character of each
text file is in a stored or quarantined record, the framing, or an ``unparsed_text`` row.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from stratocast.obs.accounting import Accounting, SourceAccount, store_totals
from stratocast.obs.base import text_chars
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.sources.synop_tac import catalogue_from_wmo_csv
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import RAW_CAP, read_observations, read_quarantine

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
TAC = DATA / "synop_tac"
ISD = DATA / "isd_lite"
pytestmark = pytest.mark.skipif(not TAC.is_dir(), reason=f"real sample data not at {TAC}")
ROMANIA = TAC / "example_with_bufr" / "A_SMRO01YRBK211200_C_EDZW_20220321120500_12524785.txt"


def _ingest(
    store: Path, paths: list[Path], catalogue: StationCatalogue | None, **options: object
) -> SourceAccount:
    spec = {"name": "synop_tac", "paths": [str(p) for p in paths], "options": options}
    acc = ingest(IngestConfig.model_validate({"sources": [spec]}), store, catalogue, False)
    acc.verify()
    return acc.sources["synop_tac"]


def _nonspace(paths: list[Path]) -> int:
    return sum(text_chars(p.read_bytes().decode("latin-1")) for p in paths)


def test_every_shared_synop_file_adds_up(tmp_path: Path) -> None:
    store = tmp_path / "store"
    wis = sorted((TAC / "wis2box_data").glob("*.txt"))
    runs = [
        (wis, catalogue_from_wmo_csv(TAC / "wis2box_data" / "station_list.csv"), {}),
        ([ROMANIA], catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv"), {}),
        (
            [TAC / "gts_data" / "WX.00"],
            catalogue_from_wmo_csv(TAC / "gts_data" / "station_list.csv", west_positive=True),
            {"reference_time": "2023-01-31T06:00"},
        ),
    ]
    for paths, catalogue, options in runs:
        a = _ingest(store, paths, catalogue, **options)
        assert a.text_files == len(paths)
        # the characters of the files on disk, counted here independently of the reader
        assert a.text_chars == _nonspace(paths)
        assert a.text_chars == a.text_chars_in_records + a.text_chars_framing
        assert a.text_chars_unparsed == a.unparsed_spans == 0
    t = store_totals(store)["synop_tac"]
    every = [p for paths, _, _ in runs for p in paths]
    assert t.text_files == len(every) and t.text_chars == _nonspace(every)
    q = read_quarantine(store)
    assert t.values_quarantined == int(q["variable"].notna().sum())
    assert t.values_stored - t.values_superseded_in_store == len(read_observations(store))
    Accounting("x", {"synop_tac": t}).verify()


def test_unparsed_text_is_quarantined_with_its_place(tmp_path: Path) -> None:
    text = ROMANIA.read_text("latin-1").replace(
        "SMRO01 YRBK 211200\n", "SMRO01 YRBK 211200\nRELAYED BY TEST CENTRE\n", 1
    )
    path = tmp_path / "in" / ROMANIA.name
    path.parent.mkdir()
    path.write_text(text, "latin-1")
    store = tmp_path / "store"
    catalogue = catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")
    a = _ingest(store, [path], catalogue)
    assert a.unparsed_spans == 1 and a.text_chars_unparsed == len("RELAYEDBYTESTCENTRE")
    assert a.reports_read == 23 and a.reports_stored == 23  # not a report: counted apart
    assert a.text_chars == a.text_chars_in_records + a.text_chars_framing + a.text_chars_unparsed
    q = read_quarantine(store)
    (row,) = q[q["check"] == "unparsed_text"].itertuples()
    assert row.report_id == f"{path.name}:2" and row.raw == "RELAYED BY TEST CENTRE"
    assert path.name + ":2" in row.reason and row.raw_length == len(row.raw)
    t = store_totals(store)["synop_tac"]
    assert t.unparsed_spans == 1 and len(q) == t.values_quarantined + t.unparsed_spans


def test_quarantined_raw_text_is_capped(tmp_path: Path) -> None:
    # one hostile "report" of 2 MB of groups (no "=" until the end) after a real bulletin
    junk = " ".join(["15015"] + ["12345"] * 350_000) + "="
    path = tmp_path / "in" / ROMANIA.name
    path.parent.mkdir()
    path.write_text(ROMANIA.read_text("latin-1") + junk + "\n", "latin-1")
    store = tmp_path / "store"
    catalogue = catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")
    a = _ingest(store, [path], catalogue)
    assert a.reports_read == 24 and a.reports_stored == 23 and a.reports_quarantined == 1
    q = read_quarantine(store)
    assert len(q) == 1 and q["check"].iloc[0] == "malformed_group"
    assert len(q["raw"].iloc[0]) == RAW_CAP and junk.startswith(q["raw"].iloc[0])
    assert q["raw_length"].iloc[0] == len(junk) - 1  # the report's text, without its "="
    # the accounting counts the whole report, not the capped copy
    assert a.text_chars == _nonspace([path])


def test_verify_names_a_broken_text_identity() -> None:
    a = SourceAccount(text_files=1, text_chars=100, text_chars_in_records=90)
    a.text_chars_framing = 8
    with pytest.raises(ValueError, match=r"metar: text characters 100 != in records 90 \+ fra"):
        Accounting("r", {"metar": a}).verify()
    a.text_chars_unparsed = 2
    Accounting("r", {"metar": a}).verify()


def test_store_totals_of_a_store_from_before_per_file_accounts(tmp_path: Path) -> None:
    store = tmp_path / "store"
    catalogue = catalogue_from_wmo_csv(TAC / "example_with_bufr" / "station_list.csv")
    a = _ingest(store, [ROMANIA], catalogue)
    # rewrite the store as an older version left it: manifests without an account
    (manifest,) = (store / "manifest" / "synop_tac").glob("*.json")
    entry = json.loads(manifest.read_text())
    entry.pop("account")
    manifest.write_text(json.dumps(entry))
    assert store_totals(store)["synop_tac"] == a  # from the run's accounting file
    (run,) = (store / "accounting").glob("*.json")
    run.unlink()
    with pytest.raises(ValueError, match="run accounting missing"):
        store_totals(store)


@pytest.mark.skipif(not ISD.is_dir(), reason=f"real ISD-Lite data not at {ISD}")
def test_isd_lite_through_ingest(tmp_path: Path) -> None:
    paths = sorted(ISD.glob("3*.gz"))[:3]
    history = DATA / "stations" / "isd-history.csv"
    spec = {
        "name": "isd_lite",
        "paths": [str(p) for p in paths],
        "options": {"stations": str(history)},
    }
    acc = ingest(IngestConfig.model_validate({"sources": [spec]}), tmp_path / "s", None, False)
    acc.verify()
    a = acc.sources["isd_lite"]

    on_disk = sum(text_chars(gzip.decompress(p.read_bytes()).decode("ascii")) for p in paths)
    assert a.text_files == 3 and a.text_chars == a.text_chars_in_records == on_disk
    assert a.text_chars_framing == a.text_chars_unparsed == 0
