"""Hostile input: mutated real files through every reader, and silent bit flips through QC.

    python benchmarks/robustness.py [--n 200] [--sources metar,synop_bufr] [--flips 1000]
                                    [--flips-per-file 25] [--skip-fuzz] [--skip-flips]

1. Fuzz (issue 12, item 2): for every source with real samples in ``shared/data``, ``--n``
   seeded mutants of each sample file (:mod:`stratocast.testing.fuzz`: bit and byte errors,
   lost and repeated bytes and lines, cut-off files, one digit of a group changed or a group
   zeroed/slashed for text; flips in BUFR section 4, corrupted section lengths and header
   fields, truncated messages for BUFR; for CF-DSG NetCDF, built from real ISD-Lite years by
   the WeatherReal writer in a temporary folder, bit flips in one variable's stored data or in
   the HDF5 metadata, truncation, and edits through HDF5: hostile values, units, scale
   factors, removed coordinates), each read through the registered source. Per source:
   inputs, whole-file errors (SourceFileError: allowed), exceptions escaped (must be 0),
   record-contract and text-identity violations (must be 0), records read and rejected. Every
   distinct escape is printed once with its reproducer (sample file, seed, mutations).
2. Bit flips (item 7): ``--flips`` random bits flipped inside decoded numeric values of the
   real DWD SYNOP BUFR bulletin (a bit is accepted when flipping it changes exactly one value
   of its message as the NumPy decoder of ``obs/bufr_decode.py`` reads it: not a string, not
   a replication factor, not padding). ``--flips-per-file`` flips, each in a different
   station, go into one copy of the file; each copy is ingested into its own store with QC
   including the buddy check. Every flip is then followed: the reader's output against the
   unflipped file's says which report values it changed (or none: an element the reader does
   not use), the store says whether each changed value was stored (unflagged) or quarantined
   (by which check). The bulletin is one time step, so the temporal checks (spike, step) have
   nothing to compare with: what is measured is what range, consistency and buddy catch.

Exit status 1 when anything escaped or an identity broke.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from stratocast.obs.base import Rejection, Report
from stratocast.obs.bufr_decode import decode
from stratocast.obs.ingest import IngestConfig, SourceSpec, ingest
from stratocast.obs.isd_history import load_isd_history
from stratocast.obs.qc import QCConfig
from stratocast.obs.sources.synop_bufr import SynopBufrSource
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import read_observations, read_quarantine
from stratocast.testing.fuzz import (
    Failure,
    Problem,
    TargetResult,
    bufr_sections,
    fuzz,
    targets,
)

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
DWD = "bufr/dwd_synop_20210516T12.bufr"

# --------------------------------------------------------------------------- 1. fuzz


def _groups(failures: list[Failure]) -> dict[tuple[str, str, str], list[Failure]]:
    """Failures grouped by kind, innermost frame and what broke (exception type, variable)."""
    out: dict[tuple[str, str, str], list[Failure]] = defaultdict(list)
    for f in failures:
        p = f.problem
        if p.kind == "exception":
            head = p.detail.split(":", 1)[0]
        elif p.kind == "record":  # "file:line: sp=... is not", "file:line: position (...)"
            head = p.detail.split(": ", 1)[-1].split("=")[0].split(" (")[0]
        elif p.kind == "tally":
            head = p.detail.split(":")[0].split(" ")[0]
        else:  # memory, crash, record_type
            head = ""
        out[(p.kind, p.where, head)].append(f)
    return out


def _chunk(label: str, file: int, seeds: list[int], max_ops: int, rss: float) -> TargetResult:
    """One sample file x some seeds, in a worker process of its own (a reader that keeps
    memory per hostile input must not take the whole benchmark down)."""
    (target,) = [t for t in targets(DATA) if t.label == label]
    with tempfile.TemporaryDirectory() as work:
        return fuzz(target, seeds, Path(work), max_ops, files=[file], rss_growth_mb=rss)


def _run_chunk(
    label: str, file: int, seeds: list[int], max_ops: int, rss: float, workers: int
) -> TargetResult:
    """:func:`_chunk` in a fresh process; a process that dies (out of memory, a crash in C)
    becomes one ``crash`` problem naming the file and seeds instead of ending the run."""
    ctx = get_context("spawn")  # ecCodes state is not fork-safe
    # split the seeds over the workers, one process each
    parts = [seeds[i::workers] for i in range(workers) if seeds[i::workers]]
    out = TargetResult(label)
    with ProcessPoolExecutor(len(parts), mp_context=ctx) as pool:
        jobs = [(p, pool.submit(_chunk, label, file, p, max_ops, rss)) for p in parts]
        for part, job in jobs:
            try:
                out.merge(job.result())
            except Exception as err:  # the worker died: report, go on with the next chunk
                (target,) = [t for t in targets(DATA) if t.label == label]
                what = f"{target.files[file].name} seeds {part[0]}..{part[-1]} (one of them)"
                problem = Problem("crash", f"worker process died: {type(err).__name__}: {err}")
                out.failures.append(Failure(label, what, problem))
    return out


def run_fuzz(
    n: int,
    wanted: set[str] | None,
    max_ops: int,
    seed_base: int,
    chunk: int = 50,
    workers: int = 1,
    rss_growth_mb: float = 500.0,
) -> bool:
    print(
        f"== fuzz: {n} mutants per sample file, up to {max_ops} mutations each; a mutant "
        f"whose read grows peak memory by > {rss_growth_mb:.0f} MB counts as a memory problem"
    )
    header = (
        f"{'target':<18} {'files':>5} {'inputs':>7} {'file err':>8} {'escaped':>7} "
        f"{'contract':>8} {'identity':>8} {'memory':>6} {'records':>10} {'rejected':>9} "
        f"{'unparsed':>8} {'s':>6}"
    )
    print(header)
    results: list[TargetResult] = []
    seeds = list(range(seed_base, seed_base + n))
    for target in targets(DATA):
        if wanted and target.source not in wanted and target.label not in wanted:
            continue
        t0 = time.perf_counter()
        r = TargetResult(target.label)
        for i in range(len(target.files)):
            for k in range(0, len(seeds), chunk):
                part = seeds[k : k + chunk]
                r.merge(_run_chunk(target.label, i, part, max_ops, rss_growth_mb, workers))
        results.append(r)
        print(
            f"{r.label:<18} {len(target.files):>5} {r.inputs:>7} {r.file_errors:>8} "
            f"{r.count('exception'):>7} {r.count('record') + r.count('record_type'):>8} "
            f"{r.count('tally'):>8} {r.count('memory'):>6} {r.records:>10} "
            f"{r.rejections:>9} {r.unparsed:>8} {time.perf_counter() - t0:>6.1f}",
            flush=True,
        )
    failures = [f for r in results for f in r.failures]
    if failures:
        print(f"\n{len(failures)} problems, by kind / innermost frame / type (first reproducer):")
        for (kind, where, head), fs in sorted(_groups(failures).items(), key=lambda x: -len(x[1])):
            first = fs[0]
            print(f"  {len(fs):>5} x [{kind}] {head} {('at ' + where) if where else ''}")
            print(f"          {first.problem.detail[:240]}")
            print(f"          reproduce: {first.target}: {first.mutant[:400]}")
    total = sum(r.inputs for r in results)
    print(f"\nfuzz total: {total} inputs, {len(failures)} problems")
    return not failures


# --------------------------------------------------------------------------- 2. bit flips


@dataclass(frozen=True)
class Flip:
    message: int  # 1-based, as in report ids
    subset: int  # 1-based
    element: str  # ecCodes key of the value flipped
    byte: int  # in the file
    mask: int
    old: float
    new: float


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))


def _value_bits(msg: bytes, n_values: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(bit offset in section-4 data, width) of every value of an uncompressed message, laid
    out as the NumPy decoder walks it; None where that walk is not available (compressed
    message, or the decoder's internals changed), and then flips are drawn blind."""
    try:
        from stratocast.obs import bufr_decode as bd

        header = bd.parse_header(msg)
        if header.compressed:
            return None
        layout = bd.compile_layout(header)
        data = msg[header.data[0] : header.data[1]]
        walk: Any = vars(bd)["_walk"]  # private: any change lands in the except below
        blocks: list[Any] = []
        bases: list[int] = []
        pos = 0
        for _ in range(header.subsets):
            pos = walk(layout.program, data, pos, blocks, bases, len(data) * 8)
        ids = np.concatenate([b.ids for b in blocks])
        lens = [len(b.ids) for b in blocks]
        offs = np.concatenate([b.rel for b in blocks]) + np.repeat(np.asarray(bases), lens)
        if len(offs) != n_values:
            return None
        return offs.astype(np.int64), np.asarray(layout.width[ids], dtype=np.int64)
    except Exception:
        return None


