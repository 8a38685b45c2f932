"""Normalisation fused into the shard copy: ``dst = (src - offset) / scale``.

Why compiled kernels: NumPy needs two ufunc calls (subtract, then divide), i.e. two passes over
every byte; even in L2-sized pieces (the divide runs on what the subtract just brought into
cache) the second pass cost ~15-20% of the loader's throughput on uncompressed shards, and
ordinary stores make the CPU read every destination line before overwriting it. The kernels in
:mod:`stratocast.shards.affine_jit` (Numba, ``nogil``, so reader threads run them in parallel)
read ``src`` once and write ``dst`` once with streaming stores, and the arithmetic hides behind
the memory traffic.

They cover the shape the gridded shards have: ``(steps, channel, *spatial)`` with one offset
and scale per channel, float32 or float64. They do the same IEEE operations in the same order
as NumPy's ``(x - mean) / std`` — subtract, round, divide, round; no fast-math, no reciprocal —
so results are bit-identical to the NumPy path (tested), which stays as the fallback for
everything else (per-element statistics, other dtypes, observation arrays with the variable axis
last) and when ``STRATOCAST_JIT=0`` turns the kernels off (to debug, or to measure the gain).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

Affine = tuple[np.ndarray, np.ndarray]

# NumPy fallback: L2-sized pieces, so the divide runs on what the subtract just brought into
# cache. 1 MiB: pieces of 256 KiB lost ~10% to per-call cost; 1 MiB to 64 MiB measured alike.
_BLOCK_BYTES = 1024 * 1024
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _Kernels(NamedTuple):
    channel: Callable[..., None]  # (steps, C, y, x), stats per channel: src -> dst, streaming
    channel_inplace: Callable[..., None]
    last: Callable[..., None]  # (..., V), stats per variable on the last axis
    last_inplace: Callable[..., None]
    finite: Callable[..., None]  # mask of finite values, non-finite values set to 0


_kernel: _Kernels | None = None
_kernel_state = "untried"  # untried | ready | off
_kernel_lock = threading.Lock()  # reader threads may ask first at the same moment


def _load_kernel() -> _Kernels | None:
    """The compiled kernels, or None when disabled or unavailable (NumPy path then)."""
    global _kernel, _kernel_state
    if _kernel_state == "untried":
        with _kernel_lock:
            if _kernel_state == "untried":
                if os.environ.get("STRATOCAST_JIT", "1") != "0":
                    try:
                        _kernel = _compile()
                    except Exception as err:
                        # No Numba, no writable cache, or a platform where the kernels fail
                        # their check: the loader still works, just slower.
                        warnings.warn(
                            f"stratocast: normalisation kernels unavailable ({err!r}); "
                            "using the NumPy path",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                        _kernel = None
                _kernel_state = "ready" if _kernel is not None else "off"
    return _kernel


def _compile() -> _Kernels:
    from stratocast.shards import affine_jit as j

    kernels = _Kernels(
        j.per_channel, j.per_channel_inplace, j.last_axis, j.last_axis_inplace, j.finite_or_zero
    )
    _self_check(kernels)
    return kernels


def _self_check(kernels: _Kernels) -> None:
    """Compile the kernels on small odd-sized blocks and compare with NumPy bit for bit, so a
    miscompiled or unsupported target falls back here instead of corrupting batches."""
    rng = np.random.default_rng(0)
    src = rng.normal(0.0, 300.0, (2, 3, 5, 37)).astype(np.float32)
    src[0, 0, 0, :3] = [np.nan, np.inf, 1.0e38]
    offset = np.array([-1.5, 250.0, 1.0e5], np.float32)
    scale = np.array([0.7, 8.0, 1.0e-3], np.float32)
    checks = []
    with np.errstate(over="ignore"):  # 1e38 / 1e-3 overflows on purpose (masked below)
        want = (src - offset[:, None, None]) / scale[:, None, None]
        want_obs = (src.reshape(-1, 37, 3) - offset) / scale
    dst = np.empty_like(src)
    kernels.channel(src, dst, offset, scale)
    inplace = src.copy()
    kernels.channel_inplace(inplace, offset, scale)
    checks += [(dst, want), (inplace, want)]
    obs = src.reshape(-1, 37, 3)  # variables last
    dst = np.empty_like(obs)
    kernels.last(obs, dst, offset, scale)
    inplace = obs.copy()
    kernels.last_inplace(inplace, offset, scale)
    checks += [(dst, want_obs), (inplace, want_obs)]
    masked = dst.copy()
    mask = np.empty_like(dst)
    kernels.finite(masked, mask)
    ok = np.isfinite(want_obs)
    checks += [(mask, ok.astype(np.float32)), (masked, np.where(ok, want_obs, np.float32(0.0)))]
    for got, expected in checks:
        if not np.array_equal(got.view(np.uint32), expected.view(np.uint32)):
            raise RuntimeError("kernel result differs from NumPy's (x - mean) / std")


def use_kernels(enabled: bool) -> None:
    """Switch the compiled kernels on or off for this process (benchmarks, debugging).

    Switched on, they load again at the next use, with the same check and fallback (and
    ``STRATOCAST_JIT=0`` still wins) as at first use."""
    global _kernel, _kernel_state
    with _kernel_lock:
        _kernel, _kernel_state = None, "untried" if enabled else "off"


def kernel_enabled() -> bool:
    """Whether the compiled kernels are in use (False: NumPy fallback everywhere)."""
    return _load_kernel() is not None


def _stats_layout(dst: np.ndarray, aff: Affine) -> tuple[str, np.ndarray, np.ndarray] | None:
    """("channel" | "last", offset vector, scale vector) when a kernel applies, else None.

    "channel": ``dst`` (steps, C, *spatial) with statistics constant over the spatial axes;
    "last": statistics varying along the last axis only (observations: (steps, slot, var)).
    Broadcast statistics show it in their strides: zero along the axes they do not vary on.
    """
    offset, scale = aff
    step = dst.shape[1:]
    if dst.dtype not in _KERNEL_DTYPES or dst.ndim < 2:
        return None
    if offset.shape != step or scale.shape != step:
        return None
    if offset.dtype != dst.dtype or scale.dtype != dst.dtype:
        return None
    if dst.ndim == 4 and not any(offset.strides[1:]) and not any(scale.strides[1:]):
        return (
            "channel",
            np.ascontiguousarray(offset[:, 0, 0]),
            np.ascontiguousarray(scale[:, 0, 0]),
        )
    if not any(offset.strides[:-1]) and not any(scale.strides[:-1]):
        lead = (0,) * (len(step) - 1)
        return "last", np.ascontiguousarray(offset[lead]), np.ascontiguousarray(scale[lead])
    return None


def apply_affine(src: np.ndarray | None, dst: np.ndarray, aff: Affine) -> None:
    """``dst = (src - offset) / scale`` (``src=None``: in place), one pass where possible.

    ``dst`` is ``(steps, *step shape)``; ``aff`` arrays have the step shape (broadcast views
    are fine) and ``dst``'s dtype. Bit-identical to NumPy's ``(x - offset) / scale``.
    """
    layout = _stats_layout(dst, aff)
    kernels = _load_kernel() if layout is not None else None
    if kernels is not None and layout is not None:
        kind, offset, scale = layout
        inplace = src is None or src is dst
        if kind == "channel":
            if inplace:
                kernels.channel_inplace(dst, offset, scale)
                return
            if src is not None and src.shape == dst.shape:
                kernels.channel(src, dst, offset, scale)
                return
        elif dst.flags.c_contiguous:  # "last" runs over the flattened array
            if inplace:
                kernels.last_inplace(dst, offset, scale)
                return
            if src is not None and src.shape == dst.shape and src.flags.c_contiguous:
                kernels.last(src, dst, offset, scale)
                return
    _apply_numpy(dst if src is None else src, dst, aff)


def finite_or_zero(values: np.ndarray, mask: np.ndarray) -> None:
    """``mask`` = 1 where ``values`` is finite, else 0; non-finite ``values`` become 0.

    How padded observations reach the model: a missing report (NaN) is a zero input with a
    zero mask. One pass with the kernel; bit-identical to the NumPy path.
    """
    kernels = _load_kernel()
    if (
        kernels is not None
        and values.dtype in _KERNEL_DTYPES
        and mask.shape == values.shape
        and values.flags.c_contiguous
        and mask.flags.c_contiguous
    ):
        kernels.finite(values, mask)
        return
    ok = np.isfinite(values)
    mask[...] = ok
    np.copyto(values, 0, where=~ok)


def _apply_numpy(source: np.ndarray, dst: np.ndarray, aff: Affine) -> None:
    offset, scale = aff
    if dst.ndim == 1:  # scalar steps: nothing to block
        np.subtract(source, offset, out=dst)
        np.divide(dst, scale, out=dst)
        return
    per_row = max(1, int(np.prod(dst.shape[2:], dtype=np.int64)) * dst.itemsize)
    group = max(1, _BLOCK_BYTES // per_row)
    for t in range(dst.shape[0]):
        for a in range(0, dst.shape[1], group):
            d = dst[t, a : a + group]
            np.subtract(source[t, a : a + group], offset[a : a + group], out=d)
            np.divide(d, scale[a : a + group], out=d)
