"""The observation store: hive-partitioned Parquet, plus quarantine and an ingest manifest.

Layout (docs/design.md)::

    <store>/obs/source=<src>/date=<YYYY-MM-DD>/part-<filehash>.parquet
    <store>/quarantine/source=<src>/date=<YYYY-MM-DD|undated>/part-<filehash>.parquet
    <store>/superseded/source=<src>/date=<YYYY-MM-DD>/part-<filehash>.parquet
    <store>/manifest/<src>/<filehash>.json      one per ingested input file
    <store>/accounting/<run-id>.json            one per ingest run

Part files are named by the SHA-256 of the input file's content, so writing the same input
twice overwrites rather than appends, and the manifest (written last) lets ingest skip it
outright: re-ingesting is idempotent. ``source`` and ``date`` live only in the partition path
(pyarrow adds them back on read); the files hold the remaining columns.

Retraction (a correction arriving in a later run than the report it corrects): the stored
original rows move from ``obs`` to ``superseded`` (part named by the *correcting* file's hash)
in two steps, each one atomic rename per partition file (:func:`retract`):

1. write the superseded part(s): this is the commit point. From here on
   :func:`read_observations` hides the rows (it anti-joins ``obs`` with ``superseded`` on
   source, station, time, variable and report id), so they are logically in one place only;
2. rewrite each affected ``obs`` part without the rows (or delete it when nothing is left).

A crash before 1 leaves the rows stored (the correcting file has no manifest, so the next run
redoes everything); a crash between 1 and 2 leaves them physically in both trees but visible
only as superseded, and the next ingest of an overlapping time window finishes step 2. Rows
are never absent from both. One ingest at a time per store (no locking).

Receipt time (``received``, UTC): when the input file a row came from was received (ingest's
``received`` option: the file's mtime in an inbox, its scheduled arrival in a world replay, or
the ingest run's clock); every row of one file shares it, quarantined rows included. Superseded
rows also keep ``superseded_at``, the receipt time of the correction that retracted them.
:func:`read_observations` with ``received_by`` gives the store as a cycle with that cut-off
saw it: rows received later are left out, and an original whose correction arrived after the
cut-off is shown again in its place. (Within one ingest run a correction quarantines its
original outright, so an original and its correction ingested together cannot be told apart
by a cut-off between their receipt times.)

Format versions: columns are only ever added, and every reader reads with the full schema, so
parts written before a column existed read it as null. Stores written before ``received``
(and ``superseded_at``) existed therefore read unchanged, with ``received`` null: "received at
an unknown time", which ``read_observations(received_by=...)`` counts as received by any
cut-off unless ``include_unknown=False``. No migration rewrites old parts.
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
        ("received", pa.timestamp("us", tz="UTC")),  # null in parts older than the column
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        *OBS_SCHEMA,
        ("reason", pa.string()),
        ("check", pa.string()),
        ("raw", pa.string()),
        ("raw_length", pa.int64()),  # characters of the raw text before the cap
    ]
)
# Quarantine keeps at most this many characters of a record's raw text (the original length
# is in ``raw_length``): one hostile 10 MB "report" must not become a 10 MB row.
RAW_CAP = 4096
SUPERSEDED_SCHEMA = pa.schema(
    [
        *OBS_SCHEMA,
        ("reason", pa.string()),
        ("check", pa.string()),
        ("superseded_by", pa.string()),
        ("superseded_at", pa.timestamp("us", tz="UTC")),  # when the correction was received
    ]
)
# Columns a writer may leave out (null): receipt times are unknown to callers that predate them.
_NULLABLE_ADDED = ("received", "superseded_at")
SUPERSEDED = "superseded"  # the check name of retracted rows
# what identifies one stored value across trees (report_id alone repeats per variable)
ROW_KEY = ["source", "station_id", "time", "variable", "report_id"]
PART = "_part"  # column added by read_stored: the Parquet file a row lives in
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
    absent = [c for c in _NULLABLE_ADDED if c in schema.names and c not in df]
    if absent:
        df = df.assign(
            **{c: pd.Series(pd.NaT, index=df.index, dtype="datetime64[us, UTC]") for c in absent}
        )
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
    """Write quarantined rows (nullable observation columns + reason, check, raw).

    ``raw`` is cut to :data:`RAW_CAP` characters; ``raw_length`` keeps the original length.
    """
    if df.empty:
        return []
    raw = df["raw"].astype(object)
    long = raw.str.len() > RAW_CAP  # cut only what is over: most rows pass untouched
    if long.any():
        raw = raw.where(~long, raw.str.slice(0, RAW_CAP))
    df = df.assign(raw=raw, raw_length=df["raw"].str.len().astype("Int64"))
    return _write_partitioned(df, Path(store) / "quarantine", source, key, QUARANTINE_SCHEMA)


def part_key(path: str | Path) -> str:
    """The (shortened) input-file hash a part file is named by."""
    return Path(path).stem.removeprefix("part-")


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
    with_part: bool = False,
) -> pd.DataFrame:
    if not root.is_dir():
        empty = schema.empty_table().to_pandas()
        return empty.assign(**{PART: pd.Series(dtype=object)}) if with_part else empty
    # the schema, not the first file's, so parts written before a column existed read as null
    fields = [f for f in schema if f.name != "source"]
    full = pa.schema([*fields, pa.field("source", pa.string()), pa.field("date", pa.string())])
    dataset = ds.dataset(root, schema=full, format="parquet", partitioning=_PARTITIONING)
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
    columns = [*schema.names, "__filename"] if with_part else schema.names
    table = dataset.to_table(columns=columns, filter=expr)
    if not with_part:
        return table.cast(schema).to_pandas()
    parts = table.column("__filename").to_pandas()
    return table.drop_columns("__filename").cast(schema).to_pandas().assign(**{PART: parts})


def _hide_superseded(obs: pd.DataFrame, gone: pd.DataFrame) -> pd.DataFrame:
    if obs.empty or gone.empty:
        return obs
    keys = pd.MultiIndex.from_frame(gone[ROW_KEY])
    return obs[~pd.MultiIndex.from_frame(obs[ROW_KEY]).isin(keys)].reset_index(drop=True)


def _received_by(received: pd.Series, cut: pd.Timestamp, include_unknown: bool) -> pd.Series:
    known = received.notna()
    return (known & (received <= cut)) | (~known & include_unknown)


def read_observations(
    store: Path | str,
    variables: Iterable[str] | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    stations: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
    received_by: datetime | str | pd.Timestamp | None = None,
    include_unknown: bool = True,
) -> pd.DataFrame:
    """Stored observations (long format, OBS_SCHEMA columns), filtered; bounds inclusive.

    Rows retracted by a later correction are left out even while a crashed run has not yet
    removed them from their ``obs`` part (see the module docstring).

    ``received_by`` (naive = UTC): only rows received by then (inclusive), and an original
    whose correction was received after it instead of that correction: what a cycle with
    this cut-off had. Rows with no receipt time (stores older than the column) count as
    received unless ``include_unknown`` is False.
    """
    args = (variables, start, end, stations, sources)
    obs = _read(Path(store) / "obs", OBS_SCHEMA, *args)
    gone = _read(Path(store) / SUPERSEDED, SUPERSEDED_SCHEMA, *args)
    visible = _hide_superseded(obs, gone)
    if received_by is None:
        return visible
    cut = _utc(received_by)
    visible = visible[_received_by(visible["received"], cut, include_unknown)]
    # superseded_at null (a retraction older than the column) = superseded before any cut-off
    pending = gone[gone["superseded_at"].notna() & (gone["superseded_at"] > cut)]
    back = pending[_received_by(pending["received"], cut, include_unknown)]
    if back.empty:
        return visible.reset_index(drop=True)
    back = back[OBS_SCHEMA.names].drop_duplicates(ROW_KEY)
    return pd.concat([visible, back], ignore_index=True)


def late_mask(df: pd.DataFrame, threshold: pd.Timedelta | str = "1h") -> pd.Series:
    """Rows received more than ``threshold`` after their observation time (unknown receipt
    is not late)."""
    delay = df["received"] - df["time"]
    return (delay > pd.Timedelta(threshold)).fillna(False).astype(bool)


def count_late(df: pd.DataFrame, threshold: pd.Timedelta | str = "1h") -> int:
    """Reports (distinct source and report id) received more than ``threshold`` after their
    observation time: what a cycle counts as "arrived late"."""
    late = df[late_mask(df, threshold)]
    return len(late.drop_duplicates(["source", "report_id"]))


def read_superseded(
    store: Path | str,
    variables: Iterable[str] | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    stations: Iterable[str] | None = None,
    sources: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Rows once stored, retracted by a correction ingested later (``superseded_by``)."""
    args = (variables, start, end, stations, sources)
    return _read(Path(store) / SUPERSEDED, SUPERSEDED_SCHEMA, *args)


