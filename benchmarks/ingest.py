"""Ingest decoders against their reference libraries: same input, same values, obs/s and MB/s.

    python benchmarks/ingest.py [--rounds 5] [--metar-reports 20000] [--bufr-copies 5]

Three comparisons, each timed in interleaved rounds (reference, stratocast, reference, ...)
so that load from other processes on the shared machine hits both sides alike; medians are
quoted. Everything runs in this one process on one core, so "per core" is the plain rate.

1. METAR: the real NWS collectives in ``shared/data/metar`` replicated to ~20k reports,
   decoded by the ``metar`` PyPI package (``metar.Metar.Metar``) and by
   :class:`~stratocast.obs.sources.metar.MetarSource`. Only reports both decode go in; the
   values (t2m, d2m, ws10, wd10, msl after unit conversion) are compared report by report.
2. SYNOP BUFR: ``pdbufr.read_bufr`` against :class:`SynopBufrSource` on the DWD bulletin
   replicated a few times; values compared per station position.
3. GRIB → Zarr store: ``xarray`` + ``cfgrib`` against ``stratocast.gridded.open_gridded``,
   both written to a Zarr store; the written values are compared; MB/s of GRIB input.

A throughput figure for a decoder that decodes differently would be meaningless, hence the
value checks: mismatches are counted and printed, and the exit status is 1 if any.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.metar import MetarSource
from stratocast.obs.sources.synop_bufr import SynopBufrSource
from stratocast.obs.stations import StationCatalogue
from stratocast.testing.metar_reference import metar_package_values

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
# the collectives' reports are from 2024-08-31 and 2024-09-08 (and a few other days)
METAR_REF = datetime(2024, 9, 8, 14, 0, tzinfo=UTC)
VARS = ("t2m", "d2m", "ws10", "wd10", "qnh", "msl")
# The metar package converts inHg with 33.8639 hPa, stratocast with 3386.389 Pa: 3 ppm, far
# below the 0.01 inHg (34 Pa) resolution of the report. Everything else is exact arithmetic.
TOL = {"t2m": 1e-6, "d2m": 1e-6, "ws10": 1e-6, "wd10": 1e-6, "qnh": 1.0, "msl": 1.0}

Values = dict[str, float]


class Row(NamedTuple):
    name: str
    unit: str
    ref_label: str
    ref: float
    ours: float
    mismatches: int
    compared: int


def median_rates(
    jobs: Mapping[str, Callable[[], object]], amount: float, rounds: int
) -> dict[str, float]:
    """Run the jobs in interleaved rounds; return the median of amount/seconds per job."""
    rates: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(rounds):
        for key, job in jobs.items():
            t0 = time.perf_counter()
            job()
            rates[key].append(amount / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rates.items()}


def count_mismatches(
    pairs: Iterable[tuple[str, Values, Values]], tol: Mapping[str, float], show: int = 5
) -> tuple[int, int]:
    """Compare (label, reference, ours) value dicts; print the first few differences."""
    bad = n = 0
    for label, ref, ours in pairs:
        n += 1
        diffs = [
            f"{k}: ref {ref.get(k)} ours {ours.get(k)}"
            for k in tol
            if not _same(ref.get(k), ours.get(k), tol[k])
        ]
        if diffs:
            bad += 1
            if bad <= show:
                print(f"  MISMATCH {label}: " + "; ".join(diffs))
    return bad, n


def _same(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return (a is None or math.isnan(a)) == (b is None or math.isnan(b))
    return abs(a - b) <= tol


# ------------------------------------------------------------------------------- METAR


def metar_inputs(catalogue: StationCatalogue) -> list[tuple[str, Report]]:
    """The reports of the real collectives that both decoders decode, in file order."""
    src = MetarSource(reference_time=METAR_REF)
    both: list[tuple[str, Report]] = []
    ours_only = ref_only = 0
    for path in sorted((DATA / "metar").glob("*.txt")):
        for rec in src.read(path, catalogue):
            if not isinstance(rec, Report | Rejection):
                continue  # unparsed text and the file's tally: nothing to compare
            # the package needs the month; ours resolves it, so the rejected ones get ours'
            # reference month (they still count in ref_only when the package accepts them)
            t = rec.time or METAR_REF
            ref_ok = metar_package_values(rec.raw, t.month, t.year) is not None
            if isinstance(rec, Report) and ref_ok:
                both.append((rec.raw, rec))
            elif isinstance(rec, Report):
                ours_only += 1
            elif ref_ok:
                ref_only += 1
    print(
        f"  METAR input: {len(both)} distinct reports decoded by both; "
        f"{ours_only} only by stratocast, {ref_only} only by the metar package (left out)"
    )
    return both


def bench_metar(catalogue: StationCatalogue, n_reports: int, rounds: int) -> Row:
    both = metar_inputs(catalogue)
    copies = max(1, n_reports // len(both))
    texts = [raw for raw, _ in both] * copies
    months = [(r.time.month, r.time.year) for _, r in both] * copies
    tmp = Path(tempfile.mkdtemp(prefix="bench-metar-"))
    try:
        path = tmp / "metar.txt"
        path.write_text("".join(t + "=\n" for t in texts), encoding="latin-1")
        src = MetarSource(reference_time=METAR_REF)
        ours = [r for r in src.read(path, catalogue) if isinstance(r, Report)]
        if len(ours) != len(texts):
            print(f"  stratocast decoded {len(ours)} of {len(texts)} replicated reports")

        def pair(t: str, mo: int, yr: int, r: Report) -> tuple[str, Values, Values]:
            ref = metar_package_values(t, mo, yr) or {}
            mine = dict(r.values)
            if "msl" not in ref:  # no SLP group: ours is reduced from station pressure
                mine.pop("msl", None)
            return r.report_id, ref, mine

        pairs = (
            pair(t, mo, yr, r)
            for t, (mo, yr), r in zip(texts[: len(both)], months, ours, strict=False)
        )
        bad, n = count_mismatches(pairs, TOL)

        def run_ref() -> None:
            for t, (mo, yr) in zip(texts, months, strict=True):
                metar_package_values(t, mo, yr)

        def run_ours() -> None:
            for _ in src.read(path, catalogue):
                pass

        rates = median_rates({"ref": run_ref, "ours": run_ours}, len(texts), rounds)
    finally:
        shutil.rmtree(tmp)
    return Row(
        f"METAR ({len(texts)} reports)",
        "obs/s",
        "metar pkg",
        rates["ref"],
        rates["ours"],
        bad,
        n,
    )


# ------------------------------------------------------------------------------- BUFR

# pdbufr's flat mode names ranks: "#1#" is the first occurrence in the subset, the one
# SynopBufrSource uses (later ones are other template sections, e.g. extreme winds)
BUFR_COLUMNS = {
    "#1#airTemperature": "t2m",
    "#1#dewpointTemperature": "d2m",
    "#1#windSpeed": "ws10",
    "#1#windDirection": "wd10",
    "#1#pressureReducedToMeanSeaLevel": "msl",
}


def _pos(lat: float, lon: float) -> str:
    # stratocast rounds positions to 1e-5 degree (the BUFR resolution); pdbufr keeps the
    # float noise (51.295950000000005): round both alike before comparing
    return f"{round(lat, 5)},{round(lon, 5)}"


def pdbufr_values(path: Path) -> list[tuple[str, Values]]:
    """(position, values) per subset that pdbufr returns (it leaves out subsets with none)."""
    import pdbufr

    cols = ["#1#latitude", "#1#longitude", *BUFR_COLUMNS]
    df = pdbufr.read_bufr(path, flat=True, columns=cols)
    out: list[tuple[str, Values]] = []
    for row in df.itertuples(index=False):
        d = dict(zip(cols, row, strict=True))
        vals = {v: float(d[k]) for k, v in BUFR_COLUMNS.items() if d[k] == d[k]}
        out.append((_pos(d["#1#latitude"], d["#1#longitude"]), vals))
    return out


def _match_bufr(
    ref: list[tuple[str, Values]], ours: list[Report]
) -> Iterable[tuple[str, Values, Values]]:
    """Pair each pdbufr subset with an equal stratocast report at that position, if any.

    Positions repeat (a station in several messages), so the pairing is by position and
    values; a subset with no equal report is paired with the nearest miss for the printout.
    """
    by_pos: dict[str, list[Values]] = {}
    for r in ours:
        vals = {k: r.values[k] for k in VARS if k in r.values}
        by_pos.setdefault(_pos(r.lat, r.lon), []).append(vals)
    for pos, vals in ref:
        cands = by_pos.get(pos, [])
        same = [c for c in cands if all(_same(vals.get(k), c.get(k), 1e-6) for k in VARS)]
        yield pos, vals, (same or cands or [{}])[0]


def bench_bufr(copies: int, rounds: int) -> Row:
    src_file = DATA / "bufr" / "dwd_synop_20210516T12.bufr"
    tmp = Path(tempfile.mkdtemp(prefix="bench-bufr-"))
    try:
        path = tmp / "synop.bufr"
        path.write_bytes(src_file.read_bytes() * copies)
        src = SynopBufrSource()
        records = list(src.read(path))
        ours = [r for r in records if isinstance(r, Report)]
        ref = pdbufr_values(path)
        bad, n = count_mismatches(_match_bufr(ref, ours), dict.fromkeys(VARS, 1e-6))
        print(
            f"  BUFR: {len(records)} subsets; stratocast {len(ours)} reports "
            f"(+{len(records) - len(ours)} rejections), pdbufr {len(ref)} rows"
        )
        # both walk every subset of the file: the rate is subsets/s
        rates = median_rates(
            {"ref": lambda: pdbufr_values(path), "ours": lambda: list(src.read(path))},
            float(len(records)),
            rounds,
        )
    finally:
        shutil.rmtree(tmp)
    return Row(
        f"SYNOP BUFR ({len(records)} subsets)",
        "subsets/s",
        "pdbufr",
        rates["ref"],
        rates["ours"],
        bad,
        n,
    )


# ------------------------------------------------------------------------------- GRIB

G0 = 9.80665


class GribCase(NamedTuple):
    name: str
    # canonical variable -> (cfgrib filter_by_keys, variable, selection, factor to ours' units)
    fields: dict[str, tuple[dict[str, Any], str, dict[str, Any], float]]


GRIB_CASES = [
    GribCase(
        "era5-levels-members.grib",
        {
            "z500": ({}, "z", {"isobaricInhPa": 500}, 1.0),
            "t850": ({}, "t", {"isobaricInhPa": 850}, 1.0),
        },
    ),
    GribCase(
        "gfs.t12z.pgrbf120.2p5deg.grib2",
        {
            "z500": ({"typeOfLevel": "isobaricInhPa", "level": 500}, "gh", {}, G0),
            "t850": ({"typeOfLevel": "isobaricInhPa", "level": 850}, "t", {}, 1.0),
            "sp": ({"typeOfLevel": "surface", "shortName": "sp"}, "sp", {}, 1.0),
        },
    ),
]


def cfgrib_to_zarr(path: Path, case: GribCase, store: Path) -> dict[str, np.ndarray]:
    """The baseline: cfgrib opens each field, xarray writes them to one Zarr store."""
    import xarray as xr

    arrays = {}
    for var, (keys, name, sel, factor) in case.fields.items():
        ds = xr.open_dataset(
            path,
            engine="cfgrib",
            backend_kwargs={"filter_by_keys": keys, "indexpath": ""},
        )
        da = ds[name].sel(sel) if sel else ds[name]
        arrays[var] = (da * factor).rename(var).reset_coords(drop=True)
    out = xr.Dataset(arrays)
    out.to_zarr(store, mode="w", consolidated=False)
    return {k: np.asarray(v) for k, v in xr.open_zarr(store, consolidated=False).data_vars.items()}


def stratocast_to_zarr(path: Path, store: Path, variables: list[str]) -> dict[str, np.ndarray]:
    import xarray as xr

    from stratocast.gridded import open_gridded

    # the same fields as the cfgrib side: open_gridded would otherwise convert every field
    # of the file (128 for GFS) against cfgrib's few
    open_gridded(path, variables=variables).to_zarr(store, mode="w", consolidated=False)
    stored = xr.open_zarr(store, consolidated=False)
    return {str(k): np.asarray(v) for k, v in stored.data_vars.items()}


def _grib_mismatches(ref: dict[str, np.ndarray], ours: dict[str, np.ndarray]) -> tuple[int, int]:
    """Compare field by field as sorted values: the two differ in dimension order and
    latitude direction, not in the numbers."""
    bad = 0
    for var, a in ref.items():
        b = ours.get(var)
        if b is None or a.size != b.size:
            bad += 1
            print(f"  MISMATCH {var}: missing or size differs")
            continue
        x = np.sort(a.astype(np.float64), axis=None)
        y = np.sort(b.astype(np.float64), axis=None)
        if not np.allclose(x, y, rtol=1e-6, atol=1e-6, equal_nan=True):
            bad += 1
            print(f"  MISMATCH {var}: max |diff| {np.nanmax(np.abs(x - y))}")
    return bad, len(ref)


def bench_grib(rounds: int) -> list[Row]:
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-grib-"))
    try:
        for case in GRIB_CASES:
            path = DATA / "grib" / case.name
            mb = path.stat().st_size / 1e6
            bad, n = _grib_mismatches(
                cfgrib_to_zarr(path, case, tmp / "ref.zarr"),
                stratocast_to_zarr(path, tmp / "ours.zarr", list(case.fields)),
            )
            rates = median_rates(
                {
                    "ref": partial(cfgrib_to_zarr, path, case, tmp / "ref.zarr"),
                    "ours": partial(stratocast_to_zarr, path, tmp / "ours.zarr", list(case.fields)),
                },
                mb,
                rounds,
            )
            rows.append(
                Row(
                    f"GRIB→Zarr {case.name}",
                    "MB/s",
                    "cfgrib+xarray",
                    rates["ref"],
                    rates["ours"],
                    bad,
                    n,
                )
            )
    finally:
        shutil.rmtree(tmp)
    return rows


# ------------------------------------------------------------------------------- main


SECTIONS = ("metar", "bufr", "grib")


def run_section(section: str, args: argparse.Namespace) -> list[Row]:
    if section == "metar":
        cat = StationCatalogue.from_airportsdata()
        return [bench_metar(cat, args.metar_reports, args.rounds)]
    if section == "bufr":
        return [bench_bufr(args.bufr_copies, args.rounds)]
    return bench_grib(args.rounds)


def run_isolated(section: str, args: argparse.Namespace) -> list[Row]:
    """Run one section in a child interpreter and read its rows back.

    pdbufr (BUFR) and cfgrib (GRIB) each load ecCodes their own way; in one interpreter the
    process segfaults at exit once both have run, so each section gets its own.
    """
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, __file__, "--only", section, "--rows-json", str(out)]
        cmd += ["--rounds", str(args.rounds), "--metar-reports", str(args.metar_reports)]
        cmd += ["--bufr-copies", str(args.bufr_copies)]
        subprocess.run(
            cmd,
            check=True,
        )
        return [Row(*r) for r in json.loads(out.read_text())]


def print_table(rows: list[Row], rounds: int) -> None:
    print(f"\n$ python {' '.join(sys.argv)}   (median of {rounds} interleaved rounds)\n")
    print(
        f"| {'benchmark':<44} | unit      | {'reference':>22} | {'stratocast':>10} "
        "| ratio | mismatches |"
    )
    print(f"|{'-' * 46}|-----------|{'-' * 24}|{'-' * 12}|-------|------------|")
    for r in rows:
        print(
            f"| {r.name:<44} | {r.unit:<9} | {r.ref_label:>11} {r.ref:>10.1f} | {r.ours:>10.1f} "
            f"| {r.ours / r.ref:5.1f} | {r.mismatches:>4} / {r.compared:<5} |"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median quoted)")
    ap.add_argument("--metar-reports", type=int, default=20_000)
    ap.add_argument("--bufr-copies", type=int, default=5)
    ap.add_argument("--only", choices=SECTIONS, action="append")
    ap.add_argument("--rows-json", type=Path, help=argparse.SUPPRESS)  # child -> parent
    args = ap.parse_args()
    sections = args.only or list(SECTIONS)
    rows: list[Row] = []
    if len(sections) == 1:
        rows = run_section(sections[0], args)
    else:
        for section in sections:
            rows += run_isolated(section, args)
    if args.rows_json is not None:
        args.rows_json.write_text(json.dumps([list(r) for r in rows]))
        return 0
    print_table(rows, args.rounds)
    return 1 if any(r.mismatches for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
