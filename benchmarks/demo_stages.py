"""Time every stage of the demo over several full runs from scratch; print medians.

    python benchmarks/demo_stages.py --runs 3 [--config configs/demo.yaml]

Each run gets a fresh workdir *and* a fresh cache, so the world's truth is simulated anew
every time (the demo's first-run cost). Stage times are wall-clock seconds; the machine is
shared and noisy, so quote the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from stratocast.cli.main import DEMO_ORDER, demo
from stratocast.cli.run_config import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-demo"))
    ap.add_argument(
        "--previous",
        type=Path,
        nargs="*",
        default=[],
        help="timings.json of earlier from-scratch demo runs (e.g. `make demo` on a fresh "
        "clone) to count among the runs",
    )
    args = ap.parse_args()
    timings: list[dict[str, float]] = [json.loads(p.read_text()) for p in args.previous]
    for r in range(args.runs):
        work = args.out / f"run{r}"
        cache = tempfile.mkdtemp(prefix="stratocast-bench-cache-")
        cfg, paths = load_run(args.config, workdir=str(work), cache_dir=cache)
        demo(cfg, paths, progress=False)
        timings.append(json.loads((work / "timings.json").read_text()))
    print(
        "\nstage     "
        + "".join(f"{'run' + str(r):>10}" for r in range(len(timings)))
        + "    median"
    )
    for stage in [*DEMO_ORDER, "total"]:
        vals = [t[stage] for t in timings]
        row = "".join(f"{v:10.1f}" for v in vals)
        print(f"{stage:<10}{row}{statistics.median(vals):10.1f}")


if __name__ == "__main__":
    main()
