"""Per-run ingest accounting: every report and value is stored or quarantined, per source.

Identities (checked by :meth:`Accounting.verify`, never by ``assert``)::

    reports_read  = reports_stored + reports_quarantined
    values_decoded = values_stored + values_quarantined

A report counts as stored when at least one of its values is stored; a report whose values
were all quarantined, or that could not be decoded at all, counts as quarantined (under the
check of its first quarantined value, or of its rejection).

Both identities are about the run's *own* input. A correction (CCA ...) whose original was
stored by an earlier run moves the original's values from ``obs`` to ``superseded``
(:func:`stratocast.obs.store.retract`); the run that does it reports them apart, as
``values_superseded_in_store`` (and ``reports_superseded_in_store``: earlier reports left with
no stored value), without touching its own identities. Over all the runs of a store::

    sum(values_stored) - sum(values_superseded_in_store) = rows in obs
    sum(values_superseded_in_store)                      = rows in superseded
    sum(reports_stored) - sum(reports_superseded_in_store) = reports with a value in obs

so ``sum(values_decoded) = obs + superseded + quarantined values`` still holds for the store
(:func:`store_totals` adds the files up).

Text sources (those whose reader yields a :class:`~stratocast.obs.base.TextTally` per file)
add the text identity, in characters without whitespace::

    text_chars = text_chars_in_records + text_chars_framing + text_chars_unparsed

``text_chars_in_records`` is what the raw of every report and rejection holds,
``text_chars_unparsed`` the text in no report (``unparsed_spans`` runs of it, each a
quarantine row with check ``unparsed_text``; they are not reports). Binary sources are exempt
(all five counts stay 0).

Crashes: the accounting of each input file is committed with its rows. The file's manifest,
written last and atomically, carries the file's own :class:`SourceAccount` (key ``account``),
including the values its corrections moved to ``superseded``. :func:`store_totals` adds up
these per-file accounts, so a run killed (``kill -9``) or stopped by a full disk after some
files leaves every committed file counted; the files it had not finished have no manifest,
their parts are overwritten by the run that redoes them, and that run counts them. Chosen
over rebuilding the accounting from the store on the next run because the per-value QC
verdicts and the rejections' counts are known only at decode time; the manifest already is
the commit point of a file. The per-run file ``accounting/<run_id>.json`` is still written at
the end of a run that finishes (it also holds the run's file errors and skipped files);
manifests from before per-file accounts fall back to their run's file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from stratocast.errors import StratocastError


class AccountingError(StratocastError, ValueError):
    """A store's or a run's accounting does not add up, or a part of it is missing."""


@dataclass
class SourceAccount:
    files_ok: int = 0
    files_failed: int = 0
    files_skipped: int = 0  # already ingested (same content hash)
    reports_read: int = 0
    reports_stored: int = 0
    reports_quarantined: int = 0
    values_decoded: int = 0
    values_stored: int = 0
    values_quarantined: int = 0
    reports_quarantined_by_check: dict[str, int] = field(default_factory=dict)
    values_quarantined_by_check: dict[str, int] = field(default_factory=dict)
    # stored by earlier runs, moved out of obs by this run's corrections (not in the identities)
    values_superseded_in_store: int = 0
    reports_superseded_in_store: int = 0
    # text identity (text sources only; see the module docstring)
    text_files: int = 0  # files whose reader yielded a TextTally
    text_chars: int = 0
    text_chars_in_records: int = 0
    text_chars_framing: int = 0
    text_chars_unparsed: int = 0
    unparsed_spans: int = 0

    def add(self, other: SourceAccount) -> None:
        """Add ``other``'s counts into this one (per-check counts key by key)."""
        for f in fields(SourceAccount):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                for k, n in theirs.items():
                    mine[k] = mine.get(k, 0) + n
            else:
                setattr(self, f.name, mine + theirs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceAccount:
        """From :func:`dataclasses.asdict` output; fields an older store lacks stay 0."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def add_counts(self, reports: Counter[str], values: Counter[str]) -> None:
        for target, new in (
            (self.reports_quarantined_by_check, reports),
            (self.values_quarantined_by_check, values),
        ):
            for k, n in new.items():
                target[k] = target.get(k, 0) + n


@dataclass
class FileError:
    source: str
    path: str
    error: str


@dataclass
class Accounting:
    run_id: str
    sources: dict[str, SourceAccount] = field(default_factory=dict)
    file_errors: list[FileError] = field(default_factory=list)

    def source(self, name: str) -> SourceAccount:
        return self.sources.setdefault(name, SourceAccount())

    def verify(self) -> None:
        """Raise AccountingError (a ValueError) naming the source and the broken identity."""
        for name, a in self.sources.items():
            if a.reports_read != a.reports_stored + a.reports_quarantined:
                raise AccountingError(
                    f"accounting broken for {name}: reports read {a.reports_read} != stored "
                    f"{a.reports_stored} + quarantined {a.reports_quarantined}"
                )
            if a.values_decoded != a.values_stored + a.values_quarantined:
                raise AccountingError(
                    f"accounting broken for {name}: values decoded {a.values_decoded} != "
                    f"stored {a.values_stored} + quarantined {a.values_quarantined}"
                )
            if sum(a.reports_quarantined_by_check.values()) != a.reports_quarantined:
                raise AccountingError(f"accounting broken for {name}: per-check report counts")
            if sum(a.values_quarantined_by_check.values()) != a.values_quarantined:
                raise AccountingError(f"accounting broken for {name}: per-check value counts")
            if not 0 <= a.reports_superseded_in_store <= a.values_superseded_in_store:
                raise AccountingError(f"accounting broken for {name}: superseded counts")
            text = a.text_chars_in_records + a.text_chars_framing + a.text_chars_unparsed
            if a.text_chars != text:
                raise AccountingError(
                    f"accounting broken for {name}: text characters {a.text_chars} != in "
                    f"records {a.text_chars_in_records} + framing {a.text_chars_framing} + "
                    f"unparsed {a.text_chars_unparsed}"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def read(cls, path: Path) -> Accounting:
        d = json.loads(Path(path).read_text())
        return cls(
            run_id=d["run_id"],
            sources={k: SourceAccount.from_dict(v) for k, v in d["sources"].items()},
            file_errors=[FileError(**e) for e in d["file_errors"]],
        )

    def format(self) -> str:
        """A readable table: one row per source, then quarantine reasons and file errors."""
        cols = [
            ("files", lambda a: f"{a.files_ok}/{a.files_failed}/{a.files_skipped}"),
            ("reports", lambda a: a.reports_read),
            ("stored", lambda a: a.reports_stored),
            ("quarant.", lambda a: a.reports_quarantined),
            ("values", lambda a: a.values_decoded),
            ("stored", lambda a: a.values_stored),
            ("quarant.", lambda a: a.values_quarantined),
        ]
        width = max([len("source"), *(len(s) for s in self.sources)])
        head = f"{'source':<{width}}  " + "  ".join(f"{c:>9}" for c, _ in cols)
        lines = [f"ingest run {self.run_id}  (files: ok/failed/skipped)", head, "-" * len(head)]
        for name, a in sorted(self.sources.items()):
            lines.append(f"{name:<{width}}  " + "  ".join(f"{f(a)!s:>9}" for _, f in cols))
        for name, a in sorted(self.sources.items()):
            if a.reports_quarantined_by_check or a.values_quarantined_by_check:
                lines.append(f"quarantined in {name} (check: reports / values):")
                checks = sorted({*a.reports_quarantined_by_check, *a.values_quarantined_by_check})
                for c in checks:
                    r = a.reports_quarantined_by_check.get(c, 0)
                    v = a.values_quarantined_by_check.get(c, 0)
                    lines.append(f"  {c:<20} {r:>8} / {v:>8}")
        for name, a in sorted(self.sources.items()):
            if a.text_files:
                lines.append(
                    f"text in {name} (characters, no whitespace): {a.text_chars} = "
                    f"{a.text_chars_in_records} in reports + {a.text_chars_framing} framing + "
                    f"{a.text_chars_unparsed} unparsed ({a.unparsed_spans} spans)"
                )
        for name, a in sorted(self.sources.items()):
            if a.values_superseded_in_store:
                lines.append(
                    f"superseded_in_store in {name} (earlier runs' rows replaced by corrections"
                    f" of this run): reports {a.reports_superseded_in_store} / values "
                    f"{a.values_superseded_in_store}"
                )
        if self.file_errors:
            lines.append("file errors:")
            lines.extend(f"  [{e.source}] {e.path}: {e.error}" for e in self.file_errors)
        return "\n".join(lines)


def store_totals(store: Path) -> dict[str, SourceAccount]:
    """The accounting of every file a store holds, added up per source: compare with the rows
    in the store (see the module docstring for the identities).

    Each committed file's account comes from its manifest (``<store>/manifest/<src>/*.json``,
    key ``account``); manifests written before per-file accounts name their run, whose
    ``<store>/accounting/<run_id>.json`` is added once instead.
    """
    totals: dict[str, SourceAccount] = {}
    legacy_runs: set[str] = set()
    for path in sorted((Path(store) / "manifest").glob("*/*.json")):
        entry = json.loads(path.read_text())
        account = entry.get("account")
        if account is None:
            legacy_runs.add(str(entry.get("run_id")))
            continue
        totals.setdefault(entry["source"], SourceAccount()).add(SourceAccount.from_dict(account))
    for run_id in sorted(legacy_runs):
        run = Path(store) / "accounting" / f"{run_id}.json"
        if not run.is_file():
            raise AccountingError(f"{run}: run accounting missing for manifests without an account")
        for name, a in Accounting.read(run).sources.items():
            totals.setdefault(name, SourceAccount()).add(a)
    return totals
