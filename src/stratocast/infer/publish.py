"""Atomic publication of one product cycle: readers see the whole cycle or nothing.

Layout: ``<root>/<product>/<YYYYMMDDTHHMM>/`` holding the exported files and ``COMPLETE``
(JSON: what was published, when, from what). Everything is written into a hidden sibling
directory first, ``COMPLETE`` last, and the directory renamed into place in one step
(rename is atomic within a file system): a crash at any point leaves the previous
publications exactly as they were, and at most a ``.partial`` directory that the next attempt
of that cycle removes. ``LATEST`` (replaced atomically) names the newest cycle published.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

COMPLETE = "COMPLETE"
LATEST = "LATEST"


def stamp(cycle_time: datetime) -> str:
    return cycle_time.strftime("%Y%m%dT%H%M")


def publication(root: Path, product: str, cycle_time: datetime) -> Path:
    return root / product / stamp(cycle_time)


def published(root: Path, product: str, cycle_time: datetime) -> dict[str, Any] | None:
    """The COMPLETE record of a cycle already published, else None."""
    marker = publication(root, product, cycle_time) / COMPLETE
    if not marker.is_file():
        return None
    record: dict[str, Any] = json.loads(marker.read_text())
    return record


def previous(root: Path, product: str, before: datetime) -> tuple[datetime, Path] | None:
    """The newest complete publication of ``product`` strictly before ``before``."""
    base = root / product
    if not base.is_dir():
        return None
    limit = stamp(before)
    done = sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / COMPLETE).is_file()
    )
    older = [n for n in done if n < limit]
    if not older:
        return None
    record = json.loads((base / older[-1] / COMPLETE).read_text())
    return datetime.fromisoformat(record["cycle_time"]), base / older[-1]


def publish(
    root: Path,
    product: str,
    cycle_time: datetime,
    write: Callable[[Path], list[str]],
    record: dict[str, Any],
) -> Path:
    """``write(tmp_dir)`` writes the product's files and returns their names; then COMPLETE
    (``record`` + the file names) and the rename. An existing publication is replaced
    whole (a ``--force`` re-run); callers wanting idempotence check :func:`published` first."""
    final = publication(root, product, cycle_time)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial"
    if tmp.exists():  # an earlier attempt that crashed
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = write(tmp)
    body = json.dumps({**record, "files": files}, indent=1, default=str)
    (tmp / COMPLETE).write_text(body)
    if final.exists():
        old = final.parent / f".{final.name}.old"
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    _point_latest(final.parent, final.name)
    return final


def _point_latest(base: Path, name: str) -> None:
    current = base / LATEST
    if current.is_file() and current.read_text().strip() >= name:
        return  # a late re-run of an older cycle does not move LATEST back
    tmp = base / f".{LATEST}.{os.getpid()}"
    tmp.write_text(name + "\n")
    tmp.replace(current)
