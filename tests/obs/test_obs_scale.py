"""Scale-out ingest: a real Dask LocalCluster and a real S3-compatible server (moto) on localhost.

Both must reproduce the serial, local-disk run exactly: same stored rows, same quarantine,
same accounting. The serial run is the reference because it is the path every other ingest
test checks against hand-decoded values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from stratocast.config import parse_config
from stratocast.obs.accounting import Accounting
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.remote import expand, is_remote
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import read_observations, read_quarantine
from stratocast.testing.s3 import local_s3

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real sample data not found at {DATA} (../shared/data)"
)
METAR_OPTIONS = {"reference_time": "2024-09-08T14:00:00+00:00"}


def _cfg(metar: str, bufr: str, **extra: Any) -> IngestConfig:
    return parse_config(
        IngestConfig,
        {
            "sources": [
                {"name": "metar", "paths": [metar], "options": METAR_OPTIONS},
                {"name": "synop_bufr", "paths": [bufr]},
            ],
            **extra,
        },
        "test",
    )


def _local_cfg(**extra: Any) -> IngestConfig:
    return _cfg(str(DATA / "metar" / "*.txt"), str(DATA / "bufr" / "*synop*.bufr"), **extra)


def _table(df: pd.DataFrame) -> pd.DataFrame:
    # receipt times differ by design: a local file's mtime, a download's run time
    cols = sorted(c for c in df.columns if c not in ("received", "superseded_at"))
    return df[cols].sort_values(cols, kind="stable", na_position="first").reset_index(drop=True)


def _same_store(a: Path, b: Path) -> None:
    pd.testing.assert_frame_equal(_table(read_observations(a)), _table(read_observations(b)))
    pd.testing.assert_frame_equal(_table(read_quarantine(a)), _table(read_quarantine(b)))


def _counts(acc: Accounting) -> dict[str, Any]:
    return {name: vars(a) for name, a in acc.sources.items()}


@needs_data
def test_local_dask_cluster_matches_serial(tmp_path: Path, airports: StationCatalogue) -> None:
    serial = ingest(_local_cfg(), tmp_path / "serial", airports, progress=False)
    dask = ingest(
        _local_cfg(scheduler="local", workers=2), tmp_path / "dask", airports, progress=False
    )
    assert serial.sources["metar"].files_ok == 9 and serial.sources["synop_bufr"].files_ok == 5
    assert _counts(dask) == _counts(serial)
    assert dask.file_errors == serial.file_errors == []
    _same_store(tmp_path / "serial", tmp_path / "dask")


def test_bad_scheduler_is_named() -> None:
    from stratocast.obs.parallel import dask_client

    with pytest.raises(ValueError, match="'nowhere'"), dask_client("nowhere", 1):
        pass


def test_is_remote() -> None:
    assert is_remote("s3://bucket/a/*.txt") and is_remote("https://host/x.bufr")
    assert not is_remote("/data/metar/*.txt") and not is_remote("file:///data/x.txt")


# --- S3 through a real moto server on 127.0.0.1 --------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    for module in ("moto.server", "boto3", "s3fs"):
        pytest.importorskip(module)
    with local_s3("obs") as (options, client):
        if DATA.is_dir():
            for f in sorted((DATA / "metar").glob("*.txt")):
                client.upload_file(str(f), "obs", f"raw/metar/{f.name}")
            for f in sorted((DATA / "bufr").glob("*synop*.bufr")):
                client.upload_file(str(f), "obs", f"raw/bufr/{f.name}")
        yield options


@needs_data
def test_s3_glob_lists_every_object(s3: dict[str, Any]) -> None:
    urls = expand("s3://obs/raw/metar/*.txt", s3)
    assert urls == [f"s3://obs/raw/metar/{f.name}" for f in sorted((DATA / "metar").glob("*.txt"))]


@needs_data
def test_s3_ingest_matches_local(
    tmp_path: Path, airports: StationCatalogue, s3: dict[str, Any]
) -> None:
    local = ingest(_local_cfg(), tmp_path / "local", airports, progress=False)
    cfg = _cfg(
        "s3://obs/raw/metar/*.txt",
        "s3://obs/raw/bufr/*synop*.bufr",
        storage_options=s3,
        cache_dir=str(tmp_path / "cache"),
    )
    remote = ingest(cfg, tmp_path / "remote", airports, progress=False)
    assert _counts(remote) == _counts(local)
    assert remote.file_errors == []
    _same_store(tmp_path / "local", tmp_path / "remote")
    # the cache is keyed by content and keeps the object's name (readers put it in report ids)
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*/*"))
    expected = [p.name for p in DATA.glob("metar/*.txt")]
    expected += [p.name for p in DATA.glob("bufr/*synop*.bufr")]
    assert cached == sorted(expected)

    again = ingest(cfg, tmp_path / "remote", airports, progress=False)  # idempotent by content
    assert again.sources["metar"].files_skipped == 9 and again.sources["metar"].files_ok == 0


@needs_data
def test_s3_missing_objects_are_file_errors(
    tmp_path: Path, airports: StationCatalogue, s3: dict[str, Any]
) -> None:
    cfg = _cfg(
        "s3://obs/raw/metar/nothing-*.txt",
        "s3://obs/raw/bufr/absent.bufr",
        storage_options=s3,
        cache_dir=str(tmp_path / "cache"),
    )
    acc = ingest(cfg, tmp_path / "store", airports, progress=False)
    errors = {e.path: e.error for e in acc.file_errors}
    assert errors == {
        "s3://obs/raw/metar/nothing-*.txt": "no file matches",
        "s3://obs/raw/bufr/absent.bufr": "file not found",
    }
    assert acc.sources["metar"].files_failed == 1 and acc.sources["synop_bufr"].files_failed == 1