def draw_flips(
    data: bytes,
    n: int,
    rng: random.Random,
    elements: set[str] | None = None,
    subsets: set[tuple[int, int]] | None = None,
    per_file: int = 25,
) -> list[Flip]:
    """``n`` flips of one bit each inside one decoded numeric value (only values of
    ``elements``, in ``subsets`` (message, subset), when given); each run of ``per_file``
    flips (one copy of the file) is in distinct subsets, and no bit is flipped twice.

    Bits are drawn uniformly over the bits of the eligible values (from the decoder's layout
    walk), or, without it, uniformly over section 4; either way a flip is kept only when
    decoding the flipped message changes exactly that one value and nothing else.
    """
    msgs = bufr_sections(data)
    starts = [m.sections[4][0] + 4 for m in msgs]  # file offset of each message's data bits
    decoded = [decode(data[m.start : m.end]) for m in msgs]
    where: list[tuple[int, int]] = []  # (message, bit in its data) of every eligible bit run
    weights: list[int] = []
    bits = [
        _value_bits(data[m.start : m.end], len(d.values))
        for m, d in zip(msgs, decoded, strict=True)
    ]
    aimed = all(b is not None for b in bits)
    for i, (ref, vb) in enumerate(zip(decoded, bits, strict=True)):
        if vb is None:
            where.append((i, -1))
            weights.append((msgs[i].sections[4][1] - starts[i]) * 8)
            continue
        offs, widths = vb
        subset_of = np.searchsorted(ref.starts, np.arange(len(ref.values)), side="right")
        names = np.asarray(ref.layout.name, dtype=object)[ref.ids]
        ok = (widths > 0) & ~ref.layout.string[ref.ids]
        if elements is not None:
            ok &= np.isin(names, sorted(elements))
        if subsets is not None:
            ok &= np.fromiter(((i + 1, int(s)) in subsets for s in subset_of), bool, len(ok))
        for v in np.flatnonzero(ok).tolist():
            where.append((i, v))
            weights.append(int(widths[v]))
    flips: list[Flip] = []
    used: set[tuple[int, int]] = set()  # subsets of the copy being filled
    done: set[tuple[int, int]] = set()  # (byte, mask) of every flip
    tries = 0
    while len(flips) < n and tries < 200 * n and where:
        tries += 1
        i, k = rng.choices(where, weights)[0]
        m = msgs[i]
        if k < 0:
            bit = rng.randrange((m.sections[4][1] - starts[i]) * 8)
        else:
            offs, widths = bits[i]  # type: ignore[misc]
            bit = int(offs[k]) + rng.randrange(int(widths[k]))
        byte, mask = starts[i] + bit // 8, 0x80 >> (bit % 8)
        msg = bytearray(data[m.start : m.end])
        msg[byte - m.start] ^= mask
        try:
            dec = decode(bytes(msg))
        except Exception:  # a replication factor or the like: not a value flip
            continue
        ref = decoded[i]
        if dec.values.shape != ref.values.shape or dec.strings != ref.strings:
            continue
        diff = _changed(ref.values, dec.values)
        if len(diff) != 1 or (k >= 0 and int(diff[0]) != k):
            continue  # padding (no change) or a flip that moved the layout
        k = int(diff[0])
        subset = int(np.searchsorted(ref.starts, k, side="right"))  # 1-based
        element = str(ref.layout.name[int(ref.ids[k])])
        if (i, subset) in used or (byte, mask) in done:
            continue
        if elements is not None and element not in elements:
            continue
        if subsets is not None and (i + 1, subset) not in subsets:
            continue
        used.add((i, subset))
        done.add((byte, mask))
        flips.append(
            Flip(i + 1, subset, element, byte, mask, float(ref.values[k]), float(dec.values[k]))
        )
        if len(flips) % per_file == 0:
            used.clear()
    if len(flips) < n:
        print(f"  only {len(flips)} flips found in {tries} tries (aimed: {aimed})")
    return flips


