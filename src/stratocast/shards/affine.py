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

import numpy as np

Affine = tuple[np.ndarray, np.ndarray]

# NumPy fallback: L2-sized pieces, so the divide runs on what the subtract just brought into
# cache. 1 MiB: pieces of 256 KiB lost ~10% to per-call cost; 1 MiB to 64 MiB measured alike.
_BLOCK_BYTES = 1024 * 1024
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_Kernels = tuple[Callable[..., None], Callable[..., None]]  # (src -> dst, in place)
_kernel: _Kernels | None = None
_kernel_state = "untried"  # untried | ready | off
_kernel_lock = threading.Lock()  # reader threads may ask first at the same moment


def _load_kernel() -> _Kernels | None:
    """The compiled kernel, or None when disabled or Numba is unavailable (NumPy path then)."""
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
    from stratocast.shards import affine_jit

    kernels = (affine_jit.per_channel, affine_jit.per_channel_inplace)
    _self_check(kernels)
    return kernels


def _self_check(kernels: _Kernels) -> None:
    """Compile both kernels on a small odd-sized block and compare with NumPy bit for bit, so a
    miscompiled or unsupported target falls back here instead of corrupting batches."""
    rng = np.random.default_rng(0)
    src = rng.normal(0.0, 300.0, (2, 3, 5, 37)).astype(np.float32)
    offset = np.array([-1.5, 250.0, 1.0e5], np.float32)
    scale = np.array([0.7, 8.0, 900.0], np.float32)
    want = (src - offset[:, None, None]) / scale[:, None, None]
    dst = np.empty_like(src)
    kernels[0](src, dst, offset, scale)
    kernels[1](src, offset, scale)
    for got in (dst, src):
        if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            raise RuntimeError("kernel result differs from NumPy's (x - mean) / std")


def kernel_enabled() -> bool:
    """Whether the compiled kernel is in use (False: NumPy fallback everywhere)."""
    return _load_kernel() is not None


def _per_channel(dst: np.ndarray, aff: Affine) -> tuple[np.ndarray, np.ndarray] | None:
    """Offset and scale as per-channel vectors when the kernel applies, else None."""
    offset, scale = aff
    if dst.ndim != 4 or dst.dtype not in _KERNEL_DTYPES:
        return None
    if offset.shape != dst.shape[1:] or scale.shape != dst.shape[1:]:
        return None
    # Constant over the spatial axes: broadcast (C, 1, 1) statistics have zero strides there.
    if any(offset.strides[1:]) or any(scale.strides[1:]):
        return None
    if offset.dtype != dst.dtype or scale.dtype != dst.dtype:
        return None
    return np.ascontiguousarray(offset[:, 0, 0]), np.ascontiguousarray(scale[:, 0, 0])


def apply_affine(src: np.ndarray | None, dst: np.ndarray, aff: Affine) -> None:
    """``dst = (src - offset) / scale`` (``src=None``: in place), one pass where possible.

    ``dst`` is ``(steps, *step shape)``; ``aff`` arrays have the step shape (broadcast views
    are fine) and ``dst``'s dtype. Bit-identical to NumPy's ``(x - offset) / scale``.
    """
    vectors = _per_channel(dst, aff)
    kernels = _load_kernel() if vectors is not None else None
    if kernels is not None and vectors is not None:
        if src is None or src is dst:
            kernels[1](dst, *vectors)
            return
        if src.shape == dst.shape:
            kernels[0](src, dst, *vectors)
            return
    _apply_numpy(dst if src is None else src, dst, aff)


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
