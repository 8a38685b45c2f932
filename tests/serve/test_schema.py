"""schemathesis against the live server's OpenAPI schema: no 5xx, no response off-schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import Server


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    server: Server, tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [
            str(st),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # schemathesis writes its cache where it runs
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert cases is not None and int(cases[1]) == int(cases[2]) > 100, run.stdout[-2000:]
