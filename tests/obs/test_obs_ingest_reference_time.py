"""A run-wide reference time dates METAR/SYNOP text files whose names carry no date
(``ingest.reference_time`` in the config, ``stratocast ingest --reference-time`` on the CLI)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratocast.cli.main import _parser
from stratocast.config import parse_config
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import read_observations

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not (DATA / "metar").is_dir(), reason=f"real sample data not found at {DATA}"
)


def _cfg(path: Path, **extra: object) -> IngestConfig:
    return parse_config(
        IngestConfig, {"sources": [{"name": "metar", "paths": [str(path)]}], **extra}, "test"
    )


@needs_data
def test_undated_file_is_a_file_error_then_dated_by_the_run(
    tmp_path: Path, airports: StationCatalogue
) -> None:
    undated = tmp_path / "collective.txt"  # no YYYYMMDD in the name
    shutil.copy(DATA / "metar" / "collective.txt", undated)
    acc = ingest(_cfg(undated), tmp_path / "s1", airports, progress=False)
    assert acc.sources["metar"].files_failed == 1 and acc.sources["metar"].reports_stored == 0
    assert str(undated) in acc.file_errors[0].path

    acc = ingest(
        _cfg(undated, reference_time="2024-09-08T14:00"), tmp_path / "s2", airports, progress=False
    )
    acc.verify()
    assert acc.sources["metar"].files_ok == 1 and acc.sources["metar"].reports_stored == 10
    times = read_observations(tmp_path / "s2")["time"]
    assert times.min().year == 2024 and times.min().month == 9


@needs_data
def test_a_sources_own_reference_time_wins(tmp_path: Path, airports: StationCatalogue) -> None:
    undated = tmp_path / "collective.txt"
    shutil.copy(DATA / "metar" / "collective.txt", undated)
    cfg = parse_config(
        IngestConfig,
        {
            "reference_time": "2020-01-31T00:00",
            "sources": [
                {
                    "name": "metar",
                    "paths": [str(undated)],
                    "options": {"reference_time": "2024-09-08T14:00"},
                }
            ],
        },
        "test",
    )
    ingest(cfg, tmp_path / "s", airports, progress=False).verify()
    assert read_observations(tmp_path / "s")["time"].min().year == 2024


def test_cli_flag_parses_to_a_utc_time() -> None:
    args = _parser().parse_args(["ingest", "--reference-time", "2024-09-08T14:00"])
    assert args.reference_time == datetime(2024, 9, 8, 14)
    # naive = UTC, as the readers' utc_reference takes it
    cfg = IngestConfig(sources=[], reference_time=args.reference_time)
    assert cfg.reference_time is not None
    assert cfg.reference_time.replace(tzinfo=UTC) == datetime(2024, 9, 8, 14, tzinfo=UTC)
