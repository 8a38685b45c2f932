"""Replaying the arrival schedule into an inbox: window, order, pacing, atomic delivery."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from stratocast.world.arrivals import ArrivalError, Schedule, load_schedule
from stratocast.world.network import NetworkConfig, write_observations
from stratocast.world.replay import ReplayError, WallClock, replay

NET = NetworkConfig(n_metar=60, n_synop=30, seed=5)
T0 = pd.Timestamp("2021-01-01T00:00", tz="UTC")


@pytest.fixture(scope="module")
def schedule(truth: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Schedule:
    out = tmp_path_factory.mktemp("replay") / "obs"
    write_observations(truth, NET, out, progress=False)
    return load_schedule(out)


class StepClock:
    """A clock whose sleep advances time exactly (so pacing is checked to the microsecond)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _inbox_files(inbox: Path) -> list[Path]:
    return sorted(p for p in inbox.rglob("*") if p.is_file())


def test_instant_replay_delivers_the_window_in_order(schedule: Schedule, tmp_path: Path) -> None:
    end = T0 + pd.Timedelta(hours=12)
    got = replay(schedule, tmp_path, T0, end)
    items = schedule.items
    want = items[(items["arrival"] >= T0) & (items["arrival"] < end)]
    assert [d.item for d in got] == want["item"].tolist()
    assert all(a.arrival <= b.arrival for a, b in itertools.pairwise(got))
    assert {"metar", "synop_bufr"} == {d.kind for d in got}
    files = _inbox_files(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in files) == sorted(want["item"])
    by_item = want.set_index("item")
    for d in got:
        data = d.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == by_item.loc[d.item, "sha256"]
        # the mtime is the simulated arrival: "received = mtime" reads simulated time
        assert os.stat(d.path).st_mtime == pytest.approx(d.arrival.timestamp(), abs=1e-3)
    assert not any(p.name.startswith(".") for p in files)  # no temp file left behind


def test_consecutive_windows_deliver_each_item_once(schedule: Schedule, tmp_path: Path) -> None:
    cut = T0 + pd.Timedelta(hours=7, minutes=5)
    a = replay(schedule, tmp_path, T0 - pd.Timedelta(days=1), cut)
    b = replay(schedule, tmp_path, cut, T0 + pd.Timedelta(days=5))
    names = [d.item for d in a + b]
    assert len(names) == len(set(names)) == len(schedule.items)
    assert all(d.arrival < cut for d in a) and all(d.arrival >= cut for d in b)


def test_paced_replay_follows_the_clock(schedule: Schedule, tmp_path: Path) -> None:
    clock = StepClock()
    start = T0
    got = replay(schedule, tmp_path, start, T0 + pd.Timedelta(hours=8), speed=600.0, clock=clock)
    assert clock.sleeps and all(s > 0 for s in clock.sleeps)
    for d in got:  # landed when due: (arrival - start) / speed after the call
        due = 1000.0 + (d.arrival - start).total_seconds() / 600.0
        assert d.delivered_at == pytest.approx(due, abs=1e-6)


def test_real_time_replay_never_shows_a_partial_file(schedule: Schedule, tmp_path: Path) -> None:
    """A watcher polling the inbox during a fast real-clock replay only ever reads complete
    files (each one's bytes hash to a scheduled sha256)."""
    shas = set(schedule.items["sha256"])
    seen: dict[str, str] = {}
    bad: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for sub in ("metar", "synop_bufr"):
                d = tmp_path / sub
                for p in d.glob("*") if d.is_dir() else []:
                    if p.name.startswith("."):
                        continue  # a delivery in progress: hidden, matches no ingest glob
                    try:
                        h = hashlib.sha256(p.read_bytes()).hexdigest()
                    except FileNotFoundError:
                        continue
                    seen[p.name] = h
                    if h not in shas:
                        bad.append(p.name)

    t = threading.Thread(target=watch)
    t.start()
    try:  # two simulated days in about one wall second
        got = replay(schedule, tmp_path, T0, T0 + pd.Timedelta(days=3), speed=3 * 86400.0)
    finally:
        done.set()
        t.join()
    assert not bad
    assert len(got) == len(schedule.items) and len(seen) > 0


def test_wall_clock_replay_takes_the_scaled_time(schedule: Schedule, tmp_path: Path) -> None:
    clock = WallClock()
    first = schedule.items["arrival"].iloc[0]
    end = first + pd.Timedelta(minutes=20)
    began = clock.time()
    got = replay(schedule, tmp_path, first, end, speed=2400.0)  # 20 min in 0.5 s
    last = got[-1]
    assert last.delivered_at - began >= (last.arrival - first).total_seconds() / 2400.0
    assert clock.time() - began < 5.0


def test_bad_window_and_speed(schedule: Schedule, tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="before it starts"):
        replay(schedule, tmp_path, T0, T0 - pd.Timedelta(hours=1))
    with pytest.raises(ReplayError, match="speed"):
        replay(schedule, tmp_path, T0, T0 + pd.Timedelta(hours=1), speed=0.0)
    assert replay(schedule, tmp_path, T0 - pd.Timedelta(days=9), T0 - pd.Timedelta(days=8)) == []


def test_changed_source_file_is_refused(schedule: Schedule, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(schedule.root, root)
    sched = load_schedule(root)
    day = root / "metar" / "20210101.txt"
    data = bytearray(day.read_bytes())
    data[40] = ord("#") if data[40] != ord("#") else ord("*")
    day.write_bytes(bytes(data))
    with pytest.raises(ArrivalError, match="no longer match"):
        replay(sched, tmp_path / "inbox", T0, T0 + pd.Timedelta(hours=1))
