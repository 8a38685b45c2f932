"""Reader fuzz suite: seeded mutants of every source's real samples (short here, long in
``benchmarks/robustness.py``).

For each mutant: nothing but :class:`SourceFileError` escapes ``read``; every record is a
Report, Rejection, Unparsed or TextTally; a Report's values are finite floats at a position on
the globe and a UTC time; a text reader's TextTally comes once, last, and its identity holds
(with the file's own non-whitespace character count as total). A real ingest of a few mutants
per source balances its accounting and stores exactly the values it says it stored.

Mutants are deterministic given (sample file, seed): a failure message names both and the
mutations, and :func:`stratocast.testing.fuzz.mutate` rebuilds the file.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from stratocast.obs.ingest import IngestConfig, SourceSpec, ingest
from stratocast.obs.registry import available_sources, get_source
from stratocast.obs.store import read_observations
from stratocast.testing.fuzz import (
    Failure,
    Target,
    bufr_sections,
    check_read,
    fuzz,
    iem_csv,
    mutate,
    targets,
    text_of,
    weatherreal_nc,
    write_mutant,
)

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real sample data not found at {DATA} (../shared/data)"
)
HISTORY = DATA / "stations" / "isd-history.csv"
TARGETS = {t.label: t for t in targets(DATA)} if DATA.is_dir() else {}

# CI sizes: (files of the target used, seeds per file), chosen so this module runs in well
# under a minute on two cores; the benchmark runs thousands per source on whole files.
CI_SIZE: dict[str, tuple[int, int]] = {
    "metar": (9, 12),
    "synop_tac/gts": (1, 25),
    "synop_tac/romania": (1, 25),
    "synop_tac/wis2box": (13, 3),
    "isd_lite": (2, 4),
    "synop_bufr": (7, 4),
    "temp_bufr": (1, 12),
    "aircraft_bufr": (1, 8),
    "hirs_bufr": (1, 6),
    "table": (2, 8),
    "cf_dsg": (2, 12),
}
# and the head of the long samples (a year of hourly lines, 44 SYNOP messages) CI mutates
CI_HEAD: dict[str, dict[str, Any]] = {
    "isd_lite": {"head_lines": 500},
    "synop_bufr": {"head_messages": 6},
    "hirs_bufr": {"head_messages": 1},
    "table": {"derive": partial(iem_csv, history=str(HISTORY), lines=300)},
    "cf_dsg": {"derive": partial(weatherreal_nc, history=str(HISTORY), hours=200)},
}


def _ci(target: Target, n_files: int) -> Target:
    return dataclasses.replace(
        target, files=target.files[:n_files], **CI_HEAD.get(target.label, {})
    )


SEED_BASE = 0

# Mutants the long runs of benchmarks/robustness.py found breaking a reader, kept here so the
# bug they found stays fixed: (target, sample file, seed).
# (target, sample file, seed, max_ops)
REGRESSIONS: list[tuple[str, str, int, int]] = [
    # METAR Q0000 / A0000: the pressure conversion returned a complex number (issue 12)
    ("metar", "badchars.txt", 71, 3),
    ("metar", "collective.txt", 35, 3),
    ("metar", "kawn.txt", 112, 3),
    # section-4 flips in the DWD bulletin: a Report at latitude 216.9 (off the globe)
    ("synop_bufr", "dwd_synop_20210516T12.bufr", 1096, 3),
    ("synop_bufr", "obs_3day.bufr", 3008, 8),  # the same at latitude 219.4
    # METAR text identity off by one character
    ("metar", "collective2.txt", 3011, 8),
    # CF-DSG (WeatherReal file): a time value flipped out of the datetime range raised
    # OverflowError from xarray's time decoding at open; now that element's bad_time
    ("cf_dsg", "071690-99999-2017.nc", 3037, 8),
    # longitude units "seconds since ...": xarray decoded lon as times, float() raised TypeError
    ("cf_dsg", "071690-99999-2017.nc", 3042, 8),
    # one HDF5 metadata flip made netCDF-C loop forever opening the file (h5py opens it):
    # now a time-limited open in a child process, a whole-file error after 15 s
    ("cf_dsg", "071690-99999-2017.nc", 2078, 3),
]

# Registered sources with no real sample in ../shared/data to mutate (their own tests build
# their inputs); a new source must be fuzzed or listed here with the reason.
NO_SHARED_SAMPLE: dict[str, str] = {}


def _explain(failures: list[Failure]) -> str:
    lines = [f"{len(failures)} problem(s):"]
    for f in failures[:20]:
        p = f.problem
        lines.append(f"  [{p.kind}] {p.detail} {('at ' + p.where) if p.where else ''}")
        lines.append(f"      reproduce: {f.target}: {f.mutant}")
    return "\n".join(lines)


def test_every_source_is_fuzzed_or_explained() -> None:
    fuzzed = {t.source for t in TARGETS.values()} if TARGETS else set(available_sources())
    missing = set(available_sources()) - fuzzed - set(NO_SHARED_SAMPLE)
    assert not missing, f"sources with no fuzz target and no reason: {sorted(missing)}"
    assert set(CI_SIZE) >= set(TARGETS), "a fuzz target without a CI size"


@needs_data
@pytest.mark.parametrize("label", sorted(CI_SIZE))
def test_mutants_never_escape_read(label: str, tmp_path: Path) -> None:
    target = TARGETS.get(label)
    if target is None:
        pytest.skip(f"no sample files for {label} under {DATA}")
    n_files, n_seeds = CI_SIZE[label]
    small = _ci(target, n_files)
    result = fuzz(small, range(SEED_BASE, SEED_BASE + n_seeds), tmp_path)
    assert result.inputs == len(small.files) * n_seeds
    # the mutants are mostly still readable: a harness that only produced file errors would
    # check nothing
    assert result.reports + result.rejections > result.inputs, result
    assert not result.failures, _explain(result.failures)


@needs_data
@pytest.mark.parametrize(("label", "name", "seed", "max_ops"), REGRESSIONS)
def test_regression_mutants(label: str, name: str, seed: int, max_ops: int, tmp_path: Path) -> None:
    target = TARGETS[label]
    (path,) = [p for p in target.files if target.load(p)[0] == name]
    m = mutate(target.load(path)[1], target.fmt, seed, name, max_ops)
    file = write_mutant(m, tmp_path)
    out = check_read(
        get_source(target.source, **target.options),
        file,
        target.catalogue(),
        text_of(m.data, target.fmt, target.encoding),
    )
    assert not out.problems, _explain([Failure(label, m.describe(), p) for p in out.problems])


def _ingest_mutants(target: Target, seeds: range, tmp_path: Path) -> None:
    paths = []
    for path in target.files[:2]:
        name, data = target.load(path)
        for seed in seeds:
            paths.append(str(write_mutant(mutate(data, target.fmt, seed, name), tmp_path)))
    spec = SourceSpec(name=target.source, paths=paths, options=target.options)
    store = tmp_path / "store"
    acc = ingest(IngestConfig(sources=[spec]), store, target.catalogue(), progress=False)
    acc.verify()
    a = acc.sources[target.source]
    # whole-file errors are allowed (a mutant may destroy a file); anything else that sank a
    # file is an exception the reader let through
    leaked = [e for e in acc.file_errors if not e.error.startswith("SourceFileError")]
    assert not leaked, leaked
    assert a.files_ok + a.files_failed + a.files_skipped == len(paths)
    assert a.files_ok > 0
    assert len(read_observations(store, sources=[target.source])) == a.values_stored


@needs_data
@pytest.mark.parametrize("label", sorted(CI_SIZE))
def test_ingest_of_mutants_balances(label: str, tmp_path: Path) -> None:
    target = TARGETS.get(label)
    if target is None:
        pytest.skip(f"no sample files for {label} under {DATA}")
    _ingest_mutants(_ci(target, 2), range(100, 102), tmp_path)


_CRASH_READ = """
import sys
from pathlib import Path
from stratocast.obs.registry import get_source
records = list(get_source(sys.argv[1]).read(Path(sys.argv[2])))
print(len(records))
"""


@needs_data
def test_one_flipped_descriptor_bit_does_not_kill_the_process(tmp_path: Path) -> None:
    """HIRS: bit 0 of section-3 byte 15 of message 2 (a data descriptor) made ecCodes' unpack
    segfault, taking the whole ingest process with it (found by benchmarks/robustness.py,
    seed 3059, max_ops 8). Read in a child process so a crash fails this test only."""
    target = TARGETS["hirs_bufr"]
    data = bytearray(target.sample(target.files[0]))  # the first three messages
    msg = bufr_sections(bytes(data))[1]
    data[msg.sections[3][0] + 15] ^= 0x01
    path = tmp_path / target.files[0].name
    path.write_bytes(bytes(data))
    run = subprocess.run(
        [sys.executable, "-c", _CRASH_READ, "hirs_bufr", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"reader process died (exit {run.returncode}): {run.stderr[-500:]}"
    assert int(run.stdout.split()[-1]) > 0
