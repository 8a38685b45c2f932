"""Padded observation batches: do sparse observations load as fast as dense fields?

    python benchmarks/loader_obs.py [--steps 2000] [--slots 16384] [--rounds 5]
        [--workdir runs/bench-loader-obs]

One synthetic observation array ``obs(time, slot, variable)`` as the shard builder writes it
(fixed capacity, NaN = no report, 70% missing, uncompressed layout-v2 shards of 16 steps,
per-variable statistics on the last axis), read by
:class:`~stratocast.loader.pipeline.PipelineLoader` exactly as training reads it: windows of
4 steps, batch 16, normalised, with the mask of reported values (``obs_mask``) and missing
values set to 0. In interleaved rounds (median quoted): the memcpy ceiling (2 threads, as in
``benchmarks/loader.py``), the loader with the NumPy path (``use_kernels(False)``: the
previous implementation, and what runs where Numba is unavailable), and with the compiled
kernels. GB/s counts observation bytes delivered (the mask is extra); the first batch of both
paths is compared bit for bit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from loader import FixedBatches, memcpy_rate  # sibling benchmark (its dir is on sys.path)
from stratocast.loader.pipeline import FieldSpec, PipelineLoader
from stratocast.shards import affine
from stratocast.shards.reader import ShardArrayReader
from stratocast.shards.writer import create_array, record_checksums, write_block

GB = 1e9
N_VAR = 8
WINDOW = 4
BATCH = 16


def ensure_store(root: Path, steps: int, slots: int) -> Path:
    marker = root / "bench.json"
    want = {"steps": steps, "slots": slots, "vars": N_VAR}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return root
    print(f"writing {root} ({steps * slots * N_VAR * 4 / GB:.2f} GB) ...", flush=True)
    create_array(root, "obs", (steps, slots, N_VAR), "float32", 1, 16, "none")
    rng = np.random.default_rng(0)
    for t0 in range(0, steps, 16):
        x = rng.normal(280.0, 10.0, (min(16, steps - t0), slots, N_VAR)).astype(np.float32)
        x[rng.random(x.shape) < 0.7] = np.nan
        write_block(root, "obs", t0, x)
    record_checksums(root, "obs")
    marker.write_text(json.dumps(want))
    return root


def epoch_rate(loader: PipelineLoader) -> tuple[float, np.ndarray]:
    loader.load_state_dict({"epoch": 0, "position": 0})
    nbytes, first = 0, np.empty(0)
    t0 = time.perf_counter()
    for k, batch in enumerate(loader):
        x = batch["obs"]
        nbytes += x.element_size() * x.nelement()
        if k == 0:
            first = np.concatenate([x.numpy().ravel(), batch["obs_mask"].numpy().ravel()])
    return nbytes / (time.perf_counter() - t0), first


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--slots", type=int, default=16384)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=Path("runs/bench-loader-obs"))
    args = p.parse_args(argv)
    root = ensure_store(args.workdir / "store", args.steps, args.slots)
    mean = np.linspace(270.0, 290.0, N_VAR).astype(np.float32)
    std = np.linspace(5.0, 9.0, N_VAR).astype(np.float32)
    order = np.random.default_rng(1).permutation(args.steps - WINDOW + 1) + WINDOW - 1
    batches = [order[i : i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
    reader = ShardArrayReader(root, "obs")
    spec = FieldSpec(reader, (-WINDOW + 1, 1), mean, std, "obs_mask")
    loader = PipelineLoader(FixedBatches(batches), {"obs": spec}, depth=4, readers=2)
    src = np.ones(int(512e6) // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    rates: dict[str, list[float]] = {"memcpy_2t": [], "numpy_path": [], "kernels": []}
    firsts: dict[str, np.ndarray] = {}
    for flag in (False, True):  # warm-up epoch: maps every shard, fills every buffer
        affine.use_kernels(flag)
        epoch_rate(loader)
    for r in range(args.rounds):
        rates["memcpy_2t"].append(memcpy_rate(src, dst, 2))
        for key, flag in (("numpy_path", False), ("kernels", True)):
            affine.use_kernels(flag)
            rate, firsts[key] = epoch_rate(loader)
            rates[key].append(rate)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    loader.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    same = bool(
        np.array_equal(firsts["numpy_path"].view(np.uint32), firsts["kernels"].view(np.uint32))
    )
    print(
        f"\nobs store: {args.steps} steps × {args.slots} slots × {N_VAR} variables float32, "
        f"70% missing; window {WINDOW}, batch {BATCH}; median of {args.rounds} rounds"
    )
    for k, v in med.items():
        print(
            f"  {k:<12} {v / GB:7.2f} GB/s   rounds: "
            + ", ".join(f"{x / GB:.2f}" for x in rates[k])
        )
    print(
        f"  kernels / NumPy path: {med['kernels'] / med['numpy_path']:.2f}×; "
        f"kernels / memcpy: {med['kernels'] / med['memcpy_2t']:.2f}×; "
        f"first batch identical on both paths: {same}"
    )
    out = args.workdir / "loader_obs.json"
    out.write_text(
        json.dumps(
            {
                "median_gb_per_s": {k: v / GB for k, v in med.items()},
                "rounds_gb_per_s": {k: [x / GB for x in v] for k, v in rates.items()},
                "identical_first_batch": same,
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=1,
        )
    )
    print(f"results: {out}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
