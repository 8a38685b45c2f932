"""Numba kernels behind :mod:`stratocast.shards.affine` (imported only when they are used).

``per_channel(src, dst, offset, scale)`` writes ``(src - offset[c]) / scale[c]`` into ``dst``
(``(steps, channel, y, x)``) with *streaming* (non-temporal) stores wherever ``dst`` has
contiguous rows: a batch buffer is far larger than the caches and is read next by the device
copy or the model, not by this core, so writing around the cache saves the read-for-ownership
of every destination line — a third of the memory traffic of a copy. Measured on this VM's
EPYC (2 threads, 4 MB pieces into a cold 256 MB destination): ~17 GB/s with ordinary stores,
~23 GB/s streaming. The vector loop is written in LLVM IR because Numba has no way to mark a
store non-temporal; its arithmetic is the same IEEE subtract-then-divide, lane by lane, as
NumPy's ``(x - mean) / std``, so results stay bit-identical.

``per_channel_inplace(dst, offset, scale)`` is the in-place form (after zstd decoded a chunk
into ``dst``, which is then hot in cache: ordinary stores). It has its own loop because LLVM
cannot vectorise a loop whose source and destination may partially overlap.
"""

from __future__ import annotations

import platform
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
_VECTOR_BYTES = 32  # one AVX register; LLVM splits or narrows it on other targets


def _stream_row_typer(
    typingctx: Any, src_addr: Any, dst_addr: Any, n: Any, offset: Any, scale: Any
) -> Any:  # pragma: no cover - compiled by Numba
    """``dst[i] = (src[i] - offset) / scale`` for i < n; addresses as integers."""
    if not isinstance(offset, types.Float) or offset != scale:
        return None
    sig = types.void(types.intp, types.intp, types.intp, offset, scale)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> None:
        sa, da, count, m, s = args
        fty = context.get_value_type(offset)
        itemsize = context.get_abi_sizeof(fty)
        width = _VECTOR_BYTES // itemsize
        vty = ir.VectorType(fty, width)
        intp = context.get_value_type(types.intp)
        src = builder.inttoptr(sa, fty.as_pointer())
        dst = builder.inttoptr(da, fty.as_pointer())

        def scalar(index: ir.Value) -> None:
            x = builder.load(builder.gep(src, [index]), align=itemsize)
            builder.store(builder.fdiv(builder.fsub(x, m), s), builder.gep(dst, [index]))

        # Elements before dst reaches a vector boundary (streaming stores must be aligned).
        misaligned = builder.and_(da, ir.Constant(intp, _VECTOR_BYTES - 1))
        gap = builder.and_(
            builder.sub(ir.Constant(intp, _VECTOR_BYTES), misaligned),
            ir.Constant(intp, _VECTOR_BYTES - 1),
        )
        head = builder.udiv(gap, ir.Constant(intp, itemsize))
        # An element-misaligned dst (never from NumPy) cannot be vector-aligned: all scalar.
        element_aligned = builder.icmp_unsigned(
            "==", builder.urem(gap, ir.Constant(intp, itemsize)), ir.Constant(intp, 0)
        )
        head = builder.select(element_aligned, head, count)
        head = builder.select(builder.icmp_signed("<", count, head), count, head)
        with cgutils.for_range(builder, head, intp=intp) as loop:
            scalar(loop.index)

        nvec = builder.sdiv(builder.sub(count, head), ir.Constant(intp, width))
        ms = cgutils.get_null_value(vty)
        ss = cgutils.get_null_value(vty)
        for lane in range(width):
            ms = builder.insert_element(ms, m, ir.Constant(ir.IntType(32), lane))
            ss = builder.insert_element(ss, s, ir.Constant(ir.IntType(32), lane))
        nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        with cgutils.for_range(builder, nvec, intp=intp) as loop:
            i = builder.add(head, builder.mul(loop.index, ir.Constant(intp, width)))
            sp = builder.bitcast(builder.gep(src, [i]), vty.as_pointer())
            v = builder.fdiv(builder.fsub(builder.load(sp, align=itemsize), ms), ss)
            dp = builder.bitcast(builder.gep(dst, [i]), vty.as_pointer())
            store = builder.store(v, dp, align=_VECTOR_BYTES)
            store.set_metadata("nontemporal", nontemporal)

        done = builder.add(head, builder.mul(nvec, ir.Constant(intp, width)))
        with cgutils.for_range(builder, builder.sub(count, done), intp=intp) as loop:
            scalar(builder.add(done, loop.index))

    return sig, codegen


