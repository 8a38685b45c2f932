"""Every way a command can fail ends the same way: one line on stderr naming what and where,
exit 2, no traceback (unless ``--debug``). Real ``stratocast`` processes, real failures: a
full tmpfs, a read-only mount, a flipped byte in a shard, a garbage checkpoint."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import DEMO, REPO, demo_config, one_error_line, run_cli

from stratocast.shards.layout import Manifest

DWD_SYNOP = REPO / ".." / "shared" / "data" / "bufr" / "dwd_synop_20210516T12.bufr"


_SMALL_TRAIN: dict[str, object] = {
    "model": {"name": "obs2grid", "hidden": 8, "blocks": 1, "kernel_widths_km": [800.0]},
    "train_start": "2000-01-01T00",
    "train_end": "2000-01-15T18",
    "val_start": "2000-01-16T00",
    "val_end": "2000-01-17T18",
    "steps": 2,
    "batch_size": 4,
    "precision": "fp32",
    "tensorboard": False,
}


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``where`` (True), or yield False where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        yield False
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", str(where)], check=False)


def test_bad_config_value(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path, tmp_path / "w", train={"batch_size": "eight", "steps": 10**20})
    line = one_error_line(run_cli("train", "--config", str(cfg)), "train")
    assert str(cfg) in line and "train.batch_size" in line
    assert "train.steps: Input should be less than or equal to 100000000" in line


def test_binary_config(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(bytes(range(256)) * 4)
    line = one_error_line(run_cli("ingest", "--no-progress", "--config", str(cfg)), "ingest")
    assert f"{cfg}: not a UTF-8 text file (byte 128" in line


def test_missing_files(tmp_path: Path) -> None:
    line = one_error_line(run_cli("ingest", "--config", str(tmp_path / "nope.yaml")), "ingest")
    assert f"config file not found: {tmp_path / 'nope.yaml'}" in line
    proc = run_cli("verify", "--forecast", str(tmp_path / "f.zarr"), "--obs", str(tmp_path / "o"))
    assert str(tmp_path / "f.zarr") in one_error_line(proc, "verify")


def test_corrupted_shard_chunk(tiny_shards: tuple[Path, Manifest], tmp_path: Path) -> None:
    work = tmp_path / "w"
    shutil.copytree(tiny_shards[0], work / "shards")
    chunk = next(p for p in sorted((work / "shards" / "grid.zarr" / "c").rglob("*")) if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    line = one_error_line(
        run_cli(
            "train",
            "--no-progress",
            "--config",
            str(demo_config(tmp_path, work, train=_SMALL_TRAIN)),
        ),
        "train",
    )
    assert str(chunk) in line and "checksum" in line


def test_bad_checkpoint(tmp_path: Path) -> None:
    work = tmp_path / "w"
    (work / "train").mkdir(parents=True)
    (work / "train" / "model.pt").write_bytes(b"\x80\x04 definitely not a checkpoint")
    line = one_error_line(
        run_cli("forecast", "--no-progress", "--config", str(demo_config(tmp_path, work))),
        "forecast",
    )
    assert f"cannot read checkpoint {work / 'train' / 'model.pt'}" in line


def _ingest_config(tmp_path: Path, work: Path) -> Path:
    if not DWD_SYNOP.is_file():
        pytest.skip(f"real sample data absent: {DWD_SYNOP}")
    source = {"name": "synop_bufr", "paths": [str(DWD_SYNOP.resolve())]}
    # receipt by file mtime: this workdir has no world, so no arrival manifest
    ingest = {"sources": [source], "received": "mtime", "arrivals": None}
    return demo_config(tmp_path, work, ingest=ingest)


def test_disk_full_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    """ENOSPC from real writes: ingest into a 16 KiB tmpfs (the store's Parquet writer fails
    and names no file, so the message names the run's workdir)."""
    mnt = tmp_path / "full"
    cfg = _ingest_config(tmp_path, mnt / "w")
    with _tmpfs(mnt, "size=16k") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN); see the /dev/full test")
        line = one_error_line(run_cli("ingest", "--no-progress", "--config", str(cfg)), "ingest")
    assert "ENOSPC: " in line and str(mnt / "w") in line


def test_disk_full_on_dev_full(tmp_path: Path) -> None:
    """ENOSPC without mount rights: the sbatch script's path links to /dev/full, where every
    write fails with ENOSPC."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full absent")
    out = tmp_path / "train.sbatch"
    out.symlink_to("/dev/full")
    args = ["--config", str(DEMO), "--nodes", "1", "--gpus-per-node", "1", "--out", str(out)]
    line = one_error_line(run_cli("slurm", *args), "slurm")
    assert line.endswith("ENOSPC: No space left on device (writing /dev/full)"), line


def test_read_only_directory(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    cfg = _ingest_config(tmp_path, mnt / "w")
    with _tmpfs(mnt, "ro,size=16k") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root without mount rights: permissions cannot make a dir read-only")
            mnt.chmod(0o555)
        proc = run_cli("ingest", "--no-progress", "--config", str(cfg))
        if not mounted:
            mnt.chmod(0o755)
    line = one_error_line(proc, "ingest")
    assert ("EROFS: " in line if mounted else "EACCES: " in line) and str(mnt / "w") in line


def test_slurm_arguments(tmp_path: Path) -> None:
    proc = run_cli("slurm", "--config", str(DEMO), "--nodes", "0", "--gpus-per-node", "1")
    assert "nodes" in one_error_line(proc, "slurm")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli("--debug", "ingest", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("stratocast ingest: error: config file not")


def test_a_bug_is_one_line_with_exit_1_and_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a project error: still one line (exit 1, a bug), the traceback only with --debug."""
    from stratocast.cli import main as cli

    def broken(*_: object) -> None:
        raise ZeroDivisionError("division by zero in a stage")

    monkeypatch.setitem(cli.STAGES, "ingest", (broken, "broken"))
    assert cli.main(["ingest", "--config", str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert err == (
        "stratocast ingest: internal error: ZeroDivisionError: 'division by zero in a stage' "
        "(rerun with --debug)\n"
    )
    assert cli.main(["ingest", "--debug", "--config", str(DEMO)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in broken" in err
