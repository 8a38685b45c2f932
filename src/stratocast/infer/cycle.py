"""One product cycle: observations by the cut-off → warm model → export → atomic publish.

``run_cycle`` is what ``stratocast cycle --product P --time T`` and every scheduled run of
``stratocast operate`` call. It is idempotent (a cycle already published is not recomputed
unless forced, and a recomputation gives identical values: the model is deterministic), and it
never leaves a reader without a product: when the compute cannot run (no model, a failure) and
the product allows it, the previous cycle's forecast is published in its place, re-labelled to
this cycle's time and flagged, and the miss is counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.infer.ensemble import perturbed
from stratocast.infer.forecast import check_compatible, forecast_dataset
from stratocast.infer.products import ProductConfig, ProductError
from stratocast.infer.publish import previous, publish, published
from stratocast.infer.warm import WarmModel
from stratocast.shards.layout import Manifest, load_manifest
from stratocast.shards.windows import obs_windows

Clock = Callable[[], datetime]
Status = Literal["published", "already", "fallback"]


@dataclass(frozen=True)
class CycleSources:
    """Where a cycle reads from and publishes to."""

    store: Path  # the observation store
    shards: Path  # the training shards: grid, channels, input stations
    checkpoint: Path
    products: Path  # publication root


@dataclass
class CycleResult:
    product: str
    cycle_time: datetime
    status: Status
    path: Path | None
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    obs_used: int = 0
    obs_late: int = 0  # reports of the windows received after the cut-off
    deadline_margin_s: float = 0.0  # deadline minus publication time (negative: missed)
    reason: str = ""

    @property
    def missed(self) -> bool:
        return self.status == "fallback" or self.deadline_margin_s < 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def cycle_observations(
    store: Path,
    variables: list[str],
    cycle_time: datetime,
    history: int,
    step_hours: int,
    received_by: datetime | None,
) -> tuple[pd.DataFrame, int]:
    """The stored reports that the windows of a cycle at ``cycle_time`` hold: (T - history ×
    step, T], received by the cut-off where the store records receipt; and how many of the
    windows' reports arrived after it (late for this cycle, used by the next)."""
    from stratocast.obs.store import read_observations

    step = timedelta(hours=step_hours)
    first = cycle_time - (history - 1) * step
    obs = read_observations(store, variables=variables, start=first - step, end=cycle_time)
    obs = obs[obs["time"] > pd.Timestamp(first - step)]
    late = 0
    if received_by is not None and "received" in obs.columns:
        got = obs["received"]
        in_time = (got.isna() | (got <= pd.Timestamp(received_by))).to_numpy()
        late = int((~in_time).sum())
        obs = obs[in_time]
    return obs, late


def cycle_inputs(
    obs: pd.DataFrame, m: Manifest, cycle_time: datetime, history: int, step_hours: int
) -> np.ndarray:
    """(history, S, V) physical windows for the shards' input stations, built by the same
    code as the shards (bit-identical on the same reports)."""
    first = np.datetime64(cycle_time.replace(tzinfo=None), "ns") - np.timedelta64(
        (history - 1) * step_hours, "h"
    )
    return obs_windows(obs, m.station_ids, m.obs_variables, first, step_hours, history)


def _export(ds: xr.Dataset, tmp: Path, outputs: list[str], sites: str | None = None) -> list[str]:
    from stratocast.infer.writers.registry import get_writer

    files = []
    for name in ["zarr", *(o for o in outputs if o != "zarr")]:
        writer = get_writer(name, sites=sites) if name.startswith("points") else get_writer(name)
        file = f"forecast{writer.suffix}"
        writer.write(ds, tmp / file)
        files.append(file)
    return files


def compute(
    warm: WarmModel,
    m: Manifest,
    obs: pd.DataFrame,
    cycle_time: datetime,
    horizon_hours: int,
    members: int = 1,
) -> tuple[xr.Dataset, int]:
    """The forecast of one cycle; with ``members`` > 1 an ensemble (``member`` dimension,
    member 0 the control) from perturbed observations (stratocast.infer.ensemble)."""
    step_h = warm.step_hours
    if horizon_hours % step_h:
        raise ProductError(f"horizon {horizon_hours} h is not a multiple of the {step_h} h step")
    n_lead = horizon_hours // step_h
    dense = cycle_inputs(obs, m, cycle_time, warm.history, step_h)
    if not np.isfinite(dense).any():
        # an analysis of nothing is the model's climatology, not a forecast of today
        raise ProductError(
            f"no observations of the model's {len(m.station_ids)} input stations in the "
            f"{warm.history} windows up to {cycle_time.isoformat()} (received by the cut-off)"
        )
    warm.set_sites(
        np.asarray(m.station_lat), np.asarray(m.station_lon), np.asarray(m.station_elevation)
    )
    t = np.datetime64(cycle_time.replace(tzinfo=None), "ns")
    offsets = np.arange(-warm.history + 1, n_lead + 1)
    valid = (t + offsets * np.timedelta64(step_h, "h"))[None, :]
    n_obs = int(np.isfinite(dense).sum())
    if members == 1:
        values = warm.forecast(dense[None], valid, n_lead)
        return forecast_dataset(values, np.asarray([t]), step_h, m, warm.card), n_obs
    inputs = perturbed(
        dense, m.obs_variables, np.asarray(warm.card.obs_stats.std), cycle_time, members
    )
    # members are independent samples of one batch: nothing in the model couples them
    values = warm.forecast(inputs, np.repeat(valid, members, axis=0), n_lead)
    per_member = [
        forecast_dataset(values[k : k + 1], np.asarray([t]), step_h, m, warm.card)
        for k in range(members)
    ]
    ds = xr.concat([d.drop_vars("orography") for d in per_member], dim="member")
    ds = ds.assign_coords(member=("member", np.arange(members), {"standard_name": "realization"}))
    ds["orography"] = per_member[0]["orography"]
    ds.attrs["title"] = "stratocast ensemble forecast (perturbed observations)"
    return ds.transpose("init_time", "member", "lead_time", ...), n_obs