def _store_fence_typer(typingctx: Any) -> Any:  # pragma: no cover - compiled by Numba
    """Order the streaming stores before anything after (another thread reads the buffer)."""

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> None:
        if _X86:
            # LLVM lowers a seq_cst fence to ``lock or`` on x86; AMD and Intel document SFENCE
            # (or MFENCE) as what orders weakly-ordered streaming stores.
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence"
            )
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")

    return types.void(), codegen


# Typed as Any: Numba's stubs describe the typing function's signature, not the jitted call's.
_stream_row: Any = intrinsic(_stream_row_typer)
_store_fence: Any = intrinsic(_store_fence_typer)


# error_model="numpy": no ZeroDivisionError check in the loops (it would stop vectorisation;
# a zero scale never gets here, the statistics replace it by 1). cache=True: compiled once per
# machine, not once per process.
@numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def per_channel(src: Any, dst: Any, offset: Any, scale: Any) -> None:  # pragma: no cover
    steps, channels, ny, nx = dst.shape
    size = dst.itemsize
    s0, s1, s2, s3 = src.strides
    d0, d1, d2, d3 = dst.strides
    if s3 != size or d3 != size:  # rows not contiguous: plain loop, ordinary stores
        for t in range(steps):
            for c in range(channels):
                m = offset[c]
                s = scale[c]
                for y in range(ny):
                    for x in range(nx):
                        dst[t, c, y, x] = (src[t, c, y, x] - m) / s
        return
    sa = src.ctypes.data
    da = dst.ctypes.data
    planes = s2 == nx * size and d2 == nx * size  # a whole (y, x) plane is one run
    for t in range(steps):
        for c in range(channels):
            m = offset[c]
            s = scale[c]
            if planes:
                _stream_row(sa + t * s0 + c * s1, da + t * d0 + c * d1, ny * nx, m, s)
            else:
                for y in range(ny):
                    _stream_row(
                        sa + t * s0 + c * s1 + y * s2, da + t * d0 + c * d1 + y * d2, nx, m, s
                    )
    _store_fence()


@numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def per_channel_inplace(dst: Any, offset: Any, scale: Any) -> None:  # pragma: no cover
    steps, channels, ny, nx = dst.shape
    for t in range(steps):
        for c in range(channels):
            m = offset[c]
            s = scale[c]
            for y in range(ny):
                for x in range(nx):
                    dst[t, c, y, x] = (dst[t, c, y, x] - m) / s


# Per-variable statistics on the last axis (observation arrays: (steps, slot, variable)).
# The loop runs over the flattened array against the statistics tiled to _TILE elements (a
# few KB, in L1): unit strides everywhere, so LLVM vectorises it although the variable axis
# is short (an inner loop over 8 variables would not be).
_TILE = 1024


@numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def _tiled(stats: Any, dtype: Any) -> Any:  # pragma: no cover
    nv = stats.shape[0]
    tiled = np.empty(max(1, _TILE // nv) * nv, dtype)
    for j in range(tiled.shape[0]):
        tiled[j] = stats[j % nv]
    return tiled


@numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def last_axis(src: Any, dst: Any, offset: Any, scale: Any) -> None:  # pragma: no cover
    """C-contiguous src, dst (..., V); offset, scale (V,)."""
    mt = _tiled(offset, dst.dtype)
    st = _tiled(scale, dst.dtype)
    period = mt.shape[0]
    n = dst.size
    s = src.reshape(n)
    d = dst.reshape(n)
    for a in range(0, n, period):
        # Slices, so the inner index is a plain range variable: indexing with ``a + j`` makes
        # Numba add negative-index wraparound, which stops vectorisation (measured 3.5 GB/s).
        sa = s[a : a + period]
        da = d[a : a + period]
        for j in range(da.shape[0]):
            da[j] = (sa[j] - mt[j]) / st[j]


@numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def last_axis_inplace(dst: Any, offset: Any, scale: Any) -> None:  # pragma: no cover
    mt = _tiled(offset, dst.dtype)
    st = _tiled(scale, dst.dtype)
    period = mt.shape[0]
    n = dst.size
    d = dst.reshape(n)
    for a in range(0, n, period):
        da = d[a : a + period]
        for j in range(da.shape[0]):
            da[j] = (da[j] - mt[j]) / st[j]


@numba.njit(nogil=True, cache=True, error_model="numpy", boundscheck=False)
def finite_or_zero(values: Any, mask: Any) -> None:  # pragma: no cover
    """mask = 1 where values is finite, else 0, and values = 0 there; C-contiguous, same size."""
    n = values.size
    v = values.reshape(n)
    m = mask.reshape(n)
    for i in range(n):
        x = v[i]
        ok = np.isfinite(x)
        m[i] = 1.0 if ok else 0.0
        v[i] = x if ok else 0.0
