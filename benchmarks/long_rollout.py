"""A 60-day free rollout of the demo model against the world's truth (issue 14).

From ``--n-inits`` initial analyses spread over the training year, the trained model runs
``--days`` days (4 steps a day) with no observations after the initial cycle; measured:

* finite: every state of every rollout;
* dry mass: drift of the area-weighted global mean msl, last state against the first, in %;
* spectrum: the zonal power spectrum of z500 (FFT along each latitude row, area-weighted over
  latitude, averaged over the last 30 days and the initialisations) against the truth's on the
  same valid times: the ratio at every wavenumber (within a factor 2 is the issue's target);
* climate: the area-weighted global mean t2m bias against the truth over the last 30 days.

The initial states are in the training period (the world has one year, and a 60-day rollout
from the test period would run past its end): this is a test of stability and climate, not of
skill.

    .venv/bin/python benchmarks/long_rollout.py --workdir runs/demo --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import xarray as xr

from stratocast.cli.run_config import load_run
from stratocast.cli.stages import truth_location
from stratocast.infer.forecast import run_forecast
from stratocast.world.truth import open_truth


def area_mean(field: xr.DataArray) -> xr.DataArray:
    w = xr.DataArray(np.cos(np.deg2rad(np.asarray(field["lat"]))), dims="lat")
    return field.weighted(w).mean(("lat", "lon"))


def zonal_spectrum(field: xr.DataArray) -> np.ndarray:
    """(..., lat, lon) → power per zonal wavenumber, area-weighted over latitude."""
    values = np.asarray(field.transpose(..., "lat", "lon"))
    power = np.abs(np.fft.rfft(values, axis=-1)) ** 2
    w = np.cos(np.deg2rad(np.asarray(field["lat"])))
    per_k = (power * w[:, None]).sum(axis=-2) / w.sum()
    return per_k.reshape(-1, per_k.shape[-1]).mean(axis=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="runs/demo")
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the demo's model")
    ap.add_argument("--n-inits", type=int, default=10)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--first", default="2000-08-01T00")
    ap.add_argument("--last", default="2000-10-15T00")
    args = ap.parse_args()

    cfg, paths = load_run(args.config, workdir=args.workdir)
    ckpt = args.checkpoint or paths.checkpoint
    out = paths.workdir / "long_rollout"
    first, last = np.datetime64(args.first, "h"), np.datetime64(args.last, "h")
    span_days = int((last - first) / np.timedelta64(1, "D"))
    step = max(1, span_days // max(1, args.n_inits - 1))
    inits = [first + np.timedelta64(step * k, "D") for k in range(args.n_inits)]
    t0 = time.perf_counter()
    stores = []
    for k, init in enumerate(inits):  # one init each: the forecast config takes a period
        fcfg = cfg.forecast.model_copy(
            update={
                "start": str(init),
                "end": str(init),
                "init_hours": [int(str(init)[11:13])],
                "horizon_hours": 24 * args.days,
            }
        )
        stores.append(run_forecast(fcfg, ckpt, paths.shards, out / f"init{k}.zarr", False))
    wall = time.perf_counter() - t0
    fc = xr.concat([xr.open_zarr(s) for s in stores], dim="init_time")
    truth = open_truth(truth_location(paths))

    finite = all(bool(np.isfinite(fc[v]).all()) for v in ("t2m", "msl", "z500"))
    msl = area_mean(fc["msl"])
    m0, m1 = msl.isel(lead_time=0), msl.isel(lead_time=-1)
    drift = 100.0 * float(np.abs((m1 - m0) / m0).max())
    lead = np.asarray(fc.lead_time.values)
    if np.issubdtype(lead.dtype, np.timedelta64):  # CF-decoded "hours"
        lead = lead / np.timedelta64(1, "h")
    fc = fc.assign_coords(lead_time=lead.astype(np.int64))
    last30 = fc.lead_time >= fc.lead_time.max() - 24 * 30
    ratios, biases = [], []
    for i in range(fc.sizes["init_time"]):
        f = fc.isel(init_time=i).sel(lead_time=last30)
        valid = f.init_time.values + f.lead_time.values.astype("timedelta64[h]")
        t = truth.sel(time=valid, method="nearest")
        ratios.append(zonal_spectrum(f["z500"]) / zonal_spectrum(t["z500"]))
        biases.append(float(area_mean(f["t2m"]).mean() - area_mean(t["t2m"]).mean()))
    # Wavenumber 0 is the zonal mean, not a spectrum; and only the wavenumbers the truth holds
    # count (a spectral world truncated at T21 keeps ~1e-6 of its peak power beyond 21: noise).
    truth_power = zonal_spectrum(truth["z500"].isel(time=slice(0, 400)))
    resolved = np.flatnonzero(truth_power[1:] > 1e-5 * truth_power[1:].max()) + 1
    ratio = np.mean(ratios, axis=0)[resolved]
    print(f"{len(inits)} rollouts of {args.days} days ({4 * args.days} steps) in {wall:.1f} s")
    print(f"finite: {finite}")
    print(f"max |global mean msl drift|: {drift:.5f} %")
    print(
        f"z500 zonal spectrum ratio (model/truth), wavenumbers 1..{resolved.max()}: "
        f"min {ratio.min():.2f} max {ratio.max():.2f}"
    )
    print("  per wavenumber:", " ".join(f"{r:.2f}" for r in ratio))
    print(
        f"global mean t2m bias over the last 30 days: mean {np.mean(biases):+.3f} K, "
        f"max |.| {np.max(np.abs(biases)):.3f} K"
    )


if __name__ == "__main__":
    main()
