"""Load test of ``stratocast serve`` on loopback: a bounded async client (httpx) against a warm
server with N uvicorn workers; point queries, then a point/area mix. Prints rps, p50/p99, errors.

    .venv/bin/python benchmarks/serve.py --products <workdir>/products --product det --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import xarray as xr

from stratocast.serve.config import ENV, ServeConfig, to_env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(url: str, paths: list[str], seconds: float, concurrency: int) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                r = await client.get(random.choice(paths))
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            lat.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    a = np.asarray(lat) * 1000
    return {
        "requests": float(a.size),
        "rps": a.size / wall,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": float(errors),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--products", type=Path, required=True)
    p.add_argument("--product", default="det")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    port = _port()
    env = {**os.environ, ENV: to_env(args.products, ServeConfig())}
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "stratocast.serve.app:app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        col = httpx.get(f"{url}/collections/{args.product}").json()
        base = f"/collections/{args.product}/instances/latest"
        rng = random.Random(0)
        stamp = (args.products / args.product / "LATEST").read_text().strip()
        grid = xr.open_zarr(
            args.products / args.product / stamp / "forecast.zarr", consolidated=False
        )
        la, lo = np.sort(grid["lat"].values), np.sort(grid["lon"].values)
        s0, n0, w0, e0 = float(la[0]), float(la[-1]), float(lo[0]), float(lo[-1])
        dy, dx = (n0 - s0) / 4, (e0 - w0) / 4
        # a bounded set of sites (as clients ask for their wind farms again and again)
        points = [
            f"{base}/position?coords=POINT({rng.uniform(w0, e0):.3f} {rng.uniform(s0, n0):.3f})"
            f"&parameter-name=t2m,u10,v10"
            for _ in range(50)
        ]
        areas = [
            f"{base}/area?bbox={w0 + i * dx},{s0 + i * dy},{w0 + (i + 2) * dx},{s0 + (i + 2) * dy}"
            "&parameter-name=t2m&leads=0"
            for i in range(3)
        ]
        for path in points + areas:  # warm: every worker opened the run
            httpx.get(url + path, timeout=10)
        print(f"product {args.product}, variables {col['variables']}, {args.workers} workers")
        for name, paths in (("points", points), ("mix 80/20", points * 1 + areas * 3)):
            res = asyncio.run(_load(url, paths, args.seconds, args.concurrency))
            print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in res.items()))
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