@dataclass
class FlipTally:
    flips: int = 0
    outcome: Counter[str] = field(default_factory=Counter)
    by_element: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # per variable, |error| of the values that reached the store unflagged
    unflagged_error: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unflagged_large: int = 0  # flips whose unflagged error exceeds a typical observation error
    # reports stored unflagged with a changed position or time: how far off they are
    moved_error: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


_META = ("station_id", "lat", "lon", "elevation", "time")


# an error larger than these is more than a good station's own uncertainty (SI units)
_SIGNIFICANT = {
    "t2m": 2.0,
    "d2m": 2.0,
    "msl": 200.0,
    "sp": 200.0,
    "ws10": 3.0,
    "u10": 3.0,
    "v10": 3.0,
    "wd10": 30.0,
    "rh2m": 0.1,
    "q2m": 0.001,
}
_CHECK_ORDER = ("range", "consistency", "corrected", "duplicate", "spike", "step", "buddy")


def _follow(
    flip: Flip,
    rid: str,
    before: dict[str, Report | Rejection],
    after: dict[str, Report | Rejection],
    stored: set[tuple[str, str]],
    quarantined: dict[tuple[str, str], str],
    base_quarantined: set[tuple[str, str]],
    tally: FlipTally,
) -> None:
    """Classify one flip: what the reader made of it, and what QC then did."""
    a, b = before.get(rid), after.get(rid)
    outcome = _outcome(a, b, rid, stored, quarantined, base_quarantined, tally)
    tally.outcome[outcome] += 1
    tally.by_element[flip.element][outcome] += 1


