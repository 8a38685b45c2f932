"""The training configs (model, parallel layout, checkpoints, the run), free of torch.

They live apart from the trainer so that reading and validating a run's config (every CLI
command does, first) costs no torch import: a config mistake is reported in well under a
second instead of after loading the training stack. The trainer, ``parallel`` and
``dcp_checkpoint`` re-export them under their old names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, model_validator

from stratocast.config import (
    BATCH_MAX,
    STEPS_MAX,
    WORKERS_MAX,
    ComponentConfig,
    count,
    format_validation,
)
from stratocast.models.obs2grid.config import Obs2GridConfig
from stratocast.train.preempt import REQUEUE_EXIT_CODE


class ParallelConfig(ComponentConfig):
    """How many processes train, and how the model is spread over them."""

    nodes: int = count(1, le=WORKERS_MAX)
    procs_per_node: int = count(1, le=WORKERS_MAX)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # Recompute each block's activations in backward instead of storing them: less memory,
    # about one more forward's compute.
    activation_checkpointing: bool = False
    compile: bool = False

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


class CheckpointConfig(ComponentConfig):
    every: int = count(250, ge=0, le=STEPS_MAX)  # steps between periodic saves; 0: only end/signal
    keep: int = count(2, le=10_000)  # complete checkpoints kept (the newest)
    # dcp.async_save on GPUs (training continues while the previous state is written);
    # always synchronous on CPU, where staging the copy would cost as much as writing it.
    async_save: bool = True
    requeue_exit_code: int = Field(default=REQUEUE_EXIT_CODE, ge=1, le=255)


# Built-in models and their own typed options (torch-free): validated when the run config is
# read, with the model's one set of defaults. A model registered at run time by a plug-in
# keeps its options as given, checked by its factory (an unknown name fails at build time,
# listing the registered ones).
_TYPED_OPTIONS: dict[str, type[ComponentConfig]] = {"obs2grid": Obs2GridConfig}


class ModelConfig(ComponentConfig):
    """``train.model``: the model's name and its options (the model's own typed config)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "obs2grid"

    @model_validator(mode="after")
    def _typed(self) -> ModelConfig:
        self.typed()
        return self

    def typed(self) -> ComponentConfig | None:
        cls = _TYPED_OPTIONS.get(self.name)
        if cls is None:
            return None
        try:
            return cls.model_validate({"name": self.name, **(self.model_extra or {})})
        except ValidationError as err:
            raise ValueError(format_validation(err, f"model {self.name!r}")) from None

    def options(self) -> dict[str, Any]:
        typed = self.typed()
        if typed is None:
            return dict(self.model_extra or {})
        return typed.model_dump(mode="json", exclude={"name"})


class TrainConfig(ComponentConfig):
    model: ModelConfig = ModelConfig()
    train_start: str = "2000-01-01T00"
    train_end: str = "2000-10-31T18"
    val_start: str = "2000-11-01T00"
    val_end: str = "2000-11-15T18"
    steps: int = count(1200, le=STEPS_MAX)
    # Wall-clock budget of the run in seconds (this process's time; a resumed run starts the
    # clock again). When set, training stops at the budget or at ``steps``, whichever comes
    # first, and the learning-rate and rollout schedules follow elapsed time (their length is
    # the budget): the way to fit a run to a deadline, or to compare models at equal training
    # time. The number of steps then depends on the machine: runs are not bit-reproducible.
    time_budget_s: float | None = Field(default=None, gt=0)
    batch_size: int = count(8, le=BATCH_MAX)  # micro-batch: samples per process per pass
    grad_accum: int = count(1, le=BATCH_MAX)  # micro-batches per optimizer step
    # Optional statement of batch_size x grad_accum x world size, checked when given.
    global_batch: int | None = count(None, le=BATCH_MAX * WORKERS_MAX)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    warmup_steps: int = count(50, ge=0, le=STEPS_MAX)
    grad_clip: float = Field(default=1.0, gt=0)
    history: int = count(2, le=10_000)  # observation windows
    rollout: int = count(4, le=10_000)  # model steps per sample
    # The rollout length grows from 1 to ``rollout`` over this fraction of training: short
    # rollouts first teach the one-step tendency, long ones then teach stability.
    rollout_ramp: float = Field(default=0.6, ge=0, le=1)
    # Per-channel weights of the loss (channels not named weigh 1; normalised to mean 1), e.g.
    # more weight on the surface variables the products sell than on z500.
    loss_weights: dict[str, Annotated[float, Field(ge=0, le=1e3)]] = Field(default_factory=dict)
    # Minimum fraction of the training period's windows holding any observation: below it
    # the run stops before the first step (train.guard.TooFewObservationsError).
    min_obs_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    prefetch_depth: int = count(4, le=1_024)
    # "memory": the shards read once into host memory, batches gathered there (small data);
    # "stream": batches read from the shards per step by the multi-level pipeline
    # (stratocast.loader.pipeline: reader threads, bounded buffer pool, fused normalisation),
    # for data larger than memory. Both deliver bit-identical batches.
    loader: Literal["memory", "stream"] = "memory"
    loader_readers: int = count(2, le=WORKERS_MAX)
    threads: int = count(0, ge=0, le=WORKERS_MAX)  # 0: leave torch's default
    # bf16 compute with fp32 master weights (autocast); the optimizer always steps fp32.
    # On CPUs with AVX512-BF16/AMX and on GPUs it is ~1.5-2x faster than fp32.
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0
    log_every: int = count(50, le=STEPS_MAX)
    val_every: int = count(0, ge=0, le=STEPS_MAX)  # validation RMSE every N steps; 0: at the end
    tensorboard: bool = True
    parallel: ParallelConfig = ParallelConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @model_validator(mode="after")
    def _periods(self) -> TrainConfig:
        if np.datetime64(self.train_end) <= np.datetime64(self.train_start):
            raise ValueError(f"train_end {self.train_end} is not after train_start")
        return self

    @model_validator(mode="after")
    def _batch(self) -> TrainConfig:
        if self.global_batch is not None and self.global_batch != self.effective_global_batch:
            p = self.parallel
            raise ValueError(
                f"global_batch {self.global_batch} != batch_size {self.batch_size} x grad_accum "
                f"{self.grad_accum} x world size {p.world_size} ({p.nodes} node(s) x "
                f"{p.procs_per_node} process(es)) = {self.effective_global_batch}"
            )
        return self

    @property
    def effective_global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.parallel.world_size
