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


def held_out_stations(paths: RunPaths) -> set[str] | None:
    """The world's held-out list (its stations.csv), or None where the world has not run."""
    if not paths.stations_csv.exists():
        return None
    import pandas as pd  # here, not at the top: every command imports this module

    st = pd.read_csv(paths.stations_csv, dtype={"station_id": str})
    return set(st.loc[st["role"] == "verify", "station_id"].astype(str))


def _world_truth(paths: RunPaths) -> Path:
    if not paths.truth_pointer.exists():
        raise StageError(
            f"shards.target.source is 'world' but `stratocast world` has not run in "
            f"{paths.workdir}: run it, or set shards.target.source to a gridded reanalysis "
            "(ERA5 GRIB or NetCDF, an ARCO-ERA5 or WeatherBench2 Zarr path or URL; see "
            "configs/era5.yaml). Training on station series alone, without a gridded target, "
            "is not supported: the model learns to produce a grid"
        )
    return truth_location(paths)


def shards(cfg: RunConfig, paths: RunPaths, progress: bool = True) -> None:
    from stratocast.obs.store import read_observations
    from stratocast.shards.build import build
    from stratocast.shards.stations import split_observations, write_roles
    from stratocast.shards.target import open_target

    _require(paths.store / "obs", "observation store", "ingest")
    scfg = cfg.shards
    # The target first: every metadata check (variables, period, gaps, region) fails here,
    # before observations are read or anything is written.
    target = open_target(
        scfg.target,
        scfg.channels,
        world_truth=lambda: _world_truth(paths),
        cache_dir=paths.cache / "remote",
    )
    times = target["time"].values
    step = times[1] - times[0]
    obs = read_observations(paths.store, variables=scfg.obs_variables)
    t = obs["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    # Window i holds (t_i - step, t_i]: reports outside every window never reach the shards.
    obs = obs[(t > times[0] - step) & (t <= times[-1])]
    if obs.empty:
        raise StageError(
            f"no observations of {scfg.obs_variables} in {paths.store} between "
            f"{times[0] - step} and {times[-1]} (the target's period)"
        )
    # Held-out verification stations never reach the model, in training or in forecasts.
    inputs, roles = split_observations(
        obs,
        target["lat"].values,
        target["lon"].values,
        scfg.held_out,
        held_out_stations(paths),
    )
    n = roles["role"].value_counts()
    if inputs.empty:
        raise StageError(
            f"none of the {len(roles)} stations with observations in {paths.store} is an input "
            f"station inside the target's domain ({int(n.get('outside', 0))} outside, "
            f"{int(n.get('verify', 0))} held out)"
        )
    m = build(scfg, target, inputs, paths.shards, progress=progress)
    write_roles(roles, paths.shards)
    print(
        f"shards: {paths.shards} ({m.n_time} steps, {len(m.channels)} channels on "
        f"{len(m.lat)}x{len(m.lon)}, {len(m.station_ids)} input stations, "
        f"{int(n.get('verify', 0))} held out, {int(n.get('outside', 0))} outside the domain)"
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


def station_roles(paths: RunPaths) -> Path:
    """The held-out list verification scores: the one the shard build used (it holds the
    world's list when the world ran), else the world's own."""
    built = paths.shards / "stations.csv"
    return built if built.exists() else paths.stations_csv


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
            {"stratocast": paths.forecast}, paths.store, station_roles(paths), vcfg, paths.verify
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
        "--product",
        default=None,
        help="with --config: score a product's published cycles (fallbacks left out); "
        "--reference may then name another product as product:NAME",
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