def fallback_dataset(prev: xr.Dataset, prev_time: datetime, cycle_time: datetime) -> xr.Dataset:
    """The previous cycle's forecast seen from this cycle's time: leads shifted by the gap,
    those before this cycle dropped, flagged so no reader takes it for a fresh forecast."""
    gap_h = int((cycle_time - prev_time).total_seconds() // 3600)
    lead = prev["lead_time"].values - gap_h
    if not (lead >= 0).any():
        raise ProductError(
            f"the previous publication ({prev_time.isoformat()}) ends before "
            f"{cycle_time.isoformat()}: nothing to fall back on"
        )
    out = prev.isel(lead_time=np.nonzero(lead >= 0)[0])
    out = out.assign_coords(
        lead_time=("lead_time", lead[lead >= 0], prev["lead_time"].attrs),
        init_time=np.asarray([np.datetime64(cycle_time.replace(tzinfo=None), "ns")]),
    )
    out.attrs = {**prev.attrs, "fallback_from": prev_time.isoformat(), "fallback": "true"}
    return out


def run_cycle(
    name: str,
    product: ProductConfig,
    src: CycleSources,
    cycle_time: datetime,
    warm: WarmModel | None = None,
    clock: Clock = _utc_now,
    force: bool = False,
) -> CycleResult:
    if not product.is_cycle_time(cycle_time):
        raise ProductError(
            f"product {name}: {cycle_time.isoformat()} is not on its cycle {product.cycle!r}"
        )
    deadline = product.deadline(cycle_time)
    done = published(src.products, name, cycle_time)
    if done is not None and not force:
        return CycleResult(name, cycle_time, "already", src.products / name, reason="published")
    phases: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        if warm is None:  # a one-off `stratocast cycle`: cold start, measured
            warm = WarmModel(src.checkpoint)
            phases["load"] = time.perf_counter() - t0
        m = load_manifest(src.shards)
        check_compatible(warm.card, src.shards, m)
        t1 = time.perf_counter()
        obs, n_late = cycle_observations(
            src.store,
            list(warm.card.geometry.obs_variables),
            cycle_time,
            warm.history,
            warm.step_hours,
            product.cutoff(cycle_time),
        )
        phases["ingest"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        ds, n_obs = compute(warm, m, obs, cycle_time, product.horizon_hours, product.members)
        phases["compute"] = time.perf_counter() - t2
    except StratocastError as err:
        if product.fallback != "previous":
            raise
        return _fallback(name, product, src, cycle_time, clock, f"{err}")
    ds.attrs.update(product=name, kind=product.kind)
    record: dict[str, Any] = {
        "product": name,
        "kind": product.kind,
        "cycle_time": cycle_time.isoformat(),
        "cutoff": product.cutoff(cycle_time).isoformat(),
        "deadline": deadline.isoformat(),
        "observations_used": n_obs,
        "observations_late": n_late,
        "checkpoint": str(src.checkpoint),
        "fallback": False,
    }
    record["phases"] = phases

    def write(tmp: Path) -> list[str]:
        # publish() writes COMPLETE from ``record`` after this returns: the export time and
        # the publication time it records are those of the files just written
        t3 = time.perf_counter()
        files = _export(ds, tmp, product.outputs, product.sites)
        phases["export"] = time.perf_counter() - t3
        record["published_at"] = clock().isoformat()
        return files

    path = publish(src.products, name, cycle_time, write, record)
    margin = (deadline - clock()).total_seconds()
    return CycleResult(name, cycle_time, "published", path, phases, n_obs, n_late, margin)


def _fallback(
    name: str,
    product: ProductConfig,
    src: CycleSources,
    cycle_time: datetime,
    clock: Clock,
    reason: str,
) -> CycleResult:
    found = previous(src.products, name, cycle_time)
    if found is None:
        raise ProductError(
            f"product {name} at {cycle_time.isoformat()}: {reason}; and no earlier publication "
            "to fall back on"
        )
    prev_time, prev_dir = found
    prev = xr.open_zarr(prev_dir / "forecast.zarr", consolidated=False).load()
    ds = fallback_dataset(prev, prev_time, cycle_time)
    ds.attrs["fallback_reason"] = reason
    record = {
        "product": name,
        "kind": product.kind,
        "cycle_time": cycle_time.isoformat(),
        "deadline": product.deadline(cycle_time).isoformat(),
        "fallback": True,
        "fallback_from": prev_time.isoformat(),
        "reason": reason,
        "published_at": clock().isoformat(),
    }
    path = publish(src.products, name, cycle_time, lambda tmp: _export(ds, tmp, ["zarr"]), record)
    margin = (product.deadline(cycle_time) - clock()).total_seconds()
    return CycleResult(name, cycle_time, "fallback", path, {}, 0, 0, margin, reason)
