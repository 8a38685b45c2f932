"""A whole run composed from the components' own configs (composition lives outside them).

Each stage receives only its own section; the paths between stages are derived from
``workdir`` here, in one place, so stages never guess where another one wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from stratocast.config import ComponentConfig, load_config
from stratocast.infer.config import ForecastConfig
from stratocast.infer.products import OperateConfig, ProductConfig
from stratocast.obs.ingest import IngestConfig
from stratocast.shards.build import ShardsConfig
from stratocast.train.config import TrainConfig
from stratocast.verify.config import VerifyConfig
from stratocast.world.network import NetworkConfig
from stratocast.world.truth import TruthConfig


class WorldConfig(ComponentConfig):
    truth: TruthConfig = TruthConfig()
    network: NetworkConfig = NetworkConfig()


class RunConfig(ComponentConfig):
    workdir: str = "runs/demo"
    cache_dir: str = ".cache/stratocast"
    world: WorldConfig = WorldConfig()
    ingest: IngestConfig
    shards: ShardsConfig = ShardsConfig()
    train: TrainConfig = TrainConfig()
    forecast: ForecastConfig = ForecastConfig()
    verify: VerifyConfig = VerifyConfig()
    # forecast products run by `stratocast cycle` / `stratocast operate`, by name
    products: dict[str, ProductConfig] = Field(default_factory=dict, max_length=64)
    operate: OperateConfig = OperateConfig()

    @field_validator("products")
    @classmethod
    def _names(cls, v: dict[str, ProductConfig]) -> dict[str, ProductConfig]:
        bad = [n for n in v if not _NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"product names must match {_NAME.pattern} (a directory name): {bad}")
        return v


_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class RunPaths:
    workdir: Path
    cache: Path

    @property
    def observations(self) -> Path:
        return self.workdir / "observations"

    @property
    def stations_csv(self) -> Path:
        return self.observations / "stations.csv"

    @property
    def store(self) -> Path:
        return self.workdir / "store"

    @property
    def shards(self) -> Path:
        return self.workdir / "shards"

    @property
    def train(self) -> Path:
        return self.workdir / "train"

    @property
    def checkpoint(self) -> Path:
        return self.train / "model.pt"

    @property
    def forecast(self) -> Path:
        return self.workdir / "forecast" / "deterministic.zarr"

    @property
    def products(self) -> Path:
        """Published product cycles: <products>/<name>/<YYYYMMDDTHHMM>/."""
        return self.workdir / "products"

    @property
    def verify(self) -> Path:
        return self.workdir / "verify"

    @property
    def truth_pointer(self) -> Path:
        """Where the world stage records which cached truth store this run uses."""
        return self.workdir / "truth_path.txt"


def load_run(
    path: Path, workdir: str | None = None, cache_dir: str | None = None
) -> tuple[RunConfig, RunPaths]:
    cfg = load_config(RunConfig, path)
    if workdir is not None:
        cfg = cfg.model_copy(update={"workdir": workdir})
    if cache_dir is not None:
        cfg = cfg.model_copy(update={"cache_dir": cache_dir})
    paths = RunPaths(Path(cfg.workdir), Path(cfg.cache_dir))
    # Relative input globs are relative to the run's workdir (where the world writes).
    sources = [
        s.model_copy(
            update={
                "paths": [p if Path(p).is_absolute() else str(paths.workdir / p) for p in s.paths]
            }
        )
        for s in cfg.ingest.sources
    ]
    update: dict[str, object] = {"sources": sources}
    arrivals = cfg.ingest.arrivals
    if arrivals is not None and not Path(arrivals).is_absolute():  # the world writes it there
        update["arrivals"] = str(paths.workdir / arrivals)
    cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update=update)})
    return cfg, paths
