"""The operate process: every product's cycles on their schedules, from warm models.

Two clocks, one loop body. ``replay`` runs the cycles of a past period in order of their
cut-offs on a simulated clock that jumps over the waiting but runs at real speed while a cycle
computes (so latencies and deadline margins are the real ones). ``serve`` runs them in real
time with APScheduler: one job per product at each cycle's cut-off, and a check at its deadline
that publishes the fallback when the cycle has not been published by then. Each model file is
loaded once per process (``WarmModel``) and shared by the products that name it.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.triggers.base import BaseTrigger

from stratocast.errors import StratocastError
from stratocast.infer.cycle import Clock, CycleResult, CycleSources, run_cycle
from stratocast.infer.metrics import OperateMetrics
from stratocast.infer.products import ProductConfig
from stratocast.infer.publish import published
from stratocast.infer.warm import WarmModel

log = logging.getLogger("stratocast.operate")


@dataclass
class ProductTally:
    cycles: int = 0
    published: int = 0
    fallbacks: int = 0
    missed: int = 0
    latency_s: list[float] = field(default_factory=list)  # cut-off → published
    margin_s: list[float] = field(default_factory=list)
    obs_used: list[int] = field(default_factory=list)

    def add(self, r: CycleResult, latency: float) -> None:
        self.cycles += 1
        self.published += r.status == "published"
        self.fallbacks += r.status == "fallback"
        self.missed += r.missed
        self.latency_s.append(latency)
        self.margin_s.append(r.deadline_margin_s)
        self.obs_used.append(r.obs_used)


class WarmModels:
    """One WarmModel per checkpoint file, loaded on first use; a file that cannot be loaded
    is retried at the next cycle (it may be being replaced)."""

    def __init__(self, metrics: OperateMetrics | None = None) -> None:
        self._models: dict[Path, WarmModel] = {}
        self.load_seconds: dict[Path, float] = {}
        self.metrics = metrics

    def get(self, path: Path) -> WarmModel | None:
        if path not in self._models:
            try:
                self._models[path] = WarmModel(path)
            except StratocastError as err:
                log.warning("model %s not loaded: %s", path, err)
                return None
            self.load_seconds[path] = self._models[path].load_seconds
            if self.metrics is not None:
                self.metrics.model_loaded(path, self.load_seconds[path])
        return self._models[path]


def _sources(base: CycleSources, product: ProductConfig) -> CycleSources:
    if product.checkpoint is None:
        return base
    return CycleSources(base.store, base.shards, Path(product.checkpoint), base.products)


def replay(
    products: Mapping[str, ProductConfig],
    base: CycleSources,
    start: datetime,
    end: datetime,
    before_cycle: Callable[[datetime], None] | None = None,
    metrics: OperateMetrics | None = None,
) -> dict[str, ProductTally]:
    """Every cycle of every product with its cycle time in [start, end], in order of cut-off.
    ``before_cycle(t)`` runs first with the simulated time (e.g. replaying observations that
    arrived by then into the inbox and ingesting them)."""
    events = sorted(
        (p.cutoff(t), name, t) for name, p in products.items() for t in p.cycle_times(start, end)
    )
    models = WarmModels(metrics)
    tallies = {name: ProductTally() for name in products}
    for cutoff, name, t in events:
        product = products[name]
        real0 = time.perf_counter()

        def clock(cutoff: datetime = cutoff, real0: float = real0) -> datetime:
            return cutoff + timedelta(seconds=time.perf_counter() - real0)

        if before_cycle is not None:
            before_cycle(cutoff)
        src = _sources(base, product)
        warm = models.get(src.checkpoint)
        r = run_cycle(name, product, src, t, warm=warm, clock=clock)
        latency = (clock() - cutoff).total_seconds()
        tallies[name].add(r, latency)
        if metrics is not None:
            metrics.record(r, latency)
        log.info("%s %s: %s, margin %.0f s", name, t.isoformat(), r.status, r.deadline_margin_s)
    return tallies


def serve(
    products: Mapping[str, ProductConfig],
    base: CycleSources,
    stop: threading.Event,
    clock: Clock = lambda: datetime.now(UTC),
    metrics: OperateMetrics | None = None,
) -> dict[str, ProductTally]:
    """Real time until ``stop`` is set. Cycles whose cut-off has passed when the process
    starts are not run (a missed cycle is `stratocast cycle`'s to redo, by hand or by cron)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger

    from stratocast.infer.products import cron_trigger

    models = WarmModels(metrics)
    tallies = {name: ProductTally() for name in products}
    lock = threading.Lock()  # one cycle computes at a time: the model threads share the cores
    sched = BackgroundScheduler(timezone="UTC")

    def run(name: str) -> None:
        product = products[name]
        now = clock()
        t = now - timedelta(minutes=product.cutoff_minutes)
        t = t.replace(second=0, microsecond=0)
        sched.add_job(check_deadline, DateTrigger(product.deadline(t)), args=(name, t))
        with lock:
            src = _sources(base, product)
            try:
                r = run_cycle(name, product, src, t, warm=models.get(src.checkpoint), clock=clock)
            except StratocastError as err:  # nothing published: the deadline check counts it
                log.error("%s %s: %s", name, t.isoformat(), err)
                tallies[name].cycles += 1
                if metrics is not None:
                    metrics.failed(name)
                return
            latency = (clock() - product.cutoff(t)).total_seconds()
            tallies[name].add(r, latency)
            if metrics is not None:
                metrics.record(r, latency)
            log.info("%s %s: %s", name, t.isoformat(), r.status)

    def check_deadline(name: str, t: datetime) -> None:
        if published(base.products, name, t) is None:
            log.warning("%s %s: not published by its deadline", name, t.isoformat())
            tallies[name].missed += 1
            if metrics is not None:
                metrics.misses.labels(name).inc()

    for name, p in products.items():
        # the job fires at each cycle time + cut-off: the same crontab shifted by the cut-off
        trigger = cron_trigger(p.cycle)
        shifted = _ShiftedTrigger(trigger, timedelta(minutes=p.cutoff_minutes))
        sched.add_job(run, shifted, args=(name,), id=name, misfire_grace_time=60)
    sched.start()
    try:
        stop.wait()
    finally:
        sched.shutdown(wait=True)
    return tallies


class _ShiftedTrigger(BaseTrigger):
    """An APScheduler trigger firing ``shift`` after another one."""

    def __init__(self, inner: BaseTrigger, shift: timedelta) -> None:
        self.inner, self.shift = inner, shift

    def get_next_fire_time(self, previous: datetime | None, now: datetime) -> datetime | None:
        prev = None if previous is None else previous - self.shift
        t = self.inner.get_next_fire_time(prev, now - self.shift)
        return None if t is None else t + self.shift


def table(tallies: Mapping[str, ProductTally]) -> str:
    rows = [
        f"{'product':<16} {'cycles':>6} {'published':>9} {'fallback':>8} {'missed':>6} "
        f"{'latency med/max s':>18} {'margin min s':>12} {'obs used med':>12}"
    ]
    for name, t in tallies.items():
        if not t.cycles:
            rows.append(f"{name:<16} {0:>6}")
            continue
        lat = f"{statistics.median(t.latency_s):.2f}/{max(t.latency_s):.2f}"
        rows.append(
            f"{name:<16} {t.cycles:>6} {t.published:>9} {t.fallbacks:>8} {t.missed:>6} "
            f"{lat:>18} {min(t.margin_s):>12.0f} {statistics.median(t.obs_used):>12.0f}"
        )
    return "\n".join(rows)
