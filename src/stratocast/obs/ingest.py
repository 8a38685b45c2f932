"""Ingest: input files -> decode (per file, optionally in parallel) -> QC -> store + accounting.

Per-file isolation: a missing, unreadable or undecodable file becomes a :class:`FileError` in
the accounting and the run goes on; a file is only marked ingested (manifest) after its rows
are written, so a failed or interrupted file is retried by the next run.

Parallelism: decoding, the expensive part, is farmed out per file to ``executor`` (any
``concurrent.futures.Executor``: pass ``dask.distributed.Client(...).get_executor()`` to run on a
Dask cluster), to a Dask cluster named by ``IngestConfig.scheduler`` (see
:mod:`stratocast.obs.parallel`) or, when ``workers > 1`` and neither is given, a local process
pool. Results are consumed in input order whatever runs them, so every path stores the same rows
and the same accounting. QC and
writing happen in the calling process on the whole run, because duplicate and temporal checks
need every file of the run (and the already-stored neighbours) together.

Remote inputs (``s3://``, ``http(s)://`` ...) are downloaded to a content-addressed cache first
(:mod:`stratocast.obs.remote`) and then read like local files.
"""

from __future__ import annotations

import glob
import logging
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, field_validator
from tqdm import tqdm

from stratocast.config import ComponentConfig
from stratocast.obs.accounting import Accounting, FileError
from stratocast.obs.parallel import dask_client, map_ordered
from stratocast.obs.qc import QCConfig, run_qc
from stratocast.obs.registry import available_sources, get_source
from stratocast.obs.remote import RemoteError, expand, fetch, is_remote
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import (
    file_hash,
    is_ingested,
    read_observations,
    write_manifest,
    write_observations,
    write_quarantine,
)
from stratocast.obs.table import Decoded, collect

log = logging.getLogger(__name__)


class SourceSpec(ComponentConfig):
    """One source of a run: registry name, input globs, reader options."""

    name: str
    paths: list[str] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in available_sources():
            raise ValueError(f"unknown source {v!r}; available: {', '.join(available_sources())}")
        return v


class IngestConfig(ComponentConfig):
    sources: list[SourceSpec]
    qc: QCConfig = QCConfig()
    workers: int = Field(default=1, ge=1, description="decode processes; 1 = in this process")
    scheduler: str | None = Field(
        default=None,
        description="Dask: 'local' (a LocalCluster of `workers` processes for this run) or the "
        "address of a running scheduler ('tcp://host:8786'); None = no Dask",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for remote paths (e.g. endpoint_url, key, secret, anon)",
    )
    cache_dir: str | None = Field(
        default=None, description="download cache for remote paths; default <store>/cache/remote"
    )
    qc_against_store: bool = Field(
        default=True, description="use already-stored rows as context for duplicate/temporal checks"
    )


@dataclass
class _Task:
    source: str
    options: dict[str, Any]
    path: Path  # local file the reader opens (a cached download for remote inputs)
    key: str  # sha256 of the content
    origin: str  # what the user named: the local path or the URL


def _decode_file(
    source: str, options: dict[str, Any], path: Path, catalogue: StationCatalogue | None
) -> Decoded | str:
    """Decode one file; any failure comes back as text so one bad file never sinks the run."""
    try:
        reader = get_source(source, **options)
        return collect(reader.read(path, catalogue), source)
    except Exception as err:  # isolate per file: the error text is recorded in the accounting
        log.debug("decode of %s failed:\n%s", path, traceback.format_exc())
        return f"{type(err).__name__}: {err}"


def _expand_remote(
    cfg: IngestConfig, spec: SourceSpec, pattern: str, cache: Path, acc: Accounting
) -> list[tuple[Path, str, str]]:  # -> (cached path, sha256, url), recording failures
    account = acc.source(spec.name)
    try:
        urls = expand(pattern, cfg.storage_options)
    except RemoteError as err:
        acc.file_errors.append(FileError(spec.name, pattern, str(err)))
        account.files_failed += 1
        return []
    if not urls:
        acc.file_errors.append(FileError(spec.name, pattern, "no file matches"))
        account.files_failed += 1
        return []
    found: list[tuple[Path, str, str]] = []
    for url in urls:
        try:
            path, key = fetch(url, cfg.storage_options, cache)
        except RemoteError as err:
            what = "file not found" if "file not found" in str(err) else f"unreadable: {err}"
            acc.file_errors.append(FileError(spec.name, url, what))
            account.files_failed += 1
            continue
        found.append((path, key, url))
    return found


def _expand(
    cfg: IngestConfig, store: Path, acc: Accounting
) -> list[_Task]:  # globs -> tasks, recording missing/unreadable/already-ingested files
    tasks: list[_Task] = []
    seen: set[tuple[str, str]] = set()
    cache = Path(cfg.cache_dir) if cfg.cache_dir else store / "cache" / "remote"
    for spec in cfg.sources:
        account = acc.source(spec.name)
        for pattern in spec.paths:
            if is_remote(pattern):
                for path, key, url in _expand_remote(cfg, spec, pattern, cache, acc):
                    if (spec.name, key) in seen or is_ingested(store, spec.name, key):
                        account.files_skipped += 1
                        continue
                    seen.add((spec.name, key))
                    tasks.append(_Task(spec.name, dict(spec.options), path, key, url))
                continue
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                what = "no file matches" if glob.has_magic(pattern) else "file not found"
                acc.file_errors.append(FileError(spec.name, pattern, what))
                account.files_failed += 1
                continue
            for m in matches:
                path = Path(m)
                if not path.is_file():
                    if not glob.has_magic(pattern):  # named explicitly: say why it is ignored
                        acc.file_errors.append(FileError(spec.name, m, "not a regular file"))
                        account.files_failed += 1
                    continue  # a directory a glob happened to match
                try:
                    key = file_hash(path)
                except OSError as err:
                    acc.file_errors.append(
                        FileError(spec.name, m, f"unreadable: {err.strerror or err}")
                    )
                    account.files_failed += 1
                    continue
                if (spec.name, key) in seen or is_ingested(store, spec.name, key):
                    account.files_skipped += 1
                    continue
                seen.add((spec.name, key))
                tasks.append(_Task(spec.name, dict(spec.options), path, key, m))
    return tasks


