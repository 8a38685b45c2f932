"""Running the real ``stratocast`` CLI in a subprocess and checking its one-line errors:
shared by the CLI error tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stratocast.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def one_error_line(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """Exit 2 (a user error, not a bug) and stderr is exactly one line,
    ``stratocast <command>: error: ...``, with no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"stratocast {command}: error: "), lines[0]
    assert "internal error" not in lines[0]
    return lines[0]


def demo_config(tmp_path: Path, workdir: Path, **sections: dict[str, object]) -> Path:
    """The demo config with its own workdir and cache, sections updated key by key."""
    cfg = yaml.safe_load(DEMO.read_text())
    cfg["workdir"] = str(workdir)
    cfg["cache_dir"] = str(tmp_path / "cache")
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
