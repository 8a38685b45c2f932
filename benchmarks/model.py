"""Processors compared at equal training wall time on the demo's shards (issue 14).

Each processor (``obs2grid`` with ``processor: gridnet`` / ``unet``, otherwise the demo's
training config) is trained for the same wall-clock budget (``train.time_budget_s``: the
learning-rate and rollout schedules follow elapsed time, so both runs see the whole schedule),
then forecasts the demo's test period to ``--horizon`` hours, and all are verified together at
the held-out stations on one mask, beside persistence and climatology, plus gridded RMSE/ACC
against the world's truth. Printed: RMSE against lead, z500 ACC, training samples/s, steps
done, and the time of one 10-day forecast (one initialisation, warm model).

The runs are sequential; on a shared machine, quote the samples/s of each run beside its skill.

    .venv/bin/python benchmarks/model.py --workdir runs/demo --config configs/demo.yaml \
        --budget 300 --processors gridnet,unet
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd

from stratocast.cli.run_config import load_run
from stratocast.cli.stages import station_roles, truth_location
from stratocast.infer.forecast import run_forecast
from stratocast.train.config import ModelConfig
from stratocast.train.trainer import train
from stratocast.verify.gridded import WORLD_TRUTH
from stratocast.verify.run import run_verify

LEADS = (24, 72, 120, 168, 240)


def _train(
    run_cfg: object,
    shards: Path,
    out: Path,
    processor: str,
    budget: float,
    extra: dict[str, object],
) -> Path:
    tcfg = run_cfg.train  # type: ignore[attr-defined]
    options = {**tcfg.model.options(), "processor": processor, **extra}
    cfg = tcfg.model_copy(
        update={
            "model": ModelConfig(name=tcfg.model.name, **options),
            # the schedule's length is the budget; steps only bounds it from above
            "steps": 100 * tcfg.steps,
            "warmup_steps": 100 * tcfg.warmup_steps,
            "time_budget_s": budget,
            "checkpoint": tcfg.checkpoint.model_copy(update={"every": 0}),
            "tensorboard": False,
        }
    )
    return train(cfg, shards, out, progress=False, fresh=True)


def _throughput(train_dir: Path) -> tuple[int, float]:
    rows = [json.loads(x) for x in (train_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "samples_per_s" in r]
    last = max((r.get("step", 0) for r in rows), default=0)
    return int(last), statistics.median(r["samples_per_s"] for r in steps) if steps else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("runs/demo"))
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds per model")
    ap.add_argument("--processors", default="gridnet,unet")
    ap.add_argument("--horizon", type=int, default=240)
    ap.add_argument("--skip-train", action="store_true", help="reuse the trained models")
    ap.add_argument("--extra", default="{}", help="JSON model options for every processor")
    ap.add_argument("--tag", default="", help="suffix of the run names (for --extra runs)")
    args = ap.parse_args()

    cfg, paths = load_run(args.config, workdir=str(args.workdir))
    root = paths.workdir / "bench_model"
    fcfg = cfg.forecast.model_copy(update={"horizon_hours": args.horizon})
    one = fcfg.model_copy(update={"end": fcfg.start, "init_hours": [0]})
    forecasts: dict[str, Path] = {}
    rows = []
    extra = json.loads(args.extra)
    for processor in args.processors.split(","):
        name = processor + args.tag
        tdir = root / name / "train"
        if not args.skip_train:
            t0 = time.perf_counter()
            _train(cfg, paths.shards, tdir, processor, args.budget, extra)
            print(f"{name}: trained in {time.perf_counter() - t0:.0f} s (budget {args.budget})")
        steps, sps = _throughput(tdir)
        ckpt = tdir / "model.pt"
        forecasts[name] = run_forecast(fcfg, ckpt, paths.shards, root / name / "fc.zarr", False)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run_forecast(one, ckpt, paths.shards, root / name / "one.zarr", False)
            times.append(time.perf_counter() - t0)
        rows.append(
            {
                "processor": name,
                "steps": steps,
                "samples_per_s": round(sps, 1),
                f"{args.horizon} h forecast s (median of 3)": round(statistics.median(times), 2),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))

    vcfg = cfg.verify
    if vcfg.analysis == WORLD_TRUTH:
        vcfg = vcfg.model_copy(
            update={
                "analysis": str(truth_location(paths)),
                "gridded_variables": ["z500", "t850", "t2m", "msl"],
            }
        )
    result = run_verify(forecasts, paths.store, station_roles(paths), vcfg, root / "verify")
    table = result.rmse_table()
    table = table[table.lead_hours.isin(LEADS)]
    print(
        table.pivot_table(index=["variable", "lead_hours"], columns="system", values="rmse")
        .round(3)
        .to_string()
    )
    gridded = result.tables.get("gridded")
    if gridded is not None and len(gridded):
        z = gridded[(gridded.variable == "z500") & gridded.lead_hours.isin(LEADS)]
        print("gridded z500 ACC against the truth")
        print(z.pivot_table(index="lead_hours", columns="system", values="acc").round(3))


if __name__ == "__main__":
    main()