def _run_decode(
    tasks: list[_Task],
    catalogue: StationCatalogue | None,
    workers: int,
    executor: Executor | None,
    progress: bool,
    scheduler: str | None = None,
) -> Iterator[tuple[_Task, Decoded | str]]:
    bar = tqdm(total=len(tasks), desc="decode", unit="file", disable=not progress)
    try:
        if executor is None and scheduler is not None and tasks:
            with dask_client(scheduler, workers) as client:
                calls = [(t.source, t.options, t.path) for t in tasks]
                for t, r in zip(
                    tasks, map_ordered(client, _decode_file, calls, catalogue), strict=True
                ):
                    yield t, r
                    bar.update()
            return
        if executor is None and workers <= 1:
            for t in tasks:
                yield t, _decode_file(t.source, t.options, t.path, catalogue)
                bar.update()
            return
        own = executor is None
        # spawn, not fork: ecCodes and threads in the parent make fork unsafe
        pool = executor or ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        try:
            futures = [
                pool.submit(_decode_file, t.source, t.options, t.path, catalogue) for t in tasks
            ]
            for t, f in zip(tasks, futures, strict=True):
                yield t, f.result()
                bar.update()
        finally:
            if own:
                pool.shutdown()
    finally:
        bar.close()


def _context(store: Path, values: pd.DataFrame, cfg: IngestConfig) -> pd.DataFrame | None:
    if not cfg.qc_against_store or values.empty:
        return None
    margin = pd.Timedelta(hours=cfg.qc.window_hours)
    return read_observations(
        store,
        start=values["time"].min() - margin,
        end=values["time"].max() + margin,
        stations=values["station_id"].unique().tolist(),
        sources=values["source"].unique().tolist(),
    )


def ingest(
    cfg: IngestConfig,
    store_dir: Path | str,
    catalogue: StationCatalogue | None = None,
    progress: bool = True,
    executor: Executor | None = None,
) -> Accounting:
    """Ingest every file of ``cfg`` into the store at ``store_dir``; return the accounting.

    The accounting is also written to ``<store>/accounting/<run_id>.json``.
    """
    store = Path(store_dir)
    acc = Accounting(run_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ"))
    tasks = _expand(cfg, store, acc)

    decoded: list[tuple[_Task, Decoded]] = []
    offset = 0
    for task, result in _run_decode(
        tasks, catalogue, cfg.workers, executor, progress, cfg.scheduler
    ):
        if isinstance(result, str):
            acc.file_errors.append(FileError(task.source, task.origin, result))
            acc.source(task.source).files_failed += 1
            continue
        # report keys restart at 0 in each file: make them unique across the run
        result.values["report_key"] += offset
        result.values["_file"] = len(decoded)
        offset += result.n_reports
        decoded.append((task, result))

    frames = [d.values for _, d in decoded]
    values = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not values.empty:
        if progress:  # QC is one vectorised pass: a message, not a bar
            print(f"quality control on {len(values):,} values ...", flush=True)
        values = run_qc(values, cfg.qc, _context(store, values, cfg))

    # One pass to split the run's table by input file (a boolean mask per file would scan
    # every row once per file: quadratic in a year of files).
    by_file = dict(iter(values.groupby("_file", sort=False))) if not values.empty else {}
    for i, (task, d) in enumerate(tqdm(decoded, desc="store", unit="file", disable=not progress)):
        rows = by_file.get(i, values.iloc[:0])
        bad = rows["check"].notna() if not rows.empty else pd.Series(dtype=bool)
        good_rows, bad_rows = rows[~bad], rows[bad]
        write_observations(store, task.source, task.key, good_rows)
        quarantine = (
            pd.concat([bad_rows, d.rejected], ignore_index=True) if len(bad_rows) else (d.rejected)
        )
        write_quarantine(store, task.source, task.key, quarantine)
        _account(acc, task.source, d, good_rows, bad_rows)
        write_manifest(
            store,
            task.source,
            task.key,
            {
                "source": task.source,
                "path": task.origin,
                "sha256": task.key,
                "run_id": acc.run_id,
                "values_stored": len(good_rows),
                "values_quarantined": len(bad_rows),
                "records_rejected": len(d.rejected),
            },
        )
    acc.verify()
    acc.write(store / "accounting" / f"{acc.run_id}.json")
    return acc


def _account(
    acc: Accounting, source: str, d: Decoded, good: pd.DataFrame, bad: pd.DataFrame
) -> None:
    a = acc.source(source)
    a.files_ok += 1
    stored_keys = set(good["report_key"].unique()) if len(good) else set()
    lost = bad[~bad["report_key"].isin(stored_keys)] if len(bad) else bad
    lost_reports = lost.groupby("report_key")["check"].first() if len(lost) else pd.Series()
    a.reports_read += d.n_reports + len(d.rejected)
    a.reports_stored += len(stored_keys)
    a.reports_quarantined += len(lost_reports) + len(d.rejected)
    a.values_decoded += len(d.values)
    a.values_stored += len(good)
    a.values_quarantined += len(bad)
    a.add_counts(
        Counter(lost_reports.tolist()) + Counter(d.rejected["check"].tolist()),
        Counter(bad["check"].tolist()) if len(bad) else Counter(),
    )