def _outcome(
    a: Report | Rejection | None,
    b: Report | Rejection | None,
    rid: str,
    stored: set[tuple[str, str]],
    quarantined: dict[tuple[str, str], str],
    base_quarantined: set[tuple[str, str]],
    tally: FlipTally,
) -> str:
    if not isinstance(b, Report):
        if not isinstance(a, Report):
            return "no effect: report rejected with and without the flip"
        return f"reader: report rejected ({b.check if b is not None else 'missing'})"
    old = a.values if isinstance(a, Report) else {}
    moved = [k for k in _META if isinstance(a, Report) and getattr(a, k) != getattr(b, k)]
    changed = {v for v in b.values if not (v in old and math.isclose(old[v], b.values[v]))}
    made = {v for v in changed if v not in old}  # a value where the original had none
    affected = set(b.values) if moved else changed
    if not affected:
        return "reader: value dropped" if set(old) - set(b.values) else "no effect on the report"
    unflagged = sorted(v for v in affected if (rid, v) in stored)
    if unflagged:
        large = False
        for v in unflagged:
            if v in old and not moved:
                err = abs(b.values[v] - old[v])
                tally.unflagged_error[v].append(err)
                large |= err > _SIGNIFICANT.get(v, math.inf)
        tally.unflagged_large += large
        if moved and isinstance(a, Report):
            tally.moved_error["position km"].append(_km(a.lat, a.lon, b.lat, b.lon))
            tally.moved_error["elevation m"].append(abs(a.elevation - b.elevation))
            tally.moved_error["time h"].append(abs((b.time - a.time).total_seconds()) / 3600)
        what = f"report {'/'.join(moved)} changed" if moved else "value changed"
        if made and not moved:
            what = "value made from a missing one" if made == affected else what + " or made"
        return f"stored unflagged ({what})"
    if all((rid, v) in base_quarantined for v in affected):
        return "no effect: already quarantined without the flip"
    checks = {quarantined.get((rid, v), "?") for v in affected}
    ordered = [c for c in _CHECK_ORDER if c in checks] + sorted(checks - set(_CHECK_ORDER))
    return "caught: " + "+".join(ordered)


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))


