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
    first: np.ndarray  # (points, channel) float64: the span's first step
    last: np.ndarray  # and its last, for the tendencies across span borders


def _channel_last(block: np.ndarray, channel_axis: int) -> np.ndarray:
    """``(time, points, channel)`` float64."""
    moved = np.moveaxis(block, channel_axis, -1)
    return moved.reshape(block.shape[0], -1, block.shape[channel_axis]).astype(np.float64)


def partial(block: np.ndarray, start: int, channel_axis: int) -> Partial:
    """Statistics of ``block`` (steps ``start..``, at least one step), channels on
    ``channel_axis``."""
    x = _channel_last(block, channel_axis)
    ok = np.isfinite(x)
    if ok.all():  # the grid always (load_part refuses a non-finite target): no masking
        n = np.full(x.shape[2], float(x.shape[0] * x.shape[1]))
        mean = x.sum(axis=(0, 1)) / n
        dev = x - mean
        m2 = (dev * dev).sum(axis=(0, 1))
        diff = np.diff(x, axis=0)
        d2 = (diff * diff).sum(axis=(0, 1))
        dn = np.full(x.shape[2], float(diff.shape[0] * diff.shape[1]))
    else:
        n = ok.sum(axis=(0, 1)).astype(np.float64)
        mean = np.where(ok, x, 0.0).sum(axis=(0, 1)) / np.maximum(n, 1.0)
        dev = np.where(ok, x - mean, 0.0)
        m2 = (dev * dev).sum(axis=(0, 1))
        diff = np.diff(x, axis=0)
        dok = np.isfinite(diff)
        d2 = np.where(dok, diff * diff, 0.0).sum(axis=(0, 1))
        dn = dok.sum(axis=(0, 1)).astype(np.float64)
    return Partial(start, start + x.shape[0], n, mean, m2, d2, dn, x[0].copy(), x[-1].copy())


def merge(parts: list[Partial]) -> ChannelStats:
    """The statistics of consecutive spans, in order (``parts[k].stop == parts[k+1].start``)."""
    first = parts[0]
    n, mean, m2 = first.n.copy(), first.mean.copy(), first.m2.copy()
    d2, dn = first.d2.copy(), first.dn.copy()
    prev = first
    for p in parts[1:]:
        # Chan et al.: the merged mean and M2 of two sets from theirs
        total = n + p.n
        delta = p.mean - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, p.n / np.maximum(total, 1.0), 0.0)
        mean = mean + delta * share
        m2 = m2 + p.m2 + delta * delta * n * share
        n = total
        step = p.first - prev.last  # the tendency across the border
        ok = np.isfinite(step)
        d2 = d2 + p.d2 + np.where(ok, step * step, 0.0).sum(axis=0)
        dn = dn + p.dn + ok.sum(axis=0)
        prev = p
    # As streamed_stats: a channel with no finite value gets the identity transform, a
    # constant one std 1 (it would divide by zero when normalising).
    mean = np.where(n > 0, mean, 0.0)
    std = np.sqrt(np.maximum(m2 / np.maximum(n, 1.0), 0.0))
    diff_std = np.sqrt(d2 / np.maximum(dn, 1.0))
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
