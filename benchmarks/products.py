"""Product latency: cut-off → published, per product and per phase, warm and cold.

    .venv/bin/python benchmarks/products.py --config configs/demo.yaml --day 2000-11-20 \
        --rounds 3

Runs on a finished demo workdir (store, shards, model). Each round runs every product's
cycles of the day with one warm model (loaded once, as `stratocast operate` does) and, for a
cold start, the first cycle of each product again with the model loaded inside the cycle;
products and rounds are interleaved, publications go to a temporary folder. Printed: medians
over all cycles and rounds of each phase (ingest = reading the windows from the store,
compute, export) and of the whole latency; the early product's latency as a fraction of the
deterministic one's (target ≤ 0.2); export as a share of a cycle (target ≤ 30 %).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from stratocast.cli.run_config import load_run
from stratocast.infer.cycle import CycleSources, run_cycle
from stratocast.infer.products import parse_time
from stratocast.infer.warm import WarmModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--day", default="2000-11-20", help="the day whose cycles are run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-cycles", type=int, default=6, help="per product and round")
    args = ap.parse_args()
    cfg, paths = load_run(args.config, args.workdir)
    start = parse_time(args.day)
    end = start + timedelta(hours=23, minutes=59)
    warm = WarmModel(paths.checkpoint)
    print(f"model load (cold start): {warm.load_seconds:.2f} s")
    phases: dict[str, dict[str, list[float]]] = {n: {} for n in cfg.products}
    cold: dict[str, list[float]] = {n: [] for n in cfg.products}
    with tempfile.TemporaryDirectory() as tmp:
        src = CycleSources(paths.store, paths.shards, paths.checkpoint, Path(tmp))
        for _ in range(args.rounds):
            for name, product in cfg.products.items():
                times = list(product.cycle_times(start, end))[: args.max_cycles]
                for t in times:
                    t0 = time.perf_counter()
                    r = run_cycle(name, product, src, t, warm=warm, force=True)
                    total = time.perf_counter() - t0
                    for k, v in {**r.phases, "total": total}.items():
                        phases[name].setdefault(k, []).append(v)
                t0 = time.perf_counter()
                run_cycle(name, product, src, times[0], warm=None, force=True)
                cold[name].append(time.perf_counter() - t0)
    print(
        f"\n{'product':<16} {'cycles':>6} {'ingest s':>9} {'compute s':>10} {'export s':>9} "
        f"{'warm total s':>12} {'cold total s':>12} {'export share':>12}"
    )
    med: dict[str, float] = {}
    for name, ph in phases.items():
        m = {k: statistics.median(v) for k, v in ph.items()}
        med[name] = m["total"]
        print(
            f"{name:<16} {len(ph['total']):>6} {m['ingest']:>9.3f} {m['compute']:>10.3f} "
            f"{m['export']:>9.3f} {m['total']:>12.3f} {statistics.median(cold[name]):>12.3f} "
            f"{m['export'] / m['total']:>11.0%}"
        )
    if "early" in med and "deterministic" in med:
        ratio = med["early"] / med["deterministic"]
        print(f"\nearly / deterministic latency (warm medians): {ratio:.2f} (target <= 0.2)")


if __name__ == "__main__":
    main()
