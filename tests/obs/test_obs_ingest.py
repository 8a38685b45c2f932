"""End-to-end ingest of the real sample files: accounting, quarantine, idempotence, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratocast.config import ConfigError, parse_config
from stratocast.obs.accounting import Accounting
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.registry import UnknownSourceError, get_source
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.obs.store import read_observations, read_quarantine

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real sample data not found at {DATA} (../shared/data)"
)


def _cfg(extra_paths: list[str] = [], workers: int = 1) -> IngestConfig:  # noqa: B006
    return parse_config(
        IngestConfig,
        {
            "workers": workers,
            "sources": [
                {
                    "name": "metar",
                    "paths": [str(DATA / "metar" / "*.txt")],
                    "options": {"reference_time": "2024-09-08T14:00:00+00:00"},
                },
                {
                    "name": "synop_bufr",
                    "paths": [str(DATA / "bufr" / "*synop*.bufr"), *extra_paths],
                },
            ],
        },
        "test",
    )


@needs_data
def test_real_files_end_to_end(tmp_path: Path, airports: StationCatalogue) -> None:
    store = tmp_path / "store"
    missing = str(tmp_path / "nope.bufr")
    acc = ingest(_cfg([missing]), store, airports, progress=False)
    acc.verify()
    m, b = acc.sources["metar"], acc.sources["synop_bufr"]
    assert m.files_ok == 9 and b.files_ok == 5 and b.files_failed == 1
    assert [e.path for e in acc.file_errors] == [missing]
    assert "not found" in acc.file_errors[0].error
    for a in (m, b):
        assert a.reports_read == a.reports_stored + a.reports_quarantined
        assert a.values_decoded == a.values_stored + a.values_quarantined
    assert m.reports_quarantined_by_check["malformed"] >= 4  # 3 bad lines + NUL (+ SA lines)
    assert m.values_quarantined_by_check["duplicate"] >= 10  # KMIA sent twice

    obs = read_observations(store)
    assert len(obs) == m.values_stored + b.values_stored
    assert set(obs.columns) == {
        "source",
        "station_id",
        "lat",
        "lon",
        "elevation",
        "time",
        "variable",
        "value",
        "report_id",
        "received",
    }
    assert obs["received"].notna().all()  # every row knows when its file was received
    q = read_quarantine(store)
    nul = q[q["report_id"] == "nullbyte.txt:5"]
    assert len(nul) == 1 and "control character" in nul["reason"].iloc[0]
    assert (store / "obs" / "source=synop_bufr" / "date=2021-05-16").is_dir()

    # filters: one variable, one station, a time window
    t = read_observations(
        store,
        variables=["t2m"],
        stations=["10037"],
        start="2021-05-16T11:00",
        end="2021-05-16T12:00",
    )
    assert t["value"].tolist() == pytest.approx([286.65])

    # the accounting JSON is on disk and round-trips
    (saved,) = (store / "accounting").glob("*.json")
    assert Accounting.read(saved).to_dict() == json.loads(saved.read_text())
    assert "metar" in acc.format() and "duplicate" in acc.format()

    again = ingest(_cfg(), store, airports, progress=False)
    assert again.sources["metar"].files_skipped == 9 and again.sources["metar"].reports_read == 0
    assert len(read_observations(store)) == len(obs)
    assert len(read_quarantine(store)) == len(q)


@needs_data
def test_parallel_decode_matches_serial(tmp_path: Path, airports: StationCatalogue) -> None:
    serial = ingest(_cfg(), tmp_path / "a", airports, progress=False)
    parallel = ingest(_cfg(workers=2), tmp_path / "b", airports, progress=False)
    assert serial.to_dict()["sources"] == parallel.to_dict()["sources"]


def test_bad_files_recorded_run_goes_on(tmp_path: Path) -> None:
    undatable = tmp_path / "metar.txt"  # no YYYYMMDD in the name, no reference_time
    undatable.write_text("ABCD 010020Z 00000KT 01/M01 Q1014\n")
    good = tmp_path / "20240101.txt"
    good.write_text("ABCD 010050Z 00000KT 02/M01 Q1014\n")  # content differs: hash differs
    folder = tmp_path / "20240102.txt"
    folder.mkdir()
    paths = [str(undatable), str(good), str(folder)]
    cfg = IngestConfig(sources=[{"name": "metar", "paths": paths}])
    cat = StationCatalogue([Station("S1", 1.0, 2.0, 3.0, icao="ABCD")])
    acc = ingest(cfg, tmp_path / "store", cat, progress=False)
    errors = {Path(e.path).name: e.error for e in acc.file_errors}
    assert "YYYYMMDD" in errors["metar.txt"] and "not a regular file" in errors["20240102.txt"]
    a = acc.sources["metar"]
    assert (a.files_ok, a.files_failed, a.reports_stored) == (1, 2, 1)
    # a failed file is not in the manifest: once fixed, the next run picks it up
    undatable.rename(tmp_path / "20240103.txt")
    cfg2 = IngestConfig(sources=[{"name": "metar", "paths": [str(tmp_path / "*.txt")]}])
    again = ingest(cfg2, tmp_path / "store", cat, progress=False)
    assert again.sources["metar"].files_ok == 1 and again.sources["metar"].files_skipped == 1


def test_registry_and_config_errors() -> None:
    # the built-in readers at least; other helpers' sources may join the list
    with pytest.raises(UnknownSourceError, match="available: aircraft_bufr, ") as err:
        get_source("metr")
    listed = str(err.value).split("available: ")[1].split(".")[0].split(", ")
    assert listed == sorted(listed)
    assert {"isd_lite", "metar", "synop_bufr", "synop_tac", "temp_bufr"} <= set(listed)
    with pytest.raises(TypeError, match="bad options for observation source 'metar'"):
        get_source("metar", wrong=1)
    with pytest.raises(ConfigError, match="unknown source 'metr'"):
        parse_config(IngestConfig, {"sources": [{"name": "metr", "paths": ["x"]}]}, "cfg.yaml")
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(IngestConfig, {"sources": [], "worker": 2}, "cfg.yaml")
