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
(:func:`store_totals` adds the runs up). A run that crashed wrote no accounting: the files
it had not finished carry no manifest, and the run that redoes them counts them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


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
        """Raise ValueError naming the source and the broken identity, if any."""
        for name, a in self.sources.items():
            if a.reports_read != a.reports_stored + a.reports_quarantined:
                raise ValueError(
                    f"accounting broken for {name}: reports read {a.reports_read} != stored "
                    f"{a.reports_stored} + quarantined {a.reports_quarantined}"
                )
            if a.values_decoded != a.values_stored + a.values_quarantined:
                raise ValueError(
                    f"accounting broken for {name}: values decoded {a.values_decoded} != "
                    f"stored {a.values_stored} + quarantined {a.values_quarantined}"
                )
            if sum(a.reports_quarantined_by_check.values()) != a.reports_quarantined:
                raise ValueError(f"accounting broken for {name}: per-check report counts")
            if sum(a.values_quarantined_by_check.values()) != a.values_quarantined:
                raise ValueError(f"accounting broken for {name}: per-check value counts")
            if not 0 <= a.reports_superseded_in_store <= a.values_superseded_in_store:
                raise ValueError(f"accounting broken for {name}: superseded counts")

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
            sources={k: SourceAccount(**v) for k, v in d["sources"].items()},
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
    """Every run's accounting of a store (``<store>/accounting/*.json``) added up per source:
    compare with the rows in the store (see the module docstring for the identities)."""
    totals: dict[str, SourceAccount] = {}
    for path in sorted((Path(store) / "accounting").glob("*.json")):
        for name, a in Accounting.read(path).sources.items():
            t = totals.setdefault(name, SourceAccount())
            for f in fields(SourceAccount):
                mine, theirs = getattr(t, f.name), getattr(a, f.name)
                if isinstance(mine, dict):
                    for k, n in theirs.items():
                        mine[k] = mine.get(k, 0) + n
                else:
                    setattr(t, f.name, mine + theirs)
    return totals
