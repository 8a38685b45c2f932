"""Trainer: seeded, resumable, multi-step rollout with a curriculum, on 1 to N processes.

Model code stays single-device; ``parallel.parallelize`` wraps it for DDP or FSDP2 from
outside. The same config trains on one CPU or under ``torchrun`` on many GPUs; only
``train.parallel`` changes (and ``batch_size``/``grad_accum`` if the global batch is to stay).

Determinism: initialisation is seeded with ``seed`` (the same on every rank), the data order
with (``seed``, epoch) in the sampler, and any noise with (``seed``, rank); so the same seed and
world size give the same loss curve, bitwise on CPU, also across a resume.
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pydantic import ValidationError
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from tqdm import tqdm

from stratocast.config import format_validation
from stratocast.loader.dataset import ShardStore, WindowSpec
from stratocast.loader.pipeline import FieldSpec, PipelineLoader
from stratocast.loader.prefetch import PrefetchLoader
from stratocast.loader.sampler import WindowSampler
from stratocast.models.base import Geometry, build_model
from stratocast.models.checkpoint import export_safetensors, save_checkpoint
from stratocast.models.rollout import cycle_and_rollout
from stratocast.shards.layout import GRID, OBS
from stratocast.shards.reader import ShardArrayReader
from stratocast.train.config import ModelConfig as ModelConfig
from stratocast.train.config import TrainConfig as TrainConfig
from stratocast.train.dcp_checkpoint import (
    Checkpointer,
    ResumeError,
    checkpoint_dir,
    complete_steps,
    set_rng_state,
)
from stratocast.train.guard import (
    NonFiniteTrainingError,
    ObsCoverage,
    check_obs_coverage,
    describe_nonfinite,
    obs_coverage,
)
from stratocast.train.loss import channel_weights, latitude_weights, weighted_mse
from stratocast.train.monitor import Monitor, StepTimer, device_stats
from stratocast.train.parallel import (
    CommTimer,
    DistInfo,
    init_distributed,
    parallelize,
    shutdown_distributed,
)
from stratocast.train.preempt import Preempted, PreemptionFlag

# Settings a resumed run may change: how it runs, not what it learns. The global batch is
# compared separately (micro-batch and accumulation may change with the world size).
_RUNTIME_FIELDS = {
    "batch_size",
    "grad_accum",
    "global_batch",
    "prefetch_depth",
    "loader",
    "loader_readers",
    "threads",
    "log_every",
    "val_every",
    "tensorboard",
    "parallel",
    "checkpoint",
}


def _learning_fields(cfg: TrainConfig) -> dict[str, Any]:
    d = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _RUNTIME_FIELDS}
    d["effective_global_batch"] = cfg.effective_global_batch
    return d


def geometry_from_store(store: ShardStore) -> Geometry:
    m = store.manifest
    return Geometry(
        lat=np.asarray(m.lat),
        lon=np.asarray(m.lon),
        orography=np.asarray(m.orography) if m.orography else np.zeros((len(m.lat), len(m.lon))),
        station_lat=np.asarray(m.station_lat),
        station_lon=np.asarray(m.station_lon),
        station_elevation=np.asarray(m.station_elevation),
        channels=tuple(m.channels),
        obs_variables=tuple(m.obs_variables),
        obs_std=np.asarray(m.obs_stats.std),
        tendency_scale=np.asarray(m.grid_stats.diff_std) / np.asarray(m.grid_stats.std),
    )


def _rollout_at(cfg: TrainConfig, step: int) -> int:
    ramp = max(1, int(cfg.rollout_ramp * cfg.steps))
    return min(cfg.rollout, 1 + (cfg.rollout - 1) * step // ramp)


def _lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _schedule_step(cfg: TrainConfig, step: int, elapsed_s: float) -> int | None:
    """The step the schedules are read at: the step itself, or with a time budget the
    elapsed fraction of the budget mapped onto ``steps``; None once the budget is spent."""
    budget = cfg.time_budget_s
    if budget is None:
        return step
    if elapsed_s >= budget:
        return None
    return min(cfg.steps - 1, int(cfg.steps * elapsed_s / budget))


def _elapsed(run: _Run, t_start: float) -> float:
    """Seconds since the loop began; with a time budget on several processes, the largest
    over the ranks, so that every rank reads the same schedule and stops at the same step."""
    elapsed = time.perf_counter() - t_start
    if run.cfg.time_budget_s is None or not run.dist.distributed:
        return elapsed
    t = torch.tensor([elapsed], dtype=torch.float64, device=run.dist.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _noise_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@torch.no_grad()
def validate(
    model: torch.nn.Module, store: ShardStore, cfg: TrainConfig, max_batches: int = 8
) -> dict[str, list[float]]:
    """Latitude-weighted RMSE in physical units per channel and lead step on the val period."""
    spec = WindowSpec(cfg.history, cfg.rollout)
    idx = store.indices(cfg.val_start, cfg.val_end, spec)
    lat_w = latitude_weights(torch.tensor(store.manifest.lat, dtype=torch.float32))
    std = torch.tensor(store.manifest.grid_stats.std, dtype=torch.float32)
    sums = torch.zeros(cfg.history + cfg.rollout, len(store.manifest.channels))
    n = 0
    model.eval()
    for chunk in np.array_split(idx, max(1, min(max_batches, len(idx) // cfg.batch_size)))[
        :max_batches
    ]:
        b = store.batch(chunk, spec)
        pred = cycle_and_rollout(
            model,  # type: ignore[arg-type]
            torch.from_numpy(b["obs"]),
            torch.from_numpy(b["obs_mask"]),
            torch.from_numpy(b["clock"]),
            cfg.rollout,
        )
        err = (pred - torch.from_numpy(b["target"])) ** 2 * lat_w[None, None, None, :, None]
        sums += err.mean(dim=(3, 4)).sum(dim=0)
        n += len(chunk)
    model.train()
    rmse = torch.sqrt(sums / max(n, 1)) * std[None, :]
    return {c: rmse[:, k].tolist() for k, c in enumerate(store.manifest.channels)}


def _full_model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The forecast model's whole state dict on rank 0 (CPU); empty on the other ranks under
    FSDP. A collective under FSDP: every rank calls it."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(module, options=opts)
    prefix = "model."  # see parallel.Rollout
    return {
        k[len(prefix) :]: v
        for k, v in full.items()
        if k.startswith(prefix) and isinstance(v, torch.Tensor)
    }


def _clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads)
    # FSDP gradients are shards (DTensors): their norm is partial until reduced over ranks.
    full = getattr(total, "full_tensor", None)
    if full is not None:
        total = full()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def _no_sync(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """Skip the gradient collective on all but the last micro-batch of an accumulation."""
    if sync:
        return contextlib.nullcontext()
    if isinstance(module, nn.parallel.DistributedDataParallel):
        return module.no_sync()
    set_sync = getattr(module, "set_requires_gradient_sync", None)  # FSDP2
    if set_sync is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def fsdp_no_sync() -> Iterator[None]:
        set_sync(False)
        try:
            yield
        finally:
            set_sync(True)

    return fsdp_no_sync()


@dataclass
class _Run:
    """What one training run holds; built by _setup, used by the loop."""

    cfg: TrainConfig
    out: Path
    dist: DistInfo
    store: ShardStore
    geometry: Geometry
    module: nn.Module
    opt: torch.optim.Optimizer
    loader: PrefetchLoader | PipelineLoader
    ckpt: Checkpointer
    comm: CommTimer
    lat_w: torch.Tensor
    chan_w: torch.Tensor
    coverage: ObsCoverage
    step: int = 0
    eval_model: nn.Module | None = None

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "batch_size": self.cfg.batch_size,
            "grad_accum": self.cfg.grad_accum,
            "train_config": self.cfg.model_dump(mode="json"),
        }

    def save(self, step: int, extra: dict[str, Any] | None = None) -> None:
        meta = {**self.checkpoint_meta(), **(extra or {})}
        self.ckpt.save(step, self.module, self.opt, self.loader.state_dict(), meta)

    def validate(self) -> dict[str, list[float]] | None:
        """RMSE on the validation period, computed on rank 0 from a gathered copy (the
        training module may be sharded); None on the other ranks."""
        full = _full_model_state(self.module)
        result = None
        if self.dist.is_main:
            if self.eval_model is None:
                cfg = self.cfg
                self.eval_model = build_model(cfg.model.name, self.geometry, cfg.model.options())
            self.eval_model.load_state_dict(full)
            result = validate(self.eval_model, self.store, self.cfg)
        if self.dist.distributed:
            dist.barrier()
        return result


def _loader(
    cfg: TrainConfig,
    shards: Path,
    store: ShardStore,
    sampler: WindowSampler,
    spec: WindowSpec,
    dist_info: DistInfo,
) -> PrefetchLoader | PipelineLoader:
    if cfg.loader == "memory":
        return PrefetchLoader(
            sampler,
            lambda i: store.batch(i, spec),
            depth=cfg.prefetch_depth,
            pin_memory=dist_info.device.type == "cuda",
        )
    h, r = spec.history, spec.rollout

    def clock(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {"clock": store.clock[idx[:, None] + np.arange(-h + 1, r + 1)[None, :]]}

    fields = {
        "obs": FieldSpec(
            ShardArrayReader(shards, OBS), (-h + 1, 1), store.obs_mean, store.obs_std, "obs_mask"
        ),
        "target": FieldSpec(
            ShardArrayReader(shards, GRID), (-h + 1, r + 1), store.grid_mean, store.grid_std
        ),
    }
    device = dist_info.device if dist_info.device.type == "cuda" else None
    return PipelineLoader(
        sampler,
        fields,
        depth=cfg.prefetch_depth,
        readers=cfg.loader_readers,
        extras=clock,
        device=device,
    )


def _min_obs_fraction(cfg: TrainConfig, override: float | None) -> float:
    if override is not None:
        return override
    return cfg.min_obs_fraction


def _setup(
    cfg: TrainConfig,
    shards: Path,
    out: Path,
    dist_info: DistInfo,
    min_obs_fraction: float | None = None,
) -> _Run:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed_all(cfg.seed)  # the same initial weights on every rank
    store = ShardStore(shards)
    # Before any model is built: a period without observations fails here, not as NaN later.
    coverage = obs_coverage(shards, store.manifest.times(), cfg.train_start, cfg.train_end)
    check_obs_coverage(coverage, _min_obs_fraction(cfg, min_obs_fraction), shards)
    chan_w = channel_weights(store.manifest.channels, cfg.loss_weights)  # before any model
    geometry = geometry_from_store(store)
    model = build_model(cfg.model.name, geometry, cfg.model.options())
    comm = CommTimer()
    module = parallelize(model, cfg.parallel, dist_info, cfg.precision, comm)
    named = list(module.named_parameters())  # after sharding: the optimizer steps the shards
    opt = torch.optim.AdamW(
        [
            {"params": [p for _, p in named if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    spec = WindowSpec(cfg.history, cfg.rollout)
    sampler = WindowSampler(
        store.indices(cfg.train_start, cfg.train_end, spec),
        cfg.batch_size,
        cfg.seed,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
    )
    loader = _loader(cfg, shards, store, sampler, spec, dist_info)
    lat_w = latitude_weights(torch.tensor(store.manifest.lat, dtype=torch.float32))
    return _Run(
        cfg=cfg,
        out=out,
        dist=dist_info,
        store=store,
        geometry=geometry,
        module=module,
        opt=opt,
        loader=loader,
        ckpt=Checkpointer(out / "checkpoints", cfg.checkpoint, dist_info),
        comm=comm,
        lat_w=lat_w.to(dist_info.device),
        chan_w=chan_w.to(dist_info.device),
        coverage=coverage,
    )


def _resume(run: _Run, from_step: int | None) -> None:
    """Roll back to ``from_step`` (deleting later checkpoints) or forward to the newest
    complete checkpoint; a fresh start when there is none."""
    root = run.ckpt.root
    if from_step is not None:
        if from_step not in complete_steps(root):
            raise ResumeError(
                f"--from-step {from_step}: no complete checkpoint for that step in {root}; "
                f"complete ones: {complete_steps(root)}"
            )
        run.ckpt.drop_after(from_step)
        step: int | None = from_step
    else:
        have = complete_steps(root)
        step = have[-1] if have else None
    if step is None:
        torch.manual_seed(_noise_seed(run.cfg.seed, run.dist.rank))
        return
    restored = run.ckpt.restore(step, run.module, run.opt, run.cfg.batch_size)
    try:  # meta.json is data: a damaged or foreign one is named, not a traceback
        saved_cfg = TrainConfig.model_validate(restored.meta["train_config"])
    except KeyError:
        raise ResumeError(f"{checkpoint_dir(root, step) / 'meta.json'}: no train_config") from None
    except ValidationError as err:
        where = f"{checkpoint_dir(root, step) / 'meta.json'} (train_config)"
        raise ResumeError(format_validation(err, where)) from None
    mine, theirs = _learning_fields(run.cfg), _learning_fields(saved_cfg)
    differ = sorted(k for k in mine if mine[k] != theirs.get(k))
    if differ:
        raise ResumeError(
            f"the checkpoint at step {step} in {root} was trained with a different "
            f"configuration ({', '.join(differ)} differ); start afresh with --fresh or in "
            "another output directory"
        )
    run.loader.load_state_dict(restored.loader_state)
    if restored.rng_state is not None:
        set_rng_state(restored.rng_state)
    else:  # a rank that did not exist when the checkpoint was saved
        torch.manual_seed(_noise_seed(run.cfg.seed, run.dist.rank))
    run.step = step


def _export(run: _Run, val: dict[str, list[float]] | None) -> Path:
    """Inference weights: model.pt (what the forecaster reads) and model.safetensors with
    model.json, from rank 0."""
    full = _full_model_state(run.module)
    path = run.out / "model.pt"
    if not run.dist.is_main:
        return path
    cfg, m = run.cfg, run.store.manifest
    extra = {
        "step": run.step,
        "train_config": cfg.model_dump(mode="json"),
        "grid_stats": vars(m.grid_stats),
        "obs_stats": vars(m.obs_stats),
        "time_step_hours": m.time_step_hours,
        "history": cfg.history,
        "val_rmse": val,
    }
    save_checkpoint(path, full, cfg.model.name, cfg.model.options(), run.geometry, extra)
    export_safetensors(
        run.out / "model.safetensors",
        full,
        cfg.model.name,
        cfg.model.options(),
        run.geometry,
        extra,
    )
    return path


@dataclass
class _StepResult:
    per_step: torch.Tensor  # local loss per rollout step, averaged over the micro-batches
    grad_norm: torch.Tensor  # the clipped-from norm (global: DDP/FSDP gradients are reduced)
    finite: torch.Tensor  # 0-d bool on the device: loss and gradient norm finite (no sync)
    batch: dict[str, torch.Tensor]  # the last micro-batch and its output, for the diagnosis
    pred: torch.Tensor


def _train_step(
    run: _Run, batches: Iterator[dict[str, torch.Tensor]], timer: StepTimer, k: int, lr: float
) -> _StepResult:
    """Forward, backward and clipping over ``grad_accum`` micro-batches; the optimizer step
    is left to the caller, which takes it only once every rank agrees the step is finite."""
    cfg, dev = run.cfg, run.dist.device
    for group in run.opt.param_groups:
        group["lr"] = lr
    # FSDP's mixed-precision policy casts itself; elsewhere bf16 is autocast over fp32 weights.
    fsdp = run.dist.distributed and cfg.parallel.strategy == "fsdp"
    autocast = cfg.precision == "bf16" and not fsdp
    run.opt.zero_grad(set_to_none=True)
    per_step_sum = torch.zeros(cfg.history + k, device=dev)
    for micro in range(cfg.grad_accum):
        with timer.phase("data"):
            batch = {key: v.to(dev, non_blocking=True) for key, v in next(batches).items()}
        with _no_sync(run.module, micro == cfg.grad_accum - 1):
            with timer.phase("forward"):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                    pred = run.module(batch["obs"], batch["obs_mask"], batch["clock"], k)
                target = batch["target"][:, : cfg.history + k]
                per_step = weighted_mse(pred.float(), target, run.lat_w, run.chan_w)
                loss = per_step.mean() / cfg.grad_accum
            with timer.phase("backward"):
                loss.backward()
        per_step_sum += per_step.detach()
    with timer.phase("optimizer"):
        params = [p for p in run.module.parameters()]
        gnorm = _clip_grad_norm(params, cfg.grad_clip)
    per_step_mean = per_step_sum / cfg.grad_accum
    # Stays on the device: it travels in _agree's one all-reduce and host copy.
    finite = torch.isfinite(per_step_mean).all() & torch.isfinite(gnorm)
    return _StepResult(per_step_mean, gnorm, finite, batch, pred.detach())


def _agree(
    run: _Run, per_step: torch.Tensor, stop: bool, finite: torch.Tensor | None = None
) -> tuple[torch.Tensor, bool, bool]:
    """The loss averaged over ranks (for the log), whether any rank was signalled and
    whether any rank's step was non-finite: one all-reduce and one host copy per step, so
    every rank stops at the same step boundary."""
    dev = per_step.device
    bad = (~finite).float().reshape(1) if finite is not None else torch.zeros(1, device=dev)
    packed = torch.cat([per_step, torch.tensor([float(stop)], device=dev), bad])
    if run.dist.distributed:
        dist.all_reduce(packed)  # gloo has no AVG: sum, then divide
        packed[:-2] /= run.dist.world_size
    host = packed.cpu()
    return host[:-2], bool(host[-2] > 0), bool(host[-1] > 0)


def _nonfinite(run: _Run, result: _StepResult) -> NonFiniteTrainingError:
    """The error for a step that any rank found non-finite (the failure path: syncs freely)."""
    m = run.store.manifest
    msg = describe_nonfinite(
        step=run.step + 1,
        loss=float(result.per_step.mean()),
        grad_norm=float(result.grad_norm),
        batch=result.batch,
        pred=result.pred,
        times=m.times(),
        history=run.cfg.history,
        channels=m.channels,
        obs_variables=m.obs_variables,
        world_size=run.dist.world_size if run.dist.distributed else 1,
    )
    run.ckpt.wait()  # an asynchronous save of an earlier step lands before we report
    have = complete_steps(run.ckpt.root)
    kept = f"the newest checkpoint is step {have[-1]}" if have else "no checkpoint was written"
    where = f" on rank {run.dist.rank}" if run.dist.distributed else ""
    return NonFiniteTrainingError(
        f"{msg}{where}; stopped before the optimizer step, {kept} (in {run.ckpt.root})"
    )


def _loop(run: _Run, monitor: Monitor, progress: bool) -> str | None:
    """Train to ``cfg.steps``; returns the name of the signal that stopped it early, if any."""
    cfg = run.cfg
    timer = StepTimer()
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train", unit="step", disable=not progress)
    batches = iter(run.loader)
    t_last = time.perf_counter()
    steps_since_log = 0
    # Empty windows train as masked windows: counted in the run's first record, not hidden.
    cov = run.coverage
    pending: dict[str, Any] = {"obs/train_windows": cov.windows, "obs/masked_windows": cov.masked}
    try:
        with PreemptionFlag() as flag:
            t_start = time.perf_counter()
            while run.step < cfg.steps:
                at = _schedule_step(cfg, run.step, _elapsed(run, t_start))
                if at is None:
                    break  # the time budget is spent
                k = _rollout_at(cfg, at)
                lr = _lr_at(cfg, at)
                result = _train_step(run, batches, timer, k, lr)
                with timer.phase("communication"):
                    per_step, stop, bad = _agree(run, result.per_step, flag.raised, result.finite)
                if bad:  # every rank sees it: all stop here, before the step and its checkpoint
                    raise _nonfinite(run, result)
                with timer.phase("optimizer"):
                    run.opt.step()
                gnorm = result.grad_norm
                run.step += 1
                steps_since_log += 1
                timer.step()
                bar.update(1)
                if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                    now = time.perf_counter()
                    rate = steps_since_log * cfg.effective_global_batch / (now - t_last)
                    allreduce_ms = 1e3 * run.comm.take() / steps_since_log
                    t_last, steps_since_log = now, 0
                    record: dict[str, Any] = {
                        "loss": float(per_step.mean()),
                        "loss_per_step": [float(x) for x in per_step],
                        "grad_norm": float(gnorm),
                        "lr": lr,
                        "rollout": k,
                        "samples_per_s": rate,
                        **run.loader.metrics.snapshot(),
                        **timer.snapshot(),
                        # DDP's bucketed gradient all-reduce, overlapping the backward
                        "time/grad_allreduce_ms": allreduce_ms,
                        **device_stats(),
                        **pending,
                    }
                    pending = {}
                    monitor.scalars(run.step, record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", k=k)
                if cfg.val_every and run.step % cfg.val_every == 0 and run.step < cfg.steps:
                    val = run.validate()
                    if val is not None:
                        monitor.scalars(run.step, {"val_rmse": val})
                if stop:
                    signal_name = flag.signal_name or "a signal on another rank"
                    run.save(run.step, {"preempted_by": signal_name})
                    return signal_name
                every = cfg.checkpoint.every
                if every and run.step % every == 0 and run.step < cfg.steps:
                    run.save(run.step)
    finally:
        bar.close()
        run.loader.close()
    return None


def train(
    cfg: TrainConfig,
    shards: Path,
    out: Path,
    progress: bool = True,
    from_step: int | None = None,
    fresh: bool = False,
    min_obs_fraction: float | None = None,
) -> Path:
    """Train (or resume) and write ``out/model.pt`` (+ ``model.safetensors``/``model.json``);
    returns the model.pt path. Metrics go to ``out/metrics.jsonl`` (and TensorBoard), resumable
    state to ``out/checkpoints/``.

    Resumes from the newest complete checkpoint unless ``fresh`` (which deletes them);
    ``from_step`` rolls back to that checkpoint and deletes the later ones. On SIGTERM/SIGUSR1
    it saves at the next step boundary and raises :class:`Preempted` (exit code inside).

    Raises :class:`TooFewObservationsError` before any step when fewer than
    ``min_obs_fraction`` (default: ``train.min_obs_fraction``, else 0.5) of the training
    period's windows hold an observation, and :class:`NonFiniteTrainingError` at the first step
    whose loss or gradient norm is not finite, before its optimizer step and checkpoint.
    """
    if fresh and from_step is not None:
        raise ResumeError("--fresh and --from-step exclude each other")
    dist_info = init_distributed(cfg.parallel)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if fresh and dist_info.is_main:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        if dist_info.distributed:
            dist.barrier()
        run = _setup(cfg, shards, out, dist_info, min_obs_fraction)
        _resume(run, from_step)
        # Records after the checkpoint (from an interrupted run) are redone: drop them.
        start = run.step + 1 if run.step else 0
        with Monitor(out, dist_info.rank, tensorboard=cfg.tensorboard, start_step=start) as mon:
            stopped_by = _loop(run, mon, progress)
            if stopped_by is not None:
                run.ckpt.wait()
                raise Preempted(run.step, stopped_by, cfg.checkpoint.requeue_exit_code)
            if run.step not in complete_steps(run.ckpt.root):
                run.save(run.step)
            val = run.validate()
            if val is not None:
                mon.scalars(run.step, {"val_rmse": val})
            path = _export(run, val)
            run.ckpt.wait()
        if dist_info.distributed:
            dist.barrier()
        return path
    finally:
        shutdown_distributed()
