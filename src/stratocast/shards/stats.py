"""Normalisation statistics in one streamed pass (float64 sums, NaN-aware).

Sums are accumulated chunk by chunk in a fixed order, so the result is reproducible bit for
bit whatever the part layout of the build was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stratocast.shards.layout import ChannelStats


def streamed_stats(array: Any, lo: int, hi: int, channel_axis: int, chunk: int) -> ChannelStats:
    n_ch = array.shape[channel_axis]
    s1 = np.zeros(n_ch)
    s2 = np.zeros(n_ch)
    n = np.zeros(n_ch)
    d2 = np.zeros(n_ch)
    dn = np.zeros(n_ch)
    prev_last: np.ndarray | None = None
    for a in range(lo, hi, chunk):
        block = np.asarray(array[a : min(a + chunk, hi)], dtype=np.float64)
        moved = np.moveaxis(block, channel_axis, -1).reshape(block.shape[0], -1, n_ch)
        ok = np.isfinite(moved)
        s1 += np.where(ok, moved, 0.0).sum(axis=(0, 1))
        s2 += np.where(ok, moved**2, 0.0).sum(axis=(0, 1))
        n += ok.sum(axis=(0, 1))
        # Tendencies across chunk borders too, so chunking does not change the result.
        seq = moved if prev_last is None else np.concatenate([prev_last[None], moved])
        diff = np.diff(seq, axis=0)
        dok = np.isfinite(diff)
        d2 += np.where(dok, diff**2, 0.0).sum(axis=(0, 1))
        dn += dok.sum(axis=(0, 1))
        prev_last = moved[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        # A channel with no finite value at all (an observation variable nobody reported)
        # gets the identity transform rather than NaNs that would poison every batch.
        mean = np.where(n > 0, s1 / np.maximum(n, 1), 0.0)
        std = np.sqrt(np.maximum(s2 / np.maximum(n, 1) - mean**2, 0.0))
        diff_std = np.sqrt(d2 / np.maximum(dn, 1))
    # A constant channel would divide by zero when normalising; 1 keeps it as is.
    std = np.where(std > 0, std, 1.0)
    diff_std = np.where(diff_std > 0, diff_std, 1.0)
    return ChannelStats(mean=mean.tolist(), std=std.tolist(), diff_std=diff_std.tolist())
