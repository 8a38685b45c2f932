"""The observation store: hive-partitioned Parquet, plus quarantine and an ingest manifest.

Layout (docs/design.md)::

    <store>/obs/source=<src>/date=<YYYY-MM-DD>/part-<filehash>.parquet
    <store>/quarantine/source=<src>/date=<YYYY-MM-DD|undated>/part-<filehash>.parquet
    <store>/manifest/<src>/<filehash>.json      one per ingested input file
    <store>/accounting/<run-id>.json            one per ingest run

Part files are named by the SHA-256 of the input file's content, so writing the same input
twice overwrites rather than appends, and the manifest (written last) lets ingest skip it
outright: re-ingesting is idempotent. ``source`` and ``date`` live only in the partition path
(pyarrow adds them back on read); the files hold the remaining columns.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

OBS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("station_id", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("elevation", pa.float32()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("variable", pa.string()),
        ("value", pa.float64()),
        ("report_id", pa.string()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [*OBS_SCHEMA, ("reason", pa.string()), ("check", pa.string()), ("raw", pa.string())]
)
_PARTITIONING = ds.partitioning(
    pa.schema([("source", pa.string()), ("date", pa.string())]), flavor="hive"
)
UNDATED = "undated"


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)  # readers never see a half-written part


def _write_partitioned(
    df: pd.DataFrame, root: Path, source: str, key: str, schema: pa.Schema
) -> list[Path]:
    if df.empty:
        return []
    dates = df["time"].dt.strftime("%Y-%m-%d").fillna(UNDATED)
    file_schema = pa.schema([f for f in schema if f.name != "source"])
    written = []
    for date, part in df.groupby(dates, sort=True):
        table = pa.Table.from_pandas(
            part[file_schema.names], schema=file_schema, preserve_index=False
        )
        path = root / f"source={source}" / f"date={date}" / f"part-{key[:16]}.parquet"
        _atomic_write_table(table, path)
        written.append(path)
    return written


def write_observations(store: Path, source: str, key: str, df: pd.DataFrame) -> list[Path]:
    """Write accepted rows of one input file (``key`` = its content hash)."""
    return _write_partitioned(df, Path(store) / "obs", source, key, OBS_SCHEMA)


def write_quarantine(store: Path, source: str, key: str, df: pd.DataFrame) -> list[Path]:
    """Write quarantined rows (nullable observation columns + reason, check, raw)."""
    return _write_partitioned(df, Path(store) / "quarantine", source, key, QUARANTINE_SCHEMA)


def manifest_path(store: Path, source: str, key: str) -> Path:
    return Path(store) / "manifest" / source / f"{key}.json"


def is_ingested(store: Path, source: str, key: str) -> bool:
    return manifest_path(store, source, key).is_file()


def write_manifest(store: Path, source: str, key: str, entry: dict[str, Any]) -> None:
    path = manifest_path(store, source, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(entry, indent=1, default=str))
    os.replace(tmp, path)


def _utc(t: datetime | str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _read(
    root: Path,
    schema: pa.Schema,
    variables: Iterable[str] | None,
    start: datetime | str | None,
    end: datetime | str | None,
    stations: Iterable[str] | None,
    sources: Iterable[str] | None,
) -> pd.DataFrame:
    if not root.is_dir():
        return schema.empty_table().to_pandas()
    dataset = ds.dataset(root, format="parquet", partitioning=_PARTITIONING)
    expr = None

    def _and(e: ds.Expression) -> None:
        nonlocal expr
        expr = e if expr is None else expr & e

    if sources is not None:
        _and(pc.field("source").isin(list(sources)))
    if variables is not None:
        _and(pc.field("variable").isin(list(variables)))
    if stations is not None:
        _and(pc.field("station_id").isin(list(stations)))
    # date-partition bounds prune whole directories before any file is opened
    if start is not None:
        s = _utc(start)
        _and(pc.field("date") >= s.strftime("%Y-%m-%d"))
        _and(pc.field("time") >= pa.scalar(s.to_pydatetime(), pa.timestamp("us", tz="UTC")))
    if end is not None:
        e = _utc(end)
        _and(pc.field("date") <= e.strftime("%Y-%m-%d"))
        _and(pc.field("time") <= pa.scalar(e.to_pydatetime(), pa.timestamp("us", tz="UTC")))
    table = dataset.to_table(columns=schema.names, filter=expr)
    return table.cast(schema).to_pandas()


def read_observations(
    store: Path | str,
    variables: Iterable[str] | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    stations: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Stored observations (long format, OBS_SCHEMA columns), filtered; bounds inclusive."""
    return _read(Path(store) / "obs", OBS_SCHEMA, variables, start, end, stations, sources)


def read_quarantine(
    store: Path | str, sources: Iterable[str] | None = None, variables: Iterable[str] | None = None
) -> pd.DataFrame:
    """Quarantined rows with their ``check``, ``reason`` and ``raw`` text."""
    root = Path(store) / "quarantine"
    return _read(root, QUARANTINE_SCHEMA, variables, None, None, None, sources)
