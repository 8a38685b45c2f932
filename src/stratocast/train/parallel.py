"""Parallel training from outside the model: process group, DDP or FSDP2, checkpointing, compile.

Model code stays single-device. ``init_distributed`` reads the environment ``torchrun`` sets
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and checks it against the configured parallel
dimensions; ``parallelize`` wraps a model for the chosen strategy. One process without torchrun
is world size 1 and needs no process group: the model is then used as it is.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
import torch.distributed as dist
from torch import nn

from stratocast.errors import StratocastError
from stratocast.models.rollout import Rollout
from stratocast.train.config import ParallelConfig as ParallelConfig


class ParallelError(StratocastError, RuntimeError):
    """The launch environment does not match the configured parallel dimensions."""


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ParallelError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(cfg: ParallelConfig) -> DistInfo:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs)."""
    world = _env_int("WORLD_SIZE", 1)
    if world != cfg.world_size:
        how = (
            f"launch with `torchrun --nnodes {cfg.nodes} --nproc_per_node {cfg.procs_per_node}`"
            if world == 1
            else "change train.parallel or the launcher"
        )
        raise ParallelError(
            f"train.parallel asks for {cfg.nodes} node(s) x {cfg.procs_per_node} process(es) = "
            f"{cfg.world_size}, but WORLD_SIZE is {world}: {how}"
        )
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        # NCCL carries the GPU tensors; gloo beside it carries CPU objects (loader states,
        # async checkpoint coordination).
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.index else None)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """A model's repeated blocks: the modules that declare an ``activation_checkpointing``
    switch. They are the units of activation checkpointing and of FSDP sharding."""
    return [m for m in model.modules() if hasattr(m, "activation_checkpointing")]


class CommTimer:
    """Wall time spent in gradient collectives, summed (they overlap with backward)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def take(self) -> float:
        s, self.seconds = self.seconds, 0.0
        return s


def _timed_allreduce_hook(timer: CommTimer) -> Callable[[Any, Any], Any]:
    """DDP's default averaging all-reduce, timed from launch to completion per bucket."""

    def hook(group: Any, bucket: Any) -> Any:
        pg = group if group is not None else dist.group.WORLD
        t0 = time.perf_counter()
        buf = bucket.buffer().div_(dist.get_world_size(pg))
        fut = dist.all_reduce(buf, group=pg, async_op=True).get_future()

        def done(f: Any) -> torch.Tensor:
            timer.seconds += time.perf_counter() - t0
            out: torch.Tensor = f.value()[0]
            return out

        return fut.then(done)

    # DDP checks the hook's annotations as objects; postponed annotations are strings here.
    hook.__annotations__ = {
        "group": object,
        "bucket": dist.GradBucket,
        "return": torch.futures.Future[torch.Tensor],
    }
    return hook


def _apply_activation_checkpointing(model: nn.Module) -> None:
    blocks = blocks_of(model)
    if not blocks:
        raise ParallelError(
            f"activation checkpointing asked, but {type(model).__name__} declares no blocks "
            "(modules with an `activation_checkpointing` attribute)"
        )
    for blk in blocks:
        setattr(blk, "activation_checkpointing", True)  # noqa: B010 (nn.Module's attr typing)


def _compile(model: nn.Module) -> None:
    if not torch._dynamo.is_dynamo_supported():
        warnings.warn("torch.compile is not supported here; training uncompiled", stacklevel=2)
        return
    for blk in blocks_of(model):
        blk.compile()


def parallelize(
    model: nn.Module,
    cfg: ParallelConfig,
    dist_info: DistInfo,
    precision: Literal["fp32", "bf16"] = "fp32",
    comm_timer: CommTimer | None = None,
) -> nn.Module:
    """Wrap a single-device forecast model for training; returns the module to call,
    ``module(obs, obs_mask, clock, rollout) -> states`` (cycling + rollout, see cycle.py).

    State dict keys are ``model.<the model's own keys>`` whatever the strategy (DCP's
    state-dict helpers drop DDP's prefix), so checkpoints move between strategies and world
    sizes. FSDP2 shards each block, then each of the model's sub-networks, then the root; with
    bf16 its mixed-precision policy computes in bf16 and reduces gradients in fp32 while the
    sharded master weights stay fp32. Under DDP the caller runs the forward under bf16
    autocast.
    """
    model.to(dist_info.device)
    if cfg.activation_checkpointing:
        _apply_activation_checkpointing(model)
    if cfg.compile:
        _compile(model)
    root = Rollout(model)
    if not dist_info.distributed:
        return root
    if cfg.strategy == "ddp":
        on_gpu = dist_info.device.type == "cuda"
        ddp = nn.parallel.DistributedDataParallel(
            root, device_ids=[dist_info.device.index] if on_gpu else None
        )
        if comm_timer is not None:
            ddp.register_comm_hook(None, _timed_allreduce_hook(comm_timer))
        return ddp
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if precision == "bf16"
        else MixedPrecisionPolicy()
    )
    blocks = blocks_of(model)
    for blk in blocks:
        fully_shard(blk, mp_policy=mp)
    for child in model.children():
        # Each sub-network with parameters of its own is a unit too, so its inputs are cast
        # to the compute dtype at its entry: the model's fp32 buffers never meet bf16 weights.
        if child not in blocks and any(True for _ in child.parameters()):
            fully_shard(child, mp_policy=mp)
    # The root's inputs (observations, clock) stay fp32: they meet fp32 buffers (the
    # observation operator) before any sharded sub-network casts them.
    root_mp = MixedPrecisionPolicy(
        param_dtype=mp.param_dtype, reduce_dtype=mp.reduce_dtype, cast_forward_inputs=False
    )
    fully_shard(root, mp_policy=root_mp)
    return root


def forecast_model(module: nn.Module) -> nn.Module:
    """The single-device model inside what ``parallelize`` returned."""
    inner = module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
    return cast(Rollout, inner).model
