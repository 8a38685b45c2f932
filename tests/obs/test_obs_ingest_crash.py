"""Accounting that survives a crash: ``stratocast ingest`` killed (SIGKILL) at random points,
and stopped by a full disk, then re-run; after each re-run the store-wide identity holds and
the store holds what one uninterrupted run stores.

Input: the real ISD-Lite station-years and the wis2box SYNOP bulletins (with their CCA/CCB
corrections, so a re-run after a kill also retracts originals an earlier attempt stored).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stratocast.obs.accounting import Accounting, store_totals
from stratocast.obs.store import read_observations, read_quarantine, read_superseded

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
TAC = DATA / "synop_tac" / "wis2box_data"
ISD = DATA / "isd_lite"
HISTORY = DATA / "stations" / "isd-history.csv"
pytestmark = pytest.mark.skipif(
    not (TAC.is_dir() and ISD.is_dir() and HISTORY.is_file()),
    reason=f"real sample data not found under {DATA}",
)
# two 3-hourly station-years: one Parquet part per day each, a long write phase to kill in
ISD_FILES = [ISD / "318010-99999-2016.gz", ISD / "318250-99999-2016.gz"]
VALUE = ["source", "station_id", "time", "variable", "value"]


def _workdir(root: Path) -> Path:
    """A run directory: the wis2box stations as the world's stations.csv, and the config."""
    wis = pd.read_csv(TAC / "station_list.csv", dtype=str)
    wis = wis[wis["traditional_station_identifier"].str.fullmatch(r"\d{5}")]  # no FM-12 for AWS
    ids = wis["traditional_station_identifier"]
    stations = pd.DataFrame(
        {
            "station_id": ids,
            "icao": "",
            "wmo_block": ids.str[:2],
            "wmo_station": ids.str[2:],
            "name": wis["station_name"],
            "lat": wis["latitude"],
            "lon": wis["longitude"],
            "elevation_m": wis["elevation"],
            "network": "synop",
            "role": "input",
        }
    )
    run = root / "run"
    (run / "observations").mkdir(parents=True)
    stations.to_csv(run / "observations" / "stations.csv", index=False)
    cfg = {
        "workdir": str(run),
        "cache_dir": str(root / "cache"),
        "ingest": {
            "sources": [
                {"name": "synop_tac", "paths": [str(TAC / "*.txt")]},
                {
                    "name": "isd_lite",
                    "paths": [str(p) for p in ISD_FILES],
                    "options": {"stations": str(HISTORY)},
                },
            ]
        },
    }
    (root / "run.yaml").write_text(yaml.safe_dump(cfg))
    return run


