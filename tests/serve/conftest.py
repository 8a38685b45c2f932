"""Real published cycles (a tiny trained model over the tiny fixtures) and a real uvicorn
server on 127.0.0.1 serving them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn

from stratocast.infer.cycle import CycleSources, run_cycle
from stratocast.infer.products import ProductConfig
from stratocast.serve.app import create_app
from stratocast.serve.config import ServeConfig
from stratocast.shards.layout import Manifest

T0 = datetime(2000, 1, 17, 0, tzinfo=UTC)
T1 = datetime(2000, 1, 17, 12, tzinfo=UTC)
TOKEN = "s3cret-token-for-tests"


@dataclass
class Published:
    src: CycleSources
    root: Path
    sites: pd.DataFrame
    det: ProductConfig
    ens: ProductConfig


@pytest.fixture(scope="session")
def published(
    tiny_shards: tuple[Path, Manifest],
    tiny_store_and_model: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Published:
    root = tmp_path_factory.mktemp("serve")
    store, model = tiny_store_and_model
    m = tiny_shards[1]
    sites = pd.DataFrame(
        {
            "site_id": ["a", "b", "c"],
            "lat": [float(m.station_lat[0]), float(m.station_lat[1]), float(m.station_lat[2])],
            "lon": [float(m.station_lon[0]), float(m.station_lon[1]), float(m.station_lon[2])],
            "elevation": [350.0, 12.5, float("nan")],
        }
    )
    sites.to_csv(root / "sites.csv", index=False)
    det = ProductConfig(
        kind="deterministic",
        cycle="0 0,12 * * *",
        cutoff_minutes=60,
        deadline_minutes=120,
        horizon_hours=24,
        outputs=["zarr", "points_csv"],
        sites=str(root / "sites.csv"),
    )
    ens = ProductConfig(
        kind="ensemble",
        cycle="0 0,12 * * *",
        cutoff_minutes=60,
        deadline_minutes=120,
        horizon_hours=12,
        members=4,
    )
    src = CycleSources(store, tiny_shards[0], model, root / "pub")
    assert run_cycle("det", det, src, T0).status == "published"
    assert run_cycle("ens", ens, src, T0).status == "published"
    return Published(src, root / "pub", sites, det, ens)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_config(p: Published) -> Path:
    """A run config whose workdir holds the fixture's store/shards/model (the write
    endpoints run cycles from it)."""
    work = p.root.parent / "run"
    if not work.exists():
        (work / "train").mkdir(parents=True)
        (work / "store").symlink_to(p.src.store)
        (work / "shards").symlink_to(p.src.shards)
        (work / "train" / "model.pt").symlink_to(p.src.checkpoint)
    cfg = p.root.parent / "run.yaml"
    cfg.write_text(
        f"workdir: {work}\n"
        "ingest: {sources: [{name: metar, paths: ['observations/*.txt']}]}\n"
        "products:\n"
        '  det: {kind: deterministic, cycle: "0 0,12 * * *", cutoff_minutes: 60,\n'
        "        deadline_minutes: 120, horizon_hours: 24}\n"
    )
    return cfg


class Server:
    def __init__(self, root: Path, cfg: ServeConfig) -> None:
        self.app = create_app(root, cfg)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the server did not come up")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def server(published: Published, monkeypatch_session: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch_session.setenv("STRATOCAST_TEST_TOKEN", TOKEN)
    cfg = ServeConfig(
        token_env="STRATOCAST_TEST_TOKEN", max_cells=5000, run_config=str(run_config(published))
    )
    with Server(published.root, cfg) as s:
        yield s


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
