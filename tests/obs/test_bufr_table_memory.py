"""The decoder's table probes do not grow the process by ecCodes' table loads per probe.

ecCodes 2.50 keeps ~42 MB for each new handle whose table selection names local tables it
does not have: DWD's own SYNOP file (centre 78, local version 0) grew a fresh process by
1.25 GB on its first message, and a damaged local-version byte (seen in the fuzz runs) by
~800 MB more. Each case runs in a fresh interpreter: peak memory is a per-process figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stratocast.obs.bufr_file import split_messages

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
SYNOP = DATA / "bufr" / "dwd_synop_20210516T12.bufr"
needs_data = pytest.mark.skipif(not SYNOP.exists(), reason=f"{SYNOP} not present")

_CHILD = """
import json, resource, sys
from pathlib import Path
from stratocast.obs.base import Report
from stratocast.obs.sources.synop_bufr import SynopBufrSource
src = SynopBufrSource()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reports = {}
for r in src.read(Path(sys.argv[1])):
    if isinstance(r, Report):
        reports[r.report_id] = [r.station_id, r.lat, r.lon, repr(sorted(r.values.items()))]
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"grown_mb": grown, "reports": reports}))
"""


def _read_in_fresh_process(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _damage_local_versions(data: bytes, numbers: list[int]) -> bytes:
    """Messages ``numbers`` (0-based) given distinct local table versions ecCodes lacks."""
    out = bytearray(data)
    for k, n in enumerate(numbers):
        offset, msg, _ = list(split_messages(data))[n]
        assert msg is not None and msg[7] == 4
        out[offset + 8 + 14] = 100 + k  # section 1 byte 15 of BUFR4: local tables version
    return bytes(out)


@needs_data
def test_a_real_file_and_damaged_table_keys_stay_bounded(tmp_path: Path) -> None:
    clean = _read_in_fresh_process(SYNOP)
    # 1.25 GB before the probes were keyed by what ecCodes loads; ~110 MB measured after
    assert clean["grown_mb"] < 400, clean["grown_mb"]
    assert len(clean["reports"]) > 400

    damaged_numbers = [5, 17, 30]
    bad = tmp_path / SYNOP.name  # same name: same report ids
    bad.write_bytes(_damage_local_versions(SYNOP.read_bytes(), damaged_numbers))
    damaged = _read_in_fresh_process(bad)
    # ~84 MB per damaged selection (two probes until the missing tables are recognised)
    # instead of ~42 MB per probe of every descriptor in the message
    assert damaged["grown_mb"] < 400 + 3 * 120, damaged["grown_mb"]
    # every report of an untouched message is identical to the clean read
    same = [rid for rid, v in damaged["reports"].items() if clean["reports"].get(rid) == v]
    assert len(same) >= len(clean["reports"]) - 3 * 40