def _start(root: Path, store_link: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "stratocast.cli.main", "ingest", "--no-progress"]
    cmd += ["--config", str(root / "run.yaml")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(root: Path) -> float:
    """Run ingest to its end; return how long it took (seconds)."""
    t0 = time.monotonic()
    p = _start(root)
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out.decode(errors="replace")[-3000:]
    return time.monotonic() - t0


def _identity(store: Path) -> None:
    """The store-wide identities (accounting docstring) against the rows on disk."""
    totals = store_totals(store)
    assert set(totals) == {"synop_tac", "isd_lite"}
    obs, q, gone = read_observations(store), read_quarantine(store), read_superseded(store)
    for name, t in totals.items():
        Accounting("store", {name: t}).verify()
        mine = obs[obs["source"] == name]
        assert t.values_stored - t.values_superseded_in_store == len(mine), name
        assert t.values_superseded_in_store == int((gone["source"] == name).sum()), name
        qs = q[q["source"] == name]
        assert t.values_quarantined == int(qs["variable"].notna().sum()), name
        assert t.values_decoded == t.values_stored + t.values_quarantined, name
        assert t.reports_stored - t.reports_superseded_in_store == mine["report_id"].nunique()
        assert t.unparsed_spans == int((qs["check"] == "unparsed_text").sum())
        n_files = len(list((store / "manifest" / name).glob("*.json")))
        assert t.files_ok == n_files and t.text_files == n_files


def _values(store: Path) -> pd.DataFrame:
    """What the store says was observed (report ids aside: which of two identical resends
    keeps the value depends on which run saw it first)."""
    obs = read_observations(store)[VALUE]
    return obs.sort_values(VALUE).reset_index(drop=True)


def _manifests(store: Path) -> int:
    return len(list((store / "manifest").glob("*/*.json")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, int, int]:
    """One uninterrupted run (in this process): its values, how many files it stored and the
    disk space its store takes (bytes in blocks, as a filesystem counts them)."""
    from stratocast.cli.main import main

    root = tmp_path_factory.mktemp("reference")
    run = _workdir(root)
    assert main(["ingest", "--no-progress", "--config", str(root / "run.yaml")]) == 0
    _identity(run / "store")
    n = _manifests(run / "store")
    assert n == len(list(TAC.glob("*.txt"))) + len(ISD_FILES)
    used = sum(f.stat().st_blocks * 512 for f in (run / "store").rglob("*") if f.is_file())
    return _values(run / "store"), n, used


@pytest.mark.slow
def test_kill_9_at_random_points_then_rerun(
    tmp_path: Path, reference: tuple[pd.DataFrame, int, int]
) -> None:
    want, n_files, _ = reference
    rng = random.Random(20261202)
    took = 0.0  # a whole run's wall time, once known (import time included)
    landed_mid_write = 0
    for round_ in range(4):
        root = tmp_path / f"round{round_}"
        run = _workdir(root)
        store = run / "store"
        # one or two kills before the run that finishes: at a random time (import, decode,
        # QC, retraction, writing), or just after the k-th file committed (mid-write)
        for _ in range(rng.choice([1, 2])):
            p = _start(root)
            before = _manifests(store)
            if took and rng.random() < 0.5:
                deadline = time.monotonic() + rng.uniform(0.2, 1.0) * took
                while p.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
            else:
                k = rng.randrange(before + 1, n_files)
                while p.poll() is None and _manifests(store) < k:
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.05))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
            if 0 < _manifests(store) < n_files:
                landed_mid_write += 1
        took = max(took, _finish(root))
        _identity(store)
        pd.testing.assert_frame_equal(_values(store), want)
    assert landed_mid_write >= 2  # the manifest-triggered kills alone make this near certain


def test_injected_enospc_mid_run_then_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: tuple[pd.DataFrame, int, int]
) -> None:
    """In process: the Parquet writer raises ENOSPC on its 7th part; the next run finishes."""
    from stratocast.cli.main import main
    from stratocast.obs import store as store_mod

    want, n_files, _ = reference
    run = _workdir(tmp_path)
    real = store_mod.pq.write_table
    calls = {"n": 0}

    def full_disk(table: object, where: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] >= 7:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
        real(table, where, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(store_mod.pq, "write_table", full_disk)
    try:
        rc = main(["ingest", "--no-progress", "--config", str(tmp_path / "run.yaml")])
    except OSError as err:  # until the CLI turns OSError into its one-line error
        assert err.errno == errno.ENOSPC
        rc = 2
    assert rc != 0
    assert 0 < _manifests(run / "store") < n_files
    monkeypatch.setattr(store_mod.pq, "write_table", real)
    assert main(["ingest", "--no-progress", "--config", str(tmp_path / "run.yaml")]) == 0
    _identity(run / "store")
    pd.testing.assert_frame_equal(_values(run / "store"), want)


def _mount_tmpfs(where: Path, size: int) -> bool:
    where.mkdir(parents=True)
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@pytest.mark.slow
def test_real_full_disk_then_rerun_with_room(
    tmp_path: Path, reference: tuple[pd.DataFrame, int, int]
) -> None:
    """A real ENOSPC: the store on a tmpfs too small for it; remounted larger, the re-run
    finishes. Needs root (mount); skipped elsewhere."""
    want, n_files, used = reference
    root = tmp_path / "root"
    run = _workdir(root)
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, used // 2):  # room for about half the store
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (run / "store").symlink_to(disk)
        p = _start(root)
        out, _ = p.communicate(timeout=600)
        text = out.decode(errors="replace")
        assert p.returncode != 0 and "No space left on device" in text, text[-2000:]
        assert 0 < _manifests(run / "store") < n_files, text[-2000:]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True, timeout=30)
        _finish(root)
        _identity(run / "store")
        pd.testing.assert_frame_equal(_values(run / "store"), want)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)
