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

Corrections across runs: a correction (CCA ...) whose original an earlier run stored moves
that original from ``obs`` to ``superseded`` (:func:`stratocast.obs.store.retract`) before
the run writes any new row, and the run's accounting reports it as ``superseded_in_store``;
an original (or an older letter) arriving after its correction is quarantined as
``corrected``. Parts of a file named by a file of this run come from an interrupted earlier
attempt at it: they are not QC context, and are replaced.

Receipt time: every stored row carries ``received`` (UTC), when its input file was received,
chosen per run (``IngestConfig.received``) or per source (``SourceSpec.received``):

* ``mtime`` (default): the file's modification time. An inbox that a downloader, a WIS2/LDM
  client or :func:`stratocast.world.replay.replay` fills by atomic rename keeps the time the
  file appeared there; a remote input (downloaded by this run) gets the run's start time;
* ``arrival``: the file's arrival time in an arrival manifest (``IngestConfig.arrivals``: the
  world's ``arrivals.csv`` or the directory holding it), looked up by content hash; a file
  the manifest does not list is a file error (not ingested, retried by the next run);
* ``ingest``: this run's start time (wall clock).

Re-ingesting a file is skipped by its content hash, so the *first* receipt is the one kept;
a corrected bulletin is another file, with its own receipt time (and the rows it retracts
record it as ``superseded_at``). Pointing a source at an inbox folder
(``paths: [inbox/metar/*.txt]``) therefore ingests, on each run, only the files that arrived
since the last one; the hidden temp names of an in-progress delivery match no such glob.

Remote inputs (``s3://``, ``http(s)://`` ...) are downloaded to a content-addressed cache first
(:mod:`stratocast.obs.remote`) and then read like local files.
"""

from __future__ import annotations

import glob
import logging
import os
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator
from tqdm import tqdm

from stratocast.config import WORKERS_MAX, ComponentConfig, count
from stratocast.errors import StratocastError
from stratocast.obs.accounting import Accounting, FileError, SourceAccount
from stratocast.obs.qc import QCConfig, run_qc, superseded_in_store
from stratocast.obs.registry import available_sources, get_source
from stratocast.obs.remote import RemoteError, expand, fetch, is_remote
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import (
    PART,
    ROW_KEY,
    file_hash,
    is_ingested,
    part_key,
    read_stored,
    remove_rows,
    retract,
    write_manifest,
    write_observations,
    write_quarantine,
)
from stratocast.obs.table import Decoded, collect

log = logging.getLogger(__name__)

#: where a row's ``received`` time comes from (module docstring)
ReceivedMode = Literal["mtime", "arrival", "ingest"]


class SourceSpec(ComponentConfig):
    """One source of a run: registry name, input globs, reader options."""

    name: str
    paths: list[str] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    received: ReceivedMode | None = Field(
        default=None, description="receipt time of this source's files; None: the run's"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in available_sources():
            raise ValueError(f"unknown source {v!r}; available: {', '.join(available_sources())}")
        return v

    @model_validator(mode="after")
    def _options_build(self) -> SourceSpec:
        # Build the reader once here so that a bad option (an unknown unit, a column mapped
        # to no canonical variable, a missing station table) is one config error naming the
        # option, not one file error per input file at ingest time.
        try:
            get_source(self.name, **self.options)
        except (TypeError, ValueError, OSError) as err:
            raise ValueError(f"source {self.name!r} options: {err}") from None
        return self


#: text formats whose reports give only day and hour; IngestConfig.reference_time dates them
REFERENCE_TIME_SOURCES = ("metar", "synop_tac")


class IngestConfig(ComponentConfig):
    sources: list[SourceSpec]
    reference_time: datetime | None = Field(
        default=None,
        description="month and year for METAR/SYNOP text files whose names carry no date "
        "(naive = UTC); a source's own options.reference_time wins",
    )
    qc: QCConfig = QCConfig()
    workers: int = count(1, le=WORKERS_MAX, description="decode processes; 1 = in this process")
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
    received: ReceivedMode = Field(
        default="mtime",
        description="receipt time of each file: its mtime (an inbox), its arrival in the "
        "`arrivals` manifest (a world replay) or this run's start time",
    )
    arrivals: str | None = Field(
        default=None,
        description="arrival manifest for received='arrival': arrivals.csv (columns sha256, "
        "arrival) or the world's observation directory holding it",
    )

    @model_validator(mode="after")
    def _arrivals_named(self) -> IngestConfig:
        uses = [s.name for s in self.sources if (s.received or self.received) == "arrival"]
        if uses and self.arrivals is None:
            raise ValueError(
                f"received='arrival' (sources {', '.join(uses)}) needs `arrivals`, the arrival "
                "manifest (arrivals.csv) or the directory holding it"
            )
        return self


@dataclass
class _Task:
    source: str
    options: dict[str, Any]
    path: Path  # local file the reader opens (a cached download for remote inputs)
    key: str  # sha256 of the content
    origin: str  # what the user named: the local path or the URL
    received: pd.Timestamp | Ranges  # UTC, microseconds; or per byte range of the file


@dataclass(frozen=True)
class Ranges:
    """Receipt times per byte range of one file: a file that collects many transmissions
    (a day of METAR bulletins), each received at its own time (the arrival manifest's
    items by ``path``, ``offset``, ``length``)."""

    offsets: np.ndarray  # int64, ascending
    ends: np.ndarray  # int64, offset + length
    arrivals: pd.DatetimeIndex  # UTC

    @property
    def latest(self) -> pd.Timestamp:
        return pd.Timestamp(self.arrivals.max()).floor("us")

    def of_lines(self, data: bytes, lines: np.ndarray) -> pd.DatetimeIndex:
        """Receipt times of 1-based text lines: the item holding each line's first byte; a
        line in no item (framing between bulletins) takes the file's latest receipt."""
        starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1])
        at = starts[np.clip(lines - 1, 0, len(starts) - 1)]
        i = np.searchsorted(self.offsets, at, side="right") - 1
        inside = (i >= 0) & (at < self.ends[np.clip(i, 0, None)])
        got: pd.DatetimeIndex = self.arrivals[np.clip(i, 0, None)]
        return got.where(inside, self.latest)


class _Receipt:
    """Receipt times of one run's files, by the run's and each source's ``received`` mode."""

    def __init__(self, cfg: IngestConfig, now: datetime) -> None:
        self.cfg = cfg
        self.now = pd.Timestamp(now).tz_convert("UTC").floor("us")
        self._arrivals: dict[str, pd.Timestamp] | None = None
        self._ranges: dict[Path, Ranges] | None = None

    def _manifest(self) -> tuple[Path, pd.DataFrame]:
        path = Path(str(self.cfg.arrivals))
        if path.is_dir():
            path = path / "arrivals.csv"
        try:
            cols = ["sha256", "arrival", "path", "offset", "length"]
            df = pd.read_csv(path, usecols=cols, dtype={"sha256": str, "path": str})
        except (OSError, ValueError) as err:
            raise IngestConfigError(f"arrival manifest {path}: {err}") from None
        df["arrival"] = pd.to_datetime(df["arrival"], utc=True)
        return path, df

    def _by_hash(self) -> dict[str, pd.Timestamp]:
        if self._arrivals is None:
            _, df = self._manifest()
            first = df["arrival"].groupby(df["sha256"]).min()  # identical bytes: the first copy
            self._arrivals = {str(k): pd.Timestamp(v) for k, v in first.items()}
        return self._arrivals

    def _by_path(self) -> dict[Path, Ranges]:
        """The manifest's items by the file they were cut from (resolved paths)."""
        if self._ranges is None:
            where, df = self._manifest()
            self._ranges = {}
            for name, g in df.sort_values("offset").groupby("path"):
                off = g["offset"].to_numpy(np.int64)
                self._ranges[(where.parent / str(name)).resolve()] = Ranges(
                    off, off + g["length"].to_numpy(np.int64), pd.DatetimeIndex(g["arrival"])
                )
        return self._ranges

    def of(self, spec: SourceSpec, key: str, local: Path | None) -> pd.Timestamp | Ranges | str:
        """The receipt time of one file (or of each of its byte ranges, for a file the
        manifest's items were cut from), or why there is none (a file error)."""
        mode = spec.received or self.cfg.received
        if mode == "arrival":
            found = self._by_hash().get(key)
            if found is not None:
                return found.floor("us")
            ranges = None if local is None else self._by_path().get(local.resolve())
            if ranges is None:
                return f"not in the arrival manifest {self.cfg.arrivals}"
            return ranges
        if mode == "mtime" and local is not None:
            try:
                ns = os.stat(local).st_mtime_ns
            except OSError as err:
                return f"unreadable: {err.strerror or err}"
            return pd.Timestamp(ns, unit="ns", tz="UTC").floor("us")
        return self.now  # "ingest", and "mtime" of a download this run made


class IngestConfigError(StratocastError, ValueError):
    """An ingest setting that only fails when used (an unreadable arrival manifest)."""


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
    cfg: IngestConfig, store: Path, acc: Accounting, receipt: _Receipt
) -> list[_Task]:  # globs -> tasks, recording missing/unreadable/already-ingested files
    tasks: list[_Task] = []

    def received(
        spec: SourceSpec, key: str, local: Path | None, origin: str
    ) -> pd.Timestamp | Ranges | None:
        when = receipt.of(spec, key, local)
        if isinstance(when, str):
            acc.file_errors.append(FileError(spec.name, origin, when))
            acc.source(spec.name).files_failed += 1
            return None
        return when

    seen: set[tuple[str, str]] = set()
    cache = Path(cfg.cache_dir) if cfg.cache_dir else store / "cache" / "remote"
    for spec in cfg.sources:
        account = acc.source(spec.name)
        options = dict(spec.options)
        if cfg.reference_time is not None and spec.name in REFERENCE_TIME_SOURCES:
            options.setdefault("reference_time", cfg.reference_time)
        for pattern in spec.paths:
            if is_remote(pattern):
                for path, key, url in _expand_remote(cfg, spec, pattern, cache, acc):
                    if (spec.name, key) in seen or is_ingested(store, spec.name, key):
                        account.files_skipped += 1
                        continue
                    when = received(spec, key, None, url)
                    if when is None:
                        continue
                    seen.add((spec.name, key))
                    tasks.append(_Task(spec.name, dict(options), path, key, url, when))
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
                when = received(spec, key, path, m)
                if when is None:
                    continue
                seen.add((spec.name, key))
                tasks.append(_Task(spec.name, dict(options), path, key, m, when))
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
            # Dask only when a scheduler is asked for: every CLI command imports this module
            # (IngestConfig) and most never decode on a cluster.
            from stratocast.obs.parallel import dask_client, map_ordered

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


@dataclass
class _StoreView:
    """What the store holds around this run's values, split by what ingest does with it."""

    context: pd.DataFrame  # logically stored rows the run's QC compares against
    retracted: pd.DataFrame  # stored rows this run's corrections replace (+ superseded_by)
    prior: pd.DataFrame  # superseded rows an interrupted attempt of one of this run's files wrote
    own: pd.DataFrame  # obs rows an interrupted attempt of one of this run's files wrote
    cleanup: pd.DataFrame  # obs rows already superseded but not yet removed (a crash in between)


def _keys_of(parts: pd.Series) -> pd.Series:
    # one Path parse per part file, not per row: a year's window holds millions of rows
    return parts.map({p: part_key(p) for p in parts.unique()})


def _in(rows: pd.DataFrame, other: pd.DataFrame) -> pd.Series:
    if rows.empty or other.empty:
        return pd.Series(False, index=rows.index)
    keys = pd.MultiIndex.from_frame(other[ROW_KEY])
    return pd.Series(pd.MultiIndex.from_frame(rows[ROW_KEY]).isin(keys), index=rows.index)


def _store_view(store: Path, values: pd.DataFrame, cfg: IngestConfig, keys: set[str]) -> _StoreView:
    """Read the stored rows of the run's stations and times (± the QC window) and sort them.

    ``keys`` are the run's (shortened) file hashes: parts named by one of them come from an
    interrupted earlier attempt at the same file, which this run rewrites, so they are neither
    QC context nor retractable.
    """
    margin = pd.Timedelta(hours=cfg.qc.window_hours if cfg.qc_against_store else 0)
    obs, gone = read_stored(
        store,
        start=values["time"].min() - margin,
        end=values["time"].max() + margin,
        stations=values["station_id"].dropna().unique().tolist(),
        sources=values["source"].unique().tolist(),
    )
    own = _keys_of(obs[PART]).isin(keys)
    retired = _in(obs, gone)
    live = obs[~own & ~retired]
    by = superseded_in_store(values, live)
    hit = by.notna()
    retracted = live[hit].assign(superseded_by=by[hit], reason="replaced by correction " + by[hit])
    prior = gone[_keys_of(gone[PART]).isin(keys)]
    return _StoreView(live[~hit], retracted, prior, obs[own], obs[retired & ~own])


def _retract_all(
    store: Path, view: _StoreView, values: pd.DataFrame, decoded: list[tuple[_Task, Decoded]]
) -> dict[int, pd.DataFrame]:
    """Move the stored rows this run's corrections replace out of ``obs``, before any new row
    is written (a crash then leaves the correcting files unmanifested: the next run redoes
    them, and the retracted rows are already in exactly one place). Returns, per correcting
    file (index into ``decoded``), the rows moved, for that file's accounting."""
    if view.retracted.empty and view.prior.empty and view.cleanup.empty:
        return {}  # the common case: no correction of anything stored
    file_of = values.drop_duplicates("report_id").set_index("report_id")["_file"]
    new = view.retracted.assign(_key=view.retracted["superseded_by"].map(file_of))
    keys = {task.key[:16]: i for i, (task, _) in enumerate(decoded)}
    prior = view.prior.assign(_key=_keys_of(view.prior[PART]).map(keys))
    moved: dict[int, pd.DataFrame] = {}
    for i, (task, _) in enumerate(decoded):
        rows = pd.concat([new[new["_key"] == i], prior[prior["_key"] == i]], ignore_index=True)
        if rows.empty:
            continue
        # prior rows go back into the superseded part this replaces, or they would be lost
        rows = rows.drop_duplicates(ROW_KEY).assign(superseded_at=_latest(task.received))
        retract(store, task.source, task.key, rows, new.loc[new["_key"] == i, PART].tolist())
        moved[i] = rows
    # rows already in superseded but still in an obs part: a crash between retract's steps
    remove_rows(view.cleanup[PART].tolist(), view.cleanup)
    return moved


def ingest(
    cfg: IngestConfig,
    store_dir: Path | str,
    catalogue: StationCatalogue | None = None,
    progress: bool = True,
    executor: Executor | None = None,
) -> Accounting:
    """Ingest every file of ``cfg`` into the store at ``store_dir``; return the accounting.

    Each file's own account is committed in its manifest with its rows (what
    :func:`~stratocast.obs.accounting.store_totals` adds up, so a crash loses no count); the
    run's accounting is also written to ``<store>/accounting/<run_id>.json`` at the end.
    """
    store = Path(store_dir)
    now = datetime.now(UTC)
    acc = Accounting(run_id=now.strftime("%Y%m%dT%H%M%S%fZ"))
    tasks = _expand(cfg, store, acc, _Receipt(cfg, now))

    decoded: list[tuple[_Task, Decoded]] = []
    offset = 0
    for task, result in _run_decode(
        tasks, catalogue, cfg.workers, executor, progress, cfg.scheduler
    ):
        if isinstance(result, str):
            acc.file_errors.append(FileError(task.source, task.origin, result))
            acc.source(task.source).files_failed += 1
            continue
        _stamp(result, task.received, task.path)
        # report keys restart at 0 in each file: make them unique across the run
        result.values["report_key"] += offset
        result.values["_file"] = len(decoded)
        offset += result.n_reports
        decoded.append((task, result))

    frames = [d.values for _, d in decoded]
    values = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    moved: dict[int, pd.DataFrame] = {}
    remaining = pd.DataFrame(columns=["source", "report_id"])
    own = pd.DataFrame(columns=[PART])
    if not values.empty:
        if progress:  # QC is one vectorised pass: a message, not a bar
            print(f"quality control on {len(values):,} values ...", flush=True)
        view = _store_view(store, values, cfg, {t.key[:16] for t, _ in decoded})
        context = view.context if cfg.qc_against_store else None
        values = run_qc(values, cfg.qc, context, stored=view.context, catalogue=catalogue)
        moved = _retract_all(store, view, values, decoded)
        own = view.own
        remaining = view.context
    counted: set[tuple[str, str]] = set()  # (source, report_id) already superseded_in_store

    # One pass to split the run's table by input file (a boolean mask per file would scan
    # every row once per file: quadratic in a year of files).
    by_file = dict(iter(values.groupby("_file", sort=False))) if not values.empty else {}
    for i, (task, d) in enumerate(tqdm(decoded, desc="store", unit="file", disable=not progress)):
        rows = by_file.get(i, values.iloc[:0])
        bad = rows["check"].notna() if not rows.empty else pd.Series(dtype=bool)
        good_rows, bad_rows = rows[~bad], rows[bad]
        written = write_observations(store, task.source, task.key, good_rows)
        # an interrupted attempt's part for a date that now has no stored row
        stale = own.loc[_keys_of(own[PART]) == task.key[:16], PART].map(Path)
        for part in set(stale) - set(written):
            part.unlink(missing_ok=True)
        parts = [f for f in (bad_rows, d.rejected, d.unparsed) if f is not None and len(f)]
        quarantine = pd.concat(parts, ignore_index=True) if parts else d.rejected
        write_quarantine(store, task.source, task.key, quarantine)
        account = _file_account(task, d, good_rows, bad_rows)
        if i in moved:
            _account_superseded(account, task.source, moved[i], remaining, counted)
        # the manifest is the file's commit point: its rows and its account land together
        write_manifest(
            store,
            task.source,
            task.key,
            {
                "source": task.source,
                "path": task.origin,
                "sha256": task.key,
                "run_id": acc.run_id,
                "received": _latest(task.received).isoformat(),
                "values_stored": len(good_rows),
                "values_quarantined": len(bad_rows),
                "records_rejected": len(d.rejected),
                "account": asdict(account),
            },
        )
        acc.source(task.source).add(account)
    acc.verify()
    acc.write(store / "accounting" / f"{acc.run_id}.json")
    return acc


def _latest(received: pd.Timestamp | Ranges) -> pd.Timestamp:
    return received.latest if isinstance(received, Ranges) else received


def _stamp(d: Decoded, received: pd.Timestamp | Ranges, path: Path) -> None:
    """Every row of one file, stored or quarantined, gets the file's receipt time (or its
    report's line's, for a file of many transmissions: report ids are ``file:line...``)."""
    data = path.read_bytes() if isinstance(received, Ranges) else b""
    for frame in (d.values, d.rejected, d.unparsed):
        if frame is None:
            continue
        if not isinstance(received, Ranges):
            frame["received"] = received.as_unit("us")  # a scalar: no per-row Series
            continue
        ids = frame["report_id"].astype(str) if "report_id" in frame else pd.Series([], dtype=str)
        line = pd.to_numeric(ids.str.split(":").str[1], errors="coerce")
        lines = line.fillna(0).to_numpy(np.int64)
        when = received.of_lines(data, lines).as_unit("us")
        frame["received"] = pd.Series(when, index=frame.index)


def _account_superseded(
    a: SourceAccount,
    source: str,
    rows: pd.DataFrame,
    remaining: pd.DataFrame,
    counted: set[tuple[str, str]],
) -> None:
    """Count stored values one correcting file moved to ``superseded``, and the earlier
    reports left with none (each once per run, by the first file that retracts from it)."""
    a.values_superseded_in_store += len(rows)
    still = set(remaining.loc[remaining["source"] == source, "report_id"])
    gone = {(source, r) for r in set(rows["report_id"]) - still} - counted
    counted |= gone
    a.reports_superseded_in_store += len(gone)


def _file_account(task: _Task, d: Decoded, good: pd.DataFrame, bad: pd.DataFrame) -> SourceAccount:
    """One stored file's account: its reports, values and (text sources) characters."""
    a = SourceAccount(files_ok=1)
    stored_keys = set(good["report_key"].unique()) if len(good) else set()
    lost = bad[~bad["report_key"].isin(stored_keys)] if len(bad) else bad
    lost_reports = lost.groupby("report_key")["check"].first() if len(lost) else pd.Series()
    a.reports_read = d.n_reports + len(d.rejected)
    a.reports_stored = len(stored_keys)
    a.reports_quarantined = len(lost_reports) + len(d.rejected)
    a.values_decoded = len(d.values)
    a.values_stored = len(good)
    a.values_quarantined = len(bad)
    a.add_counts(
        Counter(lost_reports.tolist()) + Counter(d.rejected["check"].tolist()),
        Counter(bad["check"].tolist()) if len(bad) else Counter(),
    )
    a.unparsed_spans = d.n_unparsed
    if d.text is not None:
        a.text_files = 1
        a.text_chars = d.text.chars_total
        a.text_chars_in_records = d.text.chars_in_records
        a.text_chars_framing = d.text.chars_framing
        a.text_chars_unparsed = d.text.chars_unparsed
        if not d.text.balanced:  # a reader bug: Accounting.verify fails the run at its end
            log.error("%s: text identity broken: %s", task.origin, d.text)
    return a