def _store_sets(
    store: Path,
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    obs = read_observations(store)
    q = read_quarantine(store)
    stored = set(zip(obs["report_id"], obs["variable"], strict=True))
    q = q[q["variable"].notna()]
    quarantined = dict(
        zip(zip(q["report_id"], q["variable"], strict=True), q["check"], strict=True)
    )
    return stored, quarantined


def _ingest(path: Path, store: Path, catalogue: StationCatalogue | None) -> None:
    spec = SourceSpec(name="synop_bufr", paths=[str(path)])
    cfg = IngestConfig(sources=[spec], qc=QCConfig(buddy=True))
    ingest(cfg, store, catalogue, progress=False).verify()


def run_flips(n: int, per_file: int, seed: int, read_only: bool, with_catalogue: bool) -> None:
    src = DATA / DWD
    what = "values the reader reads (lexicon elements of reported stations)" if read_only else ""
    catalogue = None
    history = DATA / "stations" / "isd-history.csv"
    if with_catalogue and history.is_file():
        # WMO numbers -> ISD stations: the reader fills gaps from it, QC can compare positions
        catalogue = load_isd_history(history, index_codes=True).catalogue
    print(
        f"\n== bit flips: {n} value bits of {src.name} {what}, {per_file} per copy, "
        f"QC with buddy check, station catalogue: {'isd-history' if catalogue else 'none'}"
    )
    data = src.read_bytes()
    rng = random.Random(seed)
    t0 = time.perf_counter()
    reader = SynopBufrSource()
    before = {
        r.report_id: r for r in reader.read(src, catalogue) if isinstance(r, Report | Rejection)
    }
    elements = subsets = None
    if read_only:
        elements = set(reader.lexicon)
        subsets = set()
        for rid, r in before.items():
            if isinstance(r, Report):
                _, msg, sub = rid.rsplit(":", 2)
                subsets.add((int(msg), int(sub)))
    flips = draw_flips(data, n, rng, elements, subsets, per_file)
    tally = FlipTally()
    with tempfile.TemporaryDirectory() as work:
        base = Path(work) / "base"
        _ingest(src, base / "store", catalogue)
        _, base_q = _store_sets(base / "store")
        base_quarantined = set(base_q)
        for c, start in enumerate(range(0, len(flips), per_file)):
            batch = flips[start : start + per_file]
            buf = bytearray(data)
            for f in batch:
                buf[f.byte] ^= f.mask
            folder = Path(work) / f"copy{c}"
            folder.mkdir()
            path = folder / src.name
            path.write_bytes(bytes(buf))
            after = {
                r.report_id: r
                for r in reader.read(path, catalogue)
                if isinstance(r, Report | Rejection)
            }
            _ingest(path, folder / "store", catalogue)
            stored, quarantined = _store_sets(folder / "store")
            for f in batch:
                rid = f"{src.name}:{f.message}:{f.subset}"
                _follow(f, rid, before, after, stored, quarantined, base_quarantined, tally)
            tally.flips += len(batch)
    _print_flips(tally, time.perf_counter() - t0)


def _print_flips(tally: FlipTally, seconds: float) -> None:
    n = tally.flips
    print(f"{n} flips in {seconds:.0f} s; outcome per flip:")
    for outcome, k in tally.outcome.most_common():
        print(f"  {k:>5}  {k / n:6.1%}  {outcome}")
    reached = sum(k for o, k in tally.outcome.items() if o.startswith("stored unflagged"))
    caught = sum(k for o, k in tally.outcome.items() if o.startswith(("caught", "reader: rej")))
    effective = reached + caught
    print(
        f"flips that changed a value the reader emits: {effective}; caught {caught} "
        f"({caught / max(effective, 1):.1%}), reached the store unflagged {reached} "
        f"({reached / max(effective, 1):.1%}); of all {n} flips {reached / max(n, 1):.1%} "
        f"reached the store unflagged, {tally.unflagged_large / max(n, 1):.1%} with an error "
        f"above a typical observation error ({tally.unflagged_large} flips)"
    )
    if tally.unflagged_error:
        print(
            "unflagged errors by variable: count, median |error|, max |error|, count above "
            "a typical observation error (t/d 2 K, p 200 Pa, wind 3 m/s, 30 deg, rh 0.1, q 1 g/kg)"
        )
        for v, errs in sorted(tally.unflagged_error.items()):
            big = sum(e > _SIGNIFICANT.get(v, math.inf) for e in errs)
            print(
                f"  {v:<6} {len(errs):>4} {statistics.median(errs):>10.4g} {max(errs):>10.4g}"
                f" {big:>5}"
            )
    if tally.moved_error:
        print("reports stored unflagged at a changed place or time: median, max change, count > 0")
        for what, errs in sorted(tally.moved_error.items()):
            changed = [e for e in errs if e > 0 and e == e]
            if changed:
                print(
                    f"  {what:<12} {statistics.median(changed):>10.4g} {max(changed):>10.4g} "
                    f"{len(changed):>5}"
                )
    print("flips per element the reader uses (element: outcomes)")
    for element, c in sorted(tally.by_element.items(), key=lambda x: -sum(x[1].values())):
        if all(o.startswith("no effect") for o in c):
            continue
        print(f"  {element}: " + ", ".join(f"{o} {k}" for o, k in c.most_common()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="mutants per sample file")
    ap.add_argument("--sources", default="", help="comma-separated sources or targets")
    ap.add_argument("--max-ops", type=int, default=3, help="mutations per mutant, at most")
    ap.add_argument("--seed-base", type=int, default=0, help="first seed (reproducers)")
    ap.add_argument("--flips", type=int, default=1000)
    ap.add_argument("--flips-per-file", type=int, default=25)
    ap.add_argument("--flip-seed", type=int, default=12)
    ap.add_argument(
        "--flip-read-only",
        action="store_true",
        help="flip only values the reader reads (its lexicon elements, in stations it reports)",
    )
    ap.add_argument(
        "--flip-catalogue",
        action="store_true",
        help="ingest the flipped copies with the isd-history catalogue (WMO numbers)",
    )
    ap.add_argument("--chunk", type=int, default=50, help="mutants per worker process")
    ap.add_argument("--workers", type=int, default=1, help="fuzz worker processes")
    ap.add_argument(
        "--rss-growth-mb", type=float, default=500.0, help="memory problem threshold per mutant"
    )
    ap.add_argument("--skip-fuzz", action="store_true")
    ap.add_argument("--skip-flips", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"sample data not found at {DATA}", file=sys.stderr)
        return 2
    ok = True
    if not args.skip_fuzz:
        wanted = {s for s in args.sources.split(",") if s} or None
        ok = run_fuzz(
            args.n,
            wanted,
            args.max_ops,
            args.seed_base,
            args.chunk,
            args.workers,
            args.rss_growth_mb,
        )
    if not args.skip_flips:
        run_flips(
            args.flips,
            args.flips_per_file,
            args.flip_seed,
            args.flip_read_only,
            args.flip_catalogue,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
