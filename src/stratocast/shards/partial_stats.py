"""Normalisation statistics from per-shard partial sums, merged at finalise.

The shard build's writers hold each shard in memory while they compress it: that is when its
statistics are cheapest to take. Each writer reduces the part of its shard that falls in the
statistics period to a :class:`Partial` per channel (count, mean and sum of squared deviations
from it, the squared one-step tendencies inside the span, and the span's first and last step
for the tendencies across shard borders) and stores it next to the shard, under
``<array>/partial_stats/<shard>.npz``, with the shard's checksum record. ``finalise`` merges
the partials in shard order (Chan et al.'s pairwise update of mean and M2), so the result does
not depend on how the build was split into parts, and it re-reads only the shards whose
partial is missing or stale (written for another statistics period, or for other bytes than
the shard now holds): a restarted build never re-reads finished parts.

The merged result equals :func:`stratocast.shards.stats.streamed_stats` over the same steps to
float64 rounding (that pass takes ``E[x²] - E[x]²``; the deviations here are the more stable
form of the same quantity).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from stratocast.shards.layout import CHECKSUM_DIR, ArrayManifest, ChannelStats

PARTIAL_DIR = "partial_stats"


@dataclass
class Partial:
    """Statistics of steps ``start..stop-1`` of one shard, one entry per channel."""

    start: int
    stop: int
    n: np.ndarray  # finite values
    mean: np.ndarray
    m2: np.ndarray  # sum of squared deviations from ``mean``
    d2: np.ndarray  # sum of squared finite one-step tendencies inside the span
    dn: np.ndarray
    first: np.ndarray  # (points, channel), as stored: the span's first step
    last: np.ndarray  # and its last, for the tendencies across span borders


def _sum_of_squares(x: np.ndarray) -> float:
    """Sum of ``x**2``, squaring in place (``x`` is a temporary) with NumPy's pairwise sum."""
    np.square(x, out=x)
    return float(x.sum())


def partial(block: np.ndarray, start: int, channel_axis: int) -> Partial:
    """Statistics of ``block`` (steps ``start..``, at least one step), channels on
    ``channel_axis``.

    One channel at a time, squaring in place: the float64 temporaries stay about two of one
    channel's share of the block (the writers run this on two shards at once)."""
    n_ch = block.shape[channel_axis]
    out = {k: np.zeros(n_ch) for k in ("n", "mean", "m2", "d2", "dn")}
    # the span's ends as stored (float32): the border tendencies are taken from them in float64
    first = np.empty((block[0].size // n_ch, n_ch), dtype=block.dtype)
    last = np.empty_like(first)
    for c in range(n_ch):
        values = np.take(block, c, axis=channel_axis).reshape(block.shape[0], -1)
        first[:, c], last[:, c] = values[0], values[-1]
        x = values.astype(np.float64)
        del values
        diff = np.diff(x, axis=0)
        dok = np.isfinite(diff)
        if not dok.all():
            diff[~dok] = 0.0
        out["dn"][c] = float(dok.sum())
        out["d2"][c] = _sum_of_squares(diff)
        del diff, dok
        ok = np.isfinite(x)
        if ok.all():  # the grid always (load_part refuses a non-finite target): no masking
            n = float(x.size)
            mean = float(x.sum()) / n
            x -= mean
        else:
            n = float(ok.sum())
            x[~ok] = 0.0
            mean = float(x.sum()) / max(n, 1.0)
            x -= mean
            x[~ok] = 0.0
        out["n"][c], out["mean"][c] = n, mean
        out["m2"][c] = _sum_of_squares(x)
    return Partial(start, start + block.shape[0], first=first, last=last, **out)


class Merger:
    """The statistics of consecutive spans added in order (``add``), streamed: only the last
    span's final step is kept, whatever the number of shards."""

    def __init__(self) -> None:
        self._n: np.ndarray | None = None
        self._mean = self._m2 = self._d2 = self._dn = np.zeros(0)
        self._last: np.ndarray | None = None
        self._stop = -1

    def add(self, p: Partial) -> None:
        if self._n is None:
            self._n, self._mean, self._m2 = p.n.copy(), p.mean.copy(), p.m2.copy()
            self._d2, self._dn = p.d2.copy(), p.dn.copy()
        else:
            if p.start != self._stop:
                raise ValueError(f"span {p.start}..{p.stop - 1} does not follow {self._stop - 1}")
            assert self._last is not None
            # Chan et al.: the merged mean and M2 of two sets from theirs
            n = self._n
            total = n + p.n
            delta = p.mean - self._mean
            share = np.where(total > 0, p.n / np.maximum(total, 1.0), 0.0)
            self._mean = self._mean + delta * share
            self._m2 = self._m2 + p.m2 + delta * delta * n * share
            self._n = total
            # the tendency across the border, in float64 as inside the spans
            step = p.first.astype(np.float64) - self._last.astype(np.float64)
            ok = np.isfinite(step)
            self._d2 = self._d2 + p.d2 + np.where(ok, step * step, 0.0).sum(axis=0)
            self._dn = self._dn + p.dn + ok.sum(axis=0)
        self._last, self._stop = p.last, p.stop

    def result(self) -> ChannelStats:
        if self._n is None:
            raise ValueError("no span was added")
        n = self._n
        # As streamed_stats: a channel with no finite value gets the identity transform, a
        # constant one std 1 (it would divide by zero when normalising).
        mean = np.where(n > 0, self._mean, 0.0)
        std = np.sqrt(np.maximum(self._m2 / np.maximum(n, 1.0), 0.0))
        diff_std = np.sqrt(self._d2 / np.maximum(self._dn, 1.0))
        std = np.where(std > 0, std, 1.0)
        diff_std = np.where(diff_std > 0, diff_std, 1.0)
        return ChannelStats(mean=mean.tolist(), std=std.tolist(), diff_std=diff_std.tolist())


def _fingerprint(root: Path, spec: ArrayManifest, shard: int) -> int | None:
    """crc32c of the shard's checksum record: which bytes a partial was taken from."""
    rec = root / spec.path / CHECKSUM_DIR / f"{shard}.json"
    try:
        return int(google_crc32c.value(rec.read_bytes()))
    except FileNotFoundError:
        return None


def _path(root: Path, spec: ArrayManifest, shard: int) -> Path:
    return root / spec.path / PARTIAL_DIR / f"{shard}.npz"


def save(root: Path, spec: ArrayManifest, shard: int, p: Partial) -> None:
    """Store ``p`` for ``shard``, after the shard and its checksum record were written."""
    path = _path(root, spec, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fields: dict[str, Any] = {
        k: getattr(p, k) for k in ("n", "mean", "m2", "d2", "dn", "first", "last")
    }
    meta = {"start": p.start, "stop": p.stop, "record": _fingerprint(root, spec, shard)}
    with open(tmp, "wb") as fh:
        np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **fields)
    tmp.replace(path)  # atomic: finalise never sees half a partial


def load(root: Path, spec: ArrayManifest, shard: int, start: int, stop: int) -> Partial | None:
    """The stored partial of ``shard`` if it covers exactly ``start..stop-1`` of the bytes the
    shard holds now; None otherwise (missing, another period, a shard rewritten since)."""
    path = _path(root, spec, shard)
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            fields = {k: z[k] for k in ("n", "mean", "m2", "d2", "dn", "first", "last")}
    except (FileNotFoundError, ValueError, KeyError, OSError):
        return None
    if (meta.get("start"), meta.get("stop")) != (start, stop):
        return None
    if meta.get("record") is None or meta["record"] != _fingerprint(root, spec, shard):
        return None
    return Partial(start, stop, **fields)
