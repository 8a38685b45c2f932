"""Verification at scale: one simulated year of forecasts scored by streaming.

    python benchmarks/verify.py                     # the full year (see docs/BENCHMARKS.md)
    python benchmarks/verify.py --inits 8 --res 1   # a quick check

Forecast fields are generated lazily per (initialisation, lead) — as a Zarr store would be read
chunk by chunk — on a global regular grid; observations at the stations are generated per
chunk's time window. Everything else is the production path: bilinear weights, t2m lapse-rate
correction, wind speed from components, nearest-in-time matching, persistence and climatology
baselines, the additive score accumulator and its scorecard. Prints wall time, peak RSS and the
memory bound the streaming design states.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from stratocast.verify.config import VerifyConfig
from stratocast.verify.matching import Stations, required_forecast_variables
from stratocast.verify.metrics import ScoreAccumulator, systems_order
from stratocast.verify.stream import plan_stream, score_stream

FIRST_INIT = pd.Timestamp("2023-01-01", tz="UTC")
BANK = 3  # distinct fields per variable; each read returns a fresh array made from one


class SyntheticForecast:
    """A global forecast whose (init, lead) fields are made on demand, never stored."""

    def __init__(
        self, res: float, n_inits: int, leads: np.ndarray, variables: Sequence[str], seed: int
    ) -> None:
        self.lat = np.arange(-90.0, 90.0 + res / 2, res)
        self.lon = np.arange(0.0, 360.0, res)
        self.init_times = pd.date_range(FIRST_INIT, periods=n_inits, freq="12h")
        self.lead_hours = leads
        self.variables = frozenset([*variables, "orography"])
        self.members = 0
        rng = np.random.default_rng(seed)
        shape = (self.lat.size, self.lon.size)
        base = {"t2m": 280.0, "u10": 0.0, "v10": 0.0, "msl": 101300.0}
        scale = {"t2m": 5.0, "u10": 4.0, "v10": 4.0, "msl": 800.0}
        self._bank = {
            v: [
                (base[v] + scale[v] * rng.standard_normal(shape)).astype(np.float32)
                for _ in range(BANK)
            ]
            for v in variables
        }
        self._orog = rng.uniform(0.0, 2000.0, shape)

    def orography(self) -> np.ndarray:
        return self._orog

    def read(self, init_pos: int, lead_pos: int, variables: Sequence[str]) -> dict[str, np.ndarray]:
        k = (init_pos + lead_pos) % BANK
        shift = np.float32(0.01 * lead_pos)
        return {v: self._bank[v][k] + shift for v in variables}


class SyntheticObs:
    """Hourly station observations made for whatever window the stream asks for."""

    def __init__(self, stations: Stations, truth_scale: dict[str, tuple[float, float]]) -> None:
        self.stations = stations
        self.scale = truth_scale
        self._phase = np.linspace(0.0, 2 * np.pi, len(stations), endpoint=False)

    def variables(self) -> set[str]:
        return set(self.scale)

    def window(self, variable: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        times = pd.date_range(start.ceil("h"), end.floor("h"), freq="h").as_unit("ns")
        mean, amp = self.scale[variable]
        hours = (times - FIRST_INIT).total_seconds().to_numpy() / 3600.0
        values = mean + amp * np.sin(2 * np.pi * hours[:, None] / 24.0 + self._phase[None, :])
        n_t, n_s = values.shape
        return pd.DataFrame(
            {
                "station_id": np.tile(self.stations.ids, n_t),
                "time": np.repeat(times, n_s),
                "value": values.ravel(),
            }
        )


def _stations(n: int, seed: int) -> Stations:
    rng = np.random.default_rng(seed)
    return Stations(
        ids=np.array([f"S{i:05d}" for i in range(n)]),
        lat=np.degrees(np.arcsin(rng.uniform(-0.95, 0.95, n))),
        lon=rng.uniform(0.0, 360.0, n),
        elevation=rng.uniform(0.0, 2500.0, n),
    )


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inits", type=int, default=730, help="initialisations (00/12 UTC)")
    p.add_argument("--max-lead", type=int, default=72, help="forecast horizon, hours")
    p.add_argument("--res", type=float, default=0.25, help="grid spacing, degrees")
    p.add_argument("--stations", type=int, default=3000)
    p.add_argument("--chunk", type=int, default=8, help="initialisations per chunk")
    p.add_argument("--systems", type=int, default=1, help="forecast systems scored together")
    args = p.parse_args(argv)

    variables = ["t2m", "ws10", "msl"]
    cfg = VerifyConfig(variables=variables, init_chunk_size=args.chunk)
    leads = np.arange(0, args.max_lead + 1, 6, dtype=np.int64)
    raw = [v for v in required_forecast_variables(variables, cfg.lapse_rate) if v != "orography"]
    t0 = time.perf_counter()
    sources = {
        f"model{k}": SyntheticForecast(args.res, args.inits, leads, raw, seed=k)
        for k in range(args.systems)
    }
    stations = _stations(args.stations, seed=99)
    scale = {"t2m": (280.0, 5.0), "ws10": (5.0, 2.0), "msl": (101300.0, 500.0)}
    obs = SyntheticObs(stations, scale)
    clim = (FIRST_INIT - pd.Timedelta(days=30), FIRST_INIT)
    plan = plan_stream(sources, stations, variables, cfg, obs, clim)
    systems = systems_order(list(sources), cfg.baselines)
    acc = ScoreAccumulator(systems, variables, plan.axes.leads, stations.ids)
    setup_s = time.perf_counter() - t0

    def progress(done: int, total: int) -> None:
        if done % max(1, total // 10) == 0 or done == total:
            rate = done * args.chunk / (time.perf_counter() - t0)
            print(f"  chunk {done}/{total}  {rate:.1f} inits/s", file=sys.stderr, flush=True)

    score_stream(plan, acc, obs, progress)
    card = acc.scorecard(cfg.skill_reference)
    t_tables = time.perf_counter()
    # The other tables the stage writes: accuracy, and the significance of each model
    # against the reference (paired block bootstrap + Diebold-Mariano per variable and lead).
    acc.accuracy_table()
    pairs = [(m, cfg.skill_reference) for m in sources]
    signif = acc.significance_table(pairs, cfg.bootstrap_samples, cfg.bootstrap_seed)
    tables_s = time.perf_counter() - t_tables
    total_s = time.perf_counter() - t0

    lat_n = next(iter(sources.values())).lat.size
    lon_n = next(iter(sources.values())).lon.size
    field_mib = len(raw) * lat_n * lon_n * 4 / 2**20
    n_sys = len(systems)
    chunk_mib = args.chunk * leads.size * args.stations * (n_sys + 1) * 8 * len(variables) / 2**20
    acc_mib = 4 * n_sys * leads.size * args.stations * 8 * len(variables) / 2**20
    n_samples = int(card.groupby(["variable", "lead_hours"])["n"].first().sum())
    print(
        f"grid {lat_n}x{lon_n} ({args.res} deg), {args.inits} inits x {leads.size} leads, "
        f"{args.stations} stations, {args.systems} model(s) + persistence + climatology, "
        f"variables {variables}, chunk {args.chunk}"
    )
    print(f"scored samples (station, init, lead, variable): {n_samples}")
    print(f"time: {total_s:.1f} s total ({setup_s:.1f} s set-up incl. the field bank)")
    print(f"throughput: {args.inits / (total_s - setup_s):.2f} inits/s")
    print(f"tables: {tables_s:.1f} s (incl. {len(signif)} significance rows)")
    print(f"peak RSS: {_peak_rss_mib():.0f} MiB")
    print(
        f"stated bound (beyond the interpreter and libraries): one field set {field_mib:.1f} MiB"
        f" per system (+ the generator's bank {BANK * field_mib:.1f} MiB here), chunk arrays "
        f"{chunk_mib:.1f} MiB, accumulators {acc_mib:.1f} MiB; independent of --inits"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
