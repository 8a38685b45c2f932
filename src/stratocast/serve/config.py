"""What one ``stratocast serve`` process serves and how: the publication root, the token, the
limits. Passed to :func:`stratocast.serve.app.create_app`; worker processes rebuild it from the
environment (:func:`from_env`), since uvicorn starts them from an import string."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stratocast.errors import StratocastError

ENV = "STRATOCAST_SERVE"  # JSON of the config, for worker processes


class ServeError(StratocastError, ValueError):
    """A serve configuration that cannot work (no token source, bad limit)."""


@dataclass(frozen=True)
class ServeConfig:
    #: environment variable holding the bearer token of the write endpoints
    token_env: str = "STRATOCAST_TOKEN"
    #: file holding the token (wins over the environment when set)
    token_file: str | None = None
    #: the read endpoints need the token too
    protect_reads: bool = False
    #: largest number of grid cells (x leads x variables) one area/cube answer may hold
    max_cells: int = 200_000
    #: opened runs and query answers kept in memory
    cache_runs: int = 8
    cache_queries: int = 512
    #: for the write endpoints (trigger a cycle): the run's config file, if any
    run_config: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_cells < 1 or self.cache_runs < 1 or self.cache_queries < 1:
            raise ServeError("serve: max_cells, cache_runs and cache_queries must be >= 1")

    def token(self) -> str | None:
        """The token, read when asked (a rotated file is picked up); never logged."""
        if self.token_file:
            try:
                text = Path(self.token_file).read_text().strip()
            except OSError as err:
                raise ServeError(
                    f"serve: cannot read the token file {self.token_file}: {err}"
                ) from err
            return text or None
        return os.environ.get(self.token_env) or None


def to_env(root: Path, cfg: ServeConfig) -> str:
    return json.dumps({"root": str(root), **asdict(cfg)})


def from_env() -> tuple[Path, ServeConfig]:
    raw = json.loads(os.environ[ENV])
    root = Path(raw.pop("root"))
    return root, ServeConfig(**raw)
