"""A trained model used with observing networks it never saw (issue 14, "generalisation").

After `make demo` (or any world run), with its checkpoint and no retraining:

* ``trained network``: the shards the model was trained with;
* ``30 % removed``: the same input stations less a seeded 30 %;
* ``+100 new``: the input stations plus 100 new sites, placed uniformly on land-and-sea over
  the globe away from every existing station, reporting the world's truth with the network's
  instrument noise (t2m 0.4 K, pressure 50 Pa, wind 1 m/s) every 6 h;

each forecast over the demo's test period and scored together at the held-out verification
stations (one mask for all, so the rows compare). The held-out stations are never given to the
encoder here.

    .venv/bin/python benchmarks/generalisation.py --workdir runs/demo --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stratocast.cli.run_config import load_run
from stratocast.grid.interp import bilinear_weights
from stratocast.infer.forecast import run_forecast
from stratocast.obs.store import read_observations
from stratocast.shards.build import build
from stratocast.shards.layout import load_manifest
from stratocast.verify.run import run_verify
from stratocast.world.truth import open_truth

NOISE = {"t2m": 0.4, "msl": 50.0, "u10": 1.0, "v10": 1.0}


def new_sites(n: int, taken_lat: np.ndarray, taken_lon: np.ndarray, seed: int) -> pd.DataFrame:
    """``n`` sites uniform on the sphere, each over 300 km from every taken one."""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, float]] = []
    lat0, lon0 = np.radians(taken_lat), np.radians(taken_lon)
    while len(out) < n:
        lat = float(np.degrees(np.arcsin(rng.uniform(-0.95, 0.95))))
        lon = float(rng.uniform(0.0, 360.0))
        p, lo = np.radians(lat), np.radians(lon)
        cos = np.sin(p) * np.sin(lat0) + np.cos(p) * np.cos(lat0) * np.cos(lon0 - lo)
        if np.all(6371.0 * np.arccos(np.clip(cos, -1, 1)) > 300.0):
            out.append((lat, lon))
            lat0, lon0 = np.append(lat0, p), np.append(lon0, lo)
    return pd.DataFrame(
        {
            "station_id": [f"NEW{i:03d}" for i in range(n)],
            "lat": [a for a, _ in out],
            "lon": [b for _, b in out],
        }
    )


def pseudo_obs(
    truth_path: Path, sites: pd.DataFrame, variables: list[str], seed: int
) -> pd.DataFrame:
    truth = open_truth(truth_path)
    rng = np.random.default_rng(seed)
    lat, lon = truth["lat"].values, truth["lon"].values
    w = bilinear_weights(lat, lon, sites["lat"].to_numpy(), sites["lon"].to_numpy())
    oro = w.apply(truth["orography"].values)
    times = pd.to_datetime(truth["time"].values).tz_localize("UTC")
    frames = []
    for var in variables:
        vals = w.apply(truth[var].values)  # (T, S)
        vals = vals + NOISE.get(var, 0.0) * rng.standard_normal(vals.shape)
        t_idx, s_idx = np.meshgrid(np.arange(len(times)), np.arange(len(sites)), indexing="ij")
        frames.append(
            pd.DataFrame(
                {
                    "station_id": sites["station_id"].to_numpy()[s_idx.ravel()],
                    "lat": sites["lat"].to_numpy()[s_idx.ravel()],
                    "lon": sites["lon"].to_numpy()[s_idx.ravel()],
                    "elevation": oro[s_idx.ravel()],  # sited at the grid's height: no lapse
                    "time": times[t_idx.ravel()],
                    "variable": var,
                    "value": vals.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--workdir", type=str, default=None)
    ap.add_argument("--remove", type=float, default=0.3)
    ap.add_argument("--new", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg, paths = load_run(args.config, workdir=args.workdir)
    manifest = load_manifest(paths.shards)
    truth_path = Path(paths.truth_pointer.read_text().strip())
    obs = read_observations(paths.store, variables=cfg.shards.obs_variables)
    inputs = obs[obs["station_id"].isin(manifest.station_ids)]
    rng = np.random.default_rng(args.seed)
    ids = np.array(manifest.station_ids)
    keep = rng.choice(ids, size=round((1 - args.remove) * ids.size), replace=False)
    sites = new_sites(
        args.new, np.asarray(manifest.station_lat), np.asarray(manifest.station_lon), args.seed
    )
    new = pseudo_obs(truth_path, sites, list(cfg.shards.obs_variables), args.seed + 1)
    new["time"] = new["time"].astype(inputs["time"].dtype)  # the store's unit: concat stays dated
    bench = paths.workdir / "generalisation"
    shutil.rmtree(bench, ignore_errors=True)
    variants = {
        "trained network": None,
        f"{int(args.remove * 100)} % removed": inputs[inputs["station_id"].isin(keep)],
        f"+{args.new} new": pd.concat([inputs, new], ignore_index=True),
    }
    forecasts: dict[str, Path] = {}
    for name, frame in variants.items():
        t0 = time.perf_counter()
        shards = paths.shards
        if frame is not None:
            shards = bench / name.replace(" ", "_").replace("%", "pct").replace("+", "plus")
            build(cfg.shards, open_truth(truth_path), frame, shards, progress=False)
        n_sites = len(load_manifest(shards).station_ids)
        out = bench / f"{shards.name}.zarr"
        forecasts[name] = run_forecast(cfg.forecast, paths.checkpoint, shards, out, False)
        print(f"{name}: {n_sites} input sites, shards + forecast {time.perf_counter() - t0:.0f} s")
    # gridded scores against the world's truth, as the demo's verify stage resolves 'truth'
    vcfg = cfg.verify.model_copy(update={"analysis": str(truth_path)})
    result = run_verify(forecasts, paths.store, paths.stations_csv, vcfg, bench / "verify")
    table = result.rmse_table()
    table = table[table["lead_hours"].isin([24, 72])]
    print(
        table.pivot_table(index="system", columns=["variable", "lead_hours"], values="rmse")
        .round(3)
        .to_string()
    )


if __name__ == "__main__":
    main()