def read_stored(
    store: Path | str,
    start: datetime | str | None,
    end: datetime | str | None,
    stations: Iterable[str] | None,
    sources: Iterable[str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For ingest: the physical ``obs`` rows and the ``superseded`` rows of a window, each
    with the part file it lives in (column ``_part``), nothing hidden."""
    args = (None, start, end, stations, sources)
    obs = _read(Path(store) / "obs", OBS_SCHEMA, *args, with_part=True)
    gone = _read(Path(store) / SUPERSEDED, SUPERSEDED_SCHEMA, *args, with_part=True)
    return obs, gone


def remove_rows(parts: Iterable[str], rows: pd.DataFrame) -> None:
    """Rewrite each ``obs`` part file without ``rows`` (matched on ROW_KEY); atomic per file.

    ``source`` is not stored in the files (it is the partition), so it is matched on the
    rest of the key: a part file belongs to one source.
    """
    key = [k for k in ROW_KEY if k != "source"]
    drop = pd.MultiIndex.from_frame(rows[key])
    for part in sorted(set(parts)):
        path = Path(part)
        if not path.is_file():  # a finished earlier cleanup
            continue
        table = pq.read_table(path)
        df = table.to_pandas()
        keep = ~pd.MultiIndex.from_frame(df[key]).isin(drop)
        if keep.all():
            continue
        if not keep.any():
            path.unlink()  # an empty part file would only cost an open on every read
            continue
        _atomic_write_table(
            pa.Table.from_pandas(df[keep], schema=table.schema, preserve_index=False), path
        )


def retract(
    store: Path, source: str, key: str, rows: pd.DataFrame, obs_parts: Iterable[str]
) -> None:
    """Move stored ``rows`` (with ``reason``, ``superseded_by``) of ``source`` out of the
    ``obs`` parts ``obs_parts`` into ``superseded`` under the correcting file ``key``.

    Superseded first (the commit point), then the ``obs`` parts: see the module docstring.
    ``rows`` must be *all* the rows ``key`` retracts in their dates, including those an
    interrupted earlier attempt already moved: the superseded part of a date is replaced.
    """
    if rows.empty:
        return
    out = rows.assign(check=SUPERSEDED)
    _write_partitioned(out, Path(store) / SUPERSEDED, source, key, SUPERSEDED_SCHEMA)
    remove_rows(obs_parts, rows)


def read_quarantine(
    store: Path | str, sources: Iterable[str] | None = None, variables: Iterable[str] | None = None
) -> pd.DataFrame:
    """Quarantined rows with their ``check``, ``reason`` and ``raw`` text."""
    root = Path(store) / "quarantine"
    return _read(root, QUARANTINE_SCHEMA, variables, None, None, None, sources)
