"""A :class:`~stratocast.loader.pipeline.BlockReader` over zarr-python (Zarr v3, sharded or not).

The generic reference reader: the loader runs on it until the shard reader replaces it, and it
is baseline (b) of ``benchmarks/loader.py``. zarr-python decodes straight into the caller's
buffer (``out=``), so the pool's memory bound holds; zarr's own decode threads do the work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from zarr.core.buffer import cpu


class ZarrBlockReader:
    def __init__(self, store: str | Path, path: str | None = None) -> None:
        self.where = f"{store}" + (f"/{path}" if path else "")
        self._array = zarr.open_array(str(store), path=path or "", mode="r")
        self.shape: tuple[int, ...] = tuple(int(n) for n in self._array.shape)
        self.dtype: np.dtype = np.dtype(self._array.dtype)
        self.nbytes_per_step = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def read_block(self, t0: int, t1: int, out: np.ndarray) -> int:
        """Fill ``out`` with steps [t0, t1); returns the decoded bytes (zarr hides stored sizes)."""
        if not 0 <= t0 < t1 <= self.shape[0]:
            raise IndexError(f"{self.where}: steps [{t0}, {t1}) outside [0, {self.shape[0]})")
        want = (t1 - t0, *self.shape[1:])
        if out.shape != want or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(
                f"{self.where}: out must be C-contiguous {self.dtype} {want}, got "
                f"{out.dtype} {out.shape} (contiguous={out.flags.c_contiguous})"
            )
        self._array.get_basic_selection((slice(t0, t1),), out=cpu.NDBuffer.from_numpy_array(out))
        return (t1 - t0) * self.nbytes_per_step

    def close(self) -> None:
        """Nothing to release: zarr holds no open file between reads."""
