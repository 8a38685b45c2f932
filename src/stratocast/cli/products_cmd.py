"""``stratocast cycle`` (one product cycle) and ``stratocast operate`` (all of them on their
schedules), over a run's workdir."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from stratocast.cli.run_config import RunConfig, RunPaths
from stratocast.cli.stages import StageError, _require
from stratocast.infer.products import ProductConfig, parse_time


def add_cycle_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--product", required=True, help="a product name under the config's products")
    sp.add_argument("--time", required=True, help="the cycle time, ISO (UTC when no zone)")
    sp.add_argument("--force", action="store_true", help="recompute a cycle already published")


def add_operate_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--replay", default=None, metavar="FROM", help="replay past cycles from this ISO time"
    )
    sp.add_argument("--until", default=None, help="with --replay: the last cycle time (ISO)")
    sp.add_argument("--product", action="append", default=None, help="only these products")
    sp.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port"
    )
    sp.add_argument("--metrics-addr", default="127.0.0.1", help="address for --metrics-port")


def _products(cfg: RunConfig, names: list[str] | None) -> dict[str, ProductConfig]:
    if not cfg.products:
        raise StageError("the config has no `products` section: nothing to run")
    unknown = sorted(set(names or []) - set(cfg.products))
    if unknown:
        raise StageError(f"unknown products {unknown}; the config has {sorted(cfg.products)}")
    return {n: p for n, p in cfg.products.items() if names is None or n in names}


def _sources(paths: RunPaths) -> Any:
    from stratocast.infer.cycle import CycleSources

    _require(paths.store / "obs", "observation store", "ingest")
    _require(paths.shards / "manifest.json", "shards", "shards")
    return CycleSources(paths.store, paths.shards, paths.checkpoint, paths.products)


def demo_stage(cfg: RunConfig, paths: RunPaths, progress: bool = True) -> None:
    """The demo's replay of its products over the configured period (skipped when unset)."""
    from stratocast.infer.operate import replay, table

    o = cfg.operate
    if o.replay_start is None or o.replay_end is None or not cfg.products:
        print("operate: no products or replay period in the config: skipped")
        return
    start, end = parse_time(o.replay_start), parse_time(o.replay_end)
    tallies = replay(cfg.products, _sources(paths), start, end)
    print(f"operate: replay {start.isoformat()} .. {end.isoformat()}")
    print(table(tallies))
    compare_early(cfg, paths)


def compare_early(cfg: RunConfig, paths: RunPaths) -> None:
    """The price of the early product's latency: its skill against the deterministic one's
    on the same cycles and the same (station, valid time) mask, written into a report of its
    own under ``<workdir>/verify/products/early_vs_deterministic``."""
    from stratocast.cli.stages import station_roles
    from stratocast.infer.archive import assemble
    from stratocast.infer.products import ProductError
    from stratocast.verify.run import run_verify

    kinds = {p.kind: n for n, p in (cfg.products or {}).items()}
    if "early" not in kinds or "deterministic" not in kinds:
        return
    out = paths.verify / "products"
    try:
        archives = {
            kind: assemble(paths.products, kinds[kind], out / f"{kinds[kind]}.zarr")[0]
            for kind in ("early", "deterministic")
        }
    except ProductError as err:  # a replay with every cycle a fallback: nothing to compare
        print(f"operate: early vs deterministic not scored: {err}")
        return
    vcfg = cfg.verify.model_copy(update={"analysis": None, "skill_reference": "deterministic"})
    result = run_verify(
        archives, paths.store, station_roles(paths), vcfg, out / "early_vs_deterministic"
    )
    rmse = result.rmse_table()
    rmse = rmse[rmse.system.isin(["early", "deterministic"]) & (rmse.lead_hours % 12 == 0)]
    wide = rmse.pivot_table(index=["variable", "lead_hours"], columns="system", values="rmse")
    wide["early / deterministic"] = wide["early"] / wide["deterministic"]
    print("operate: the early product against the deterministic one (held-out stations, RMSE)")
    print(wide.round(3).to_string())
    print(f"report: {result.report_path}")


def verify_product(cfg: RunConfig, paths: RunPaths, args: argparse.Namespace) -> int:
    """``verify --product P [--reference persistence|climatology|product:Q]``: the product's
    archive against the held-out stations of the run's store."""
    from stratocast.cli.stages import station_roles
    from stratocast.infer.archive import assemble
    from stratocast.verify.run import verify_paths

    out = paths.verify / "products"
    _products(cfg, [args.product])
    archive, used, fallbacks = assemble(paths.products, args.product, out / f"{args.product}.zarr")
    reference = args.reference
    if reference.startswith("product:"):
        other = reference.removeprefix("product:")
        _products(cfg, [other])
        reference = str(assemble(paths.products, other, out / f"{other}.zarr")[0])
    print(f"{args.product}: {used} cycles scored, {fallbacks} fallbacks left out")
    result = verify_paths(
        archive, paths.store, reference, out / args.product, None, station_roles(paths)
    )
    print(result.rmse_table().to_string(index=False))
    print(f"report: {result.report_path}")
    return 0


def cycle(cfg: RunConfig, paths: RunPaths, args: argparse.Namespace) -> int:
    from stratocast.infer.cycle import run_cycle

    name = args.product
    product = _products(cfg, [name])[name]
    t = parse_time(args.time, "--time")
    r = run_cycle(name, product, _sources(paths), t, force=args.force)
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in r.phases.items())
    print(f"{name} {t.isoformat()}: {r.status} {r.path}" + (f" ({phases})" if phases else ""))
    if r.reason and r.status == "fallback":
        print(f"fallback because: {r.reason}")
    return 0


def operate(cfg: RunConfig, paths: RunPaths, args: argparse.Namespace) -> int:
    from stratocast.infer.metrics import OperateMetrics
    from stratocast.infer.operate import replay, serve, table

    products = _products(cfg, args.product)
    src = _sources(paths)
    metrics = OperateMetrics()
    if args.metrics_port is not None:
        metrics.serve(args.metrics_port, args.metrics_addr)
        print(f"operate: metrics on http://{args.metrics_addr}:{args.metrics_port}/metrics")
    if args.replay is not None:
        start = parse_time(args.replay, "--replay")
        end = parse_time(args.until, "--until") if args.until else start
        if end < start:
            raise StageError(f"--until {end.isoformat()} is before --replay {start.isoformat()}")
        tallies = replay(products, src, start, end, metrics=metrics)
    else:
        if args.until is not None:
            raise StageError("--until goes with --replay (real time runs until stopped)")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(f"operate: {sorted(products)} on their schedules (Ctrl-C stops)")
        tallies = serve(products, src, stop, metrics=metrics)
    print(table(tallies))
    return 0
