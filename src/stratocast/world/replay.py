"""Replay the world's arrival schedule into an inbox folder, as a real feed fills one.

:func:`replay` delivers each item of a :class:`~stratocast.world.arrivals.Schedule` whose
arrival lies in ``[start, end)`` to ``<inbox>/<item>`` (``metar/...txt``, ``synop_bufr/...bufr``)
in arrival order: instantly (``speed=None``, for tests and catch-up) or paced against a clock
at ``speed`` simulated seconds per wall second (1 = real time). Each file is written to a
hidden temp name in its target folder and renamed into place, so a watcher listing the inbox
never sees half a file (hidden names match no ingest glob). The delivered file's mtime is
its simulated arrival time (``stamp_mtime``), so "received = mtime" reads the simulated clock.

Replaying the same window twice writes the same bytes under the same names: ingest, which
skips files by content hash, then stores nothing new.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from stratocast.errors import StratocastError
from stratocast.world.arrivals import Schedule


class ReplayError(StratocastError, ValueError):
    """A replay window or speed that makes no sense."""


class Clock(Protocol):
    """What replay paces against: seconds on a monotonic clock, and a way to wait."""

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real clock (monotonic, so a system clock step does not bunch deliveries)."""

    def time(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Delivery:
    """One delivered item: where it went, when it was due and when it landed (clock time)."""

    item: str
    kind: str
    path: Path
    arrival: pd.Timestamp
    obs_time: pd.Timestamp
    delivered_at: float  # clock.time() right after the rename (None-speed: the same clock)


def _utc(t: datetime | str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def deliver(data: bytes, target: Path, mtime: float | None = None, fsync: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically: a hidden temp file in the same folder (same
    file system, so the rename is atomic), stamped, then renamed over ``target``.

    The rename makes delivery atomic for readers; ``fsync`` also makes it durable across a
    machine crash (a real downloader wants that; a replay can simply be run again, and an
    fsync per bulletin costs ~5 ms: a month of the default network, 2072 items, 10 s).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.replace(tmp, target)
    return target


def replay(
    schedule: Schedule,
    inbox_dir: Path | str,
    start: datetime | str | pd.Timestamp,
    end: datetime | str | pd.Timestamp,
    speed: float | None = None,
    clock: Clock | None = None,
    stamp_mtime: bool = True,
    fsync: bool = False,
) -> list[Delivery]:
    """Deliver the items arriving in ``[start, end)`` (naive = UTC) into ``inbox_dir``.

    ``speed=None``: all at once, in arrival order. ``speed=N``: item ``i`` lands ``(arrival_i -
    start) / N`` seconds of ``clock`` after the call (default :class:`WallClock`). Returns the
    deliveries in the order they were made. ``fsync``: see :func:`deliver`.
    """
    t0, t1 = _utc(start), _utc(end)
    if t1 < t0:
        raise ReplayError(f"replay window ends ({t1}) before it starts ({t0})")
    if speed is not None and not speed > 0:
        raise ReplayError(f"replay speed must be > 0 (simulated s per wall s), got {speed}")
    clock = clock or WallClock()
    inbox = Path(inbox_dir)
    items = schedule.items
    window = items[(items["arrival"] >= t0) & (items["arrival"] < t1)]
    window = window.sort_values(["arrival", "item"], kind="stable")
    began = clock.time()
    out: list[Delivery] = []
    for row in window.itertuples(index=False):
        arrival = pd.Timestamp(row.arrival)
        if speed is not None:
            due = began + (arrival - t0).total_seconds() / speed
            wait = due - clock.time()
            if wait > 0:
                clock.sleep(wait)
        target = inbox / str(row.item)
        mtime = arrival.timestamp() if stamp_mtime else None
        deliver(schedule.payload(row), target, mtime, fsync)
        out.append(
            Delivery(
                str(row.item),
                str(row.kind),
                target,
                arrival,
                pd.Timestamp(row.obs_time),
                clock.time(),
            )
        )
    return out
