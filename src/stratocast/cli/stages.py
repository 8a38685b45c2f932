"""The stages of a run, each callable alone (CLI subcommands) or chained (the demo)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from stratocast.cli.run_config import RunConfig, RunPaths  # torch-free: configs only
from stratocast.errors import StratocastError

T = TypeVar("T")


class StageError(StratocastError, RuntimeError):
    pass


def timed(name: str, fn: Callable[[], T], timings: dict[str, float] | None = None) -> T:
    print(f"\n== {name} ==", flush=True)
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    if timings is not None:
        timings[name] = dt
    print(f"== {name} done in {dt:.1f} s ==", flush=True)
    return result


def _require(path: Path, what: str, command: str) -> None:
    if not path.exists():
        raise StageError(f"{what} not found at {path}: run `stratocast {command}` first")


def world(cfg: RunConfig, paths: RunPaths, progress: bool = True) -> Path:
    """Generate (or reuse) the simulated truth and write the observing network's reports."""
    from stratocast.world.network import write_observations
    from stratocast.world.truth import generate_truth, open_truth

    truth_path = generate_truth(cfg.world.truth, paths.cache / "truth", progress=progress)
    paths.workdir.mkdir(parents=True, exist_ok=True)
    paths.truth_pointer.write_text(str(truth_path.resolve()))
    summary = write_observations(
        open_truth(truth_path), cfg.world.network, paths.observations, progress=progress
    )
    print(f"truth: {truth_path}")
    print(f"observations: {paths.observations} ({summary})")
    return truth_path


def truth_location(paths: RunPaths) -> Path:
    _require(paths.truth_pointer, "truth pointer", "world")
    return Path(paths.truth_pointer.read_text().strip())


def ingest(cfg: RunConfig, paths: RunPaths, progress: bool = True) -> None:
    from stratocast.obs.ingest import ingest as run_ingest
    from stratocast.obs.stations import StationCatalogue

    catalogue = (
        StationCatalogue.from_csv(paths.stations_csv) if paths.stations_csv.exists() else None
    )
    acc = run_ingest(cfg.ingest, paths.store, catalogue, progress=progress)
    print(acc.format())


def held_out_stations(paths: RunPaths) -> set[str]:
    if not paths.stations_csv.exists():
        return set()
    import pandas as pd  # here, not at the top: every command imports this module

    st = pd.read_csv(paths.stations_csv, dtype={"station_id": str})
    return set(st.loc[st["role"] == "verify", "station_id"].astype(str))


def shards(cfg: RunConfig, paths: RunPaths, progress: bool = True) -> None:
    from stratocast.obs.store import read_observations
    from stratocast.shards.build import build
    from stratocast.world.truth import open_truth

    _require(paths.store / "obs", "observation store", "ingest")
    truth = open_truth(truth_location(paths))
    obs = read_observations(paths.store, variables=cfg.shards.obs_variables)
    held_out = held_out_stations(paths)
    # Held-out verification stations never reach the model, in training or in forecasts.
    obs = obs[~obs["station_id"].isin(held_out)]
    if obs.empty:
        raise StageError(f"no observations of {cfg.shards.obs_variables} in {paths.store}")
    m = build(cfg.shards, truth, obs, paths.shards, progress=progress)
    print(
        f"shards: {paths.shards} ({m.n_time} steps, {len(m.channels)} channels, "
        f"{len(m.station_ids)} input stations, {len(held_out)} held out)"
    )


def train(
    cfg: RunConfig,
    paths: RunPaths,
    progress: bool = True,
    from_step: int | None = None,
    fresh: bool = False,
) -> Path:
    """Train, or resume from the newest complete checkpoint in ``<workdir>/train/checkpoints``
    (``from_step``: roll back to that one; ``fresh``: discard them). Works alone or under
    torchrun; on a preemption signal it raises ``Preempted`` after checkpointing."""
    from stratocast.train.trainer import train as run_train

    _require(paths.shards, "shards", "shards")
    ckpt = run_train(
        cfg.train, paths.shards, paths.train, progress=progress, from_step=from_step, fresh=fresh
    )
    print(f"checkpoint: {ckpt}")
    return ckpt


def forecast(cfg: RunConfig, paths: RunPaths, progress: bool = True) -> Path:
    from stratocast.infer.forecast import run_forecast

    _require(paths.checkpoint, "checkpoint", "train")
    out = run_forecast(cfg.forecast, paths.checkpoint, paths.shards, paths.forecast, progress)
    print(f"forecast: {out}")
    return out


def verify(cfg: RunConfig, paths: RunPaths, progress: bool = True) -> Path:
    from stratocast.verify.gridded import WORLD_TRUTH
    from stratocast.verify.matching import VerifyInputError
    from stratocast.verify.run import run_verify

    _require(paths.forecast, "forecast", "forecast")
    vcfg = cfg.verify
    if vcfg.analysis == WORLD_TRUTH:  # the world's truth stands in for a reanalysis
        vcfg = vcfg.model_copy(update={"analysis": str(truth_location(paths))})
    try:
        result = run_verify(
            {"stratocast": paths.forecast}, paths.store, paths.stations_csv, vcfg, paths.verify
        )
    except VerifyInputError as err:
        raise StageError(str(err)) from err
    table = result.rmse_table()
    print(
        table.pivot_table(index="lead_hours", columns=["variable", "system"], values="rmse")
        .round(3)
        .to_string()
    )
    print(f"report: {result.report_path}")
    return Path(result.report_path)


def add_verify_arguments(sp: argparse.ArgumentParser) -> None:
    """``verify --forecast F --obs O --reference R [--out D]``, besides the ``--config`` form."""
    sp.add_argument("--forecast", type=Path, default=None, help="forecast Zarr store to score")
    sp.add_argument(
        "--obs", type=Path, default=None, help="observation store dir or WeatherReal .nc"
    )
    sp.add_argument(
        "--reference",
        default="persistence",
        help="skill reference: 'persistence', 'climatology' or a second forecast Zarr",
    )
    sp.add_argument("--out", type=Path, default=Path("verify-out"), help="output directory")
    sp.add_argument(
        "--stations", type=Path, default=None, help="catalogue CSV: score its role 'verify' rows"
    )
    sp.add_argument(
        "--analysis",
        default=None,
        help="Zarr/NetCDF (time, lat, lon) on the forecast grid, or 'truth' (the world's) "
        "with --config: also score gridded RMSE and ACC against it",
    )


def verify_paths_command(args: argparse.Namespace) -> int:
    """Run the ``--forecast/--obs/--reference`` form. Bad input raises (a StratocastError,
    an OSError): ``cli.main`` reports it in one line with exit 2, like every other command."""
    from stratocast.verify.run import verify_paths

    if args.obs is None:
        raise StageError("--forecast needs --obs (the observations to score against)")
    result = verify_paths(
        args.forecast,
        args.obs,
        args.reference,
        args.out,
        None,
        args.stations,
        Path(args.analysis) if args.analysis is not None else None,
    )
    skipped = result.attrs.get("skipped", {})
    for var, why in skipped.items() if isinstance(skipped, dict) else ():
        print(f"skipped {var}: {why}")
    print(result.rmse_table().to_string(index=False))
    print(f"report: {result.report_path}")
    return 0
