"""Observations from anywhere → the grid: a set encoder over sites given at run time.

Each report is a point (lat, lon, elevation) with values; the encoder spreads every report to
the grid cells near it with Gaussian kernels of learnable length scale (one per kernel, as in
Aardvark's set-convolution encoder) and gives, per kernel and observed variable, the
kernel-weighted mean of the reports near each cell and the summed weight (how much data there
is). Nothing about the sites is a weight: the checkpoint holds no station list, and a network
with stations added, removed or moved is used as it is.

Cost is sparse: for a set of sites, the (site, cell) pairs within ``cutoff_km`` are found once
(a latitude band per site, then great-circle distances) and cached; each forward pass is a
sparse (cell, site) matrix product per kernel over those pairs, so it grows with sites ×
neighbours, not sites × grid — except on small problems (``DENSE_MAX``), where one dense
matrix product is faster on a CPU and gives the same result. Length
scales are bounded above by ``cutoff_km / 3`` (the kernel is cut at three length scales), so
learning cannot widen a kernel past the pairs that were found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stratocast.grid.interp import bilinear_weights

EARTH_RADIUS_KM = 6371.0
_KM_PER_DEG = math.pi * EARTH_RADIUS_KM / 180.0
_BLOCK = 256  # sites per distance block: bounds the temporary (block × band) array


# Below this many sites × cells the kernels are evaluated as one dense (cell, site) matrix and
# applied with a matrix product: on a CPU that is faster than any sparse kernel at these sizes
# (measured on the demo grid, 2048 cells × 640 sites: 55 ms against 80 ms for torch.sparse.mm
# and 370 ms for index_add, forward + backward). Above it, sparse (cost ∝ pairs).
DENSE_MAX = 8_000_000


@dataclass(frozen=True)
class SitePairs:
    """The (site, cell) pairs within the cutoff, with their great-circle distances."""

    site: torch.Tensor  # (P,) int64 index into the sites
    cell: torch.Tensor  # (P,) int64 index into the flattened ascending-lat grid
    dist_km: torch.Tensor  # (P,) float32
    n_sites: int
    n_cells: int
    # (G, S) distances for the dense path (``far_km`` beyond the cutoff); None when sparse
    dist_dense: torch.Tensor | None = None

    def to(self, device: torch.device) -> SitePairs:
        return SitePairs(
            self.site.to(device),
            self.cell.to(device),
            self.dist_km.to(device),
            self.n_sites,
            self.n_cells,
            None if self.dist_dense is None else self.dist_dense.to(device),
        )

    @property
    def dense(self) -> bool:
        return self.dist_dense is not None and self.n_sites * self.n_cells <= DENSE_MAX


def site_pairs(
    grid_lat: np.ndarray, grid_lon: np.ndarray, lat: np.ndarray, lon: np.ndarray, cutoff_km: float
) -> SitePairs:
    """Pairs of sites and cells of an ascending-latitude grid closer than ``cutoff_km``."""
    glat = np.asarray(grid_lat, dtype=np.float64)
    glon = np.radians(np.asarray(grid_lon, dtype=np.float64))
    slat = np.asarray(lat, dtype=np.float64)
    slon = np.radians(np.asarray(lon, dtype=np.float64))
    band = cutoff_km / _KM_PER_DEG
    n_lon = glon.size
    sites, cells, dists = [], [], []
    for lo in range(0, slat.size, _BLOCK):
        s_lat, s_lon = slat[lo : lo + _BLOCK], slon[lo : lo + _BLOCK]
        rows = np.nonzero((glat >= s_lat.min() - band) & (glat <= s_lat.max() + band))[0]
        if rows.size == 0:
            continue
        p1 = np.radians(s_lat)[:, None, None]
        p2 = np.radians(glat[rows])[None, :, None]
        dl = glon[None, None, :] - s_lon[:, None, None]
        cos = np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl)
        d = EARTH_RADIUS_KM * np.arccos(np.clip(cos, -1.0, 1.0))  # (block, rows, lon)
        s, r, c = np.nonzero(d < cutoff_km)
        sites.append(s + lo)
        cells.append(rows[r] * n_lon + c)
        dists.append(d[s, r, c])
    n_cells = int(glat.size * n_lon)
    if sites:
        site = torch.from_numpy(np.concatenate(sites).astype(np.int64))
        cell = torch.from_numpy(np.concatenate(cells).astype(np.int64))
        dist = torch.from_numpy(np.concatenate(dists).astype(np.float32))
    else:
        site = cell = torch.zeros(0, dtype=torch.int64)
        dist = torch.zeros(0)
    dense = None
    if slat.size * n_cells <= DENSE_MAX:
        # Beyond the cutoff: a finite distance far enough for every allowed width's weight to
        # underflow to exactly 0 (inf would make the width's gradient 0 · inf = NaN).
        dense = torch.full((n_cells, int(slat.size)), far_km(cutoff_km))
        dense[cell, site] = dist
    return SitePairs(site, cell, dist, int(slat.size), n_cells, dense)


def far_km(cutoff_km: float) -> float:
    """A distance at which exp(-d²/2w²) is exactly 0 in float32 for any w ≤ cutoff / 3."""
    return 7.0 * cutoff_km  # (7 · 3)² / 2 = 220 > 104, float32's underflow exponent


def height_offsets(
    grid_lat: np.ndarray,
    grid_lon: np.ndarray,
    orography: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    elevation: np.ndarray,
) -> np.ndarray:
    """Each site's height above the grid's surface at its position (m); 0 outside the grid.

    Longitudes relative to the grid's west edge: interp compares a point's lon taken mod 360
    with the grid's own, so a box written in -180..180 would find every site outside it."""
    lon0 = float(np.asarray(grid_lon)[0])
    at = bilinear_weights(
        grid_lat,
        (np.asarray(grid_lon) - lon0) % 360.0,
        np.asarray(lat, dtype=np.float64),
        np.asarray(lon, dtype=np.float64) - lon0,
    ).apply(orography)
    # A site beyond a regional box (its kernel may still reach in) has no grid height to be
    # reduced to: spread uncorrected rather than poisoning the grid with NaN.
    return np.nan_to_num(np.asarray(elevation, dtype=np.float64) - at, nan=0.0)


class SetToGrid(nn.Module):
    """Sites (given at run time) → (B, 2·K·V, H, W) features: weighted means and densities."""

    def __init__(
        self, shape: tuple[int, int], widths_km: tuple[float, ...], max_width_km: float
    ) -> None:
        super().__init__()
        if not widths_km or min(widths_km) <= 0 or max(widths_km) >= max_width_km:
            raise ValueError(
                f"kernel widths {widths_km} must be positive and below the cap {max_width_km} km"
            )
        self.shape = shape
        self.max_width_km = float(max_width_km)
        # width = cap · sigmoid(raw): learnable, positive, never past the pairs found
        frac = torch.tensor([w / max_width_km for w in widths_km], dtype=torch.float64)
        self.raw_width = nn.Parameter(torch.log(frac / (1 - frac)).float())

    @property
    def n_kernels(self) -> int:
        return int(self.raw_width.shape[0])

    @property
    def n_features_per_variable(self) -> int:
        return 2 * self.n_kernels

    def widths_km(self) -> torch.Tensor:
        return self.max_width_km * torch.sigmoid(self.raw_width)

    def forward(self, obs: torch.Tensor, mask: torch.Tensor, pairs: SitePairs) -> torch.Tensor:
        """obs, mask: (B, S, V) with S = ``pairs.n_sites``."""
        b, s, v = obs.shape
        if s != pairs.n_sites:
            raise ValueError(f"observations for {s} sites, but {pairs.n_sites} sites are set")
        g = self.shape[0] * self.shape[1]
        k = self.n_kernels
        widths = self.widths_km()
        data = torch.cat([obs * mask, mask], dim=2)  # (B, S, 2V): values and counts together
        if pairs.dense:
            assert pairs.dist_dense is not None
            # fp32 whatever the autocast: three small products, where bf16 buys nothing on a
            # CPU and would round the weights of distant sites to zero
            with torch.autocast(obs.device.type, enabled=False):
                summed = _KernelSum.apply(pairs.dist_dense, widths.float(), data.float())
            summed = summed.to(obs.dtype)
        else:
            summed = self._sparse_sum(pairs, widths, data, g)
        num, den = summed[:, :, :v], summed[:, :, v:]
        mean = num / (den + 1e-3)
        density = torch.log1p(den)
        feats = torch.cat([mean, density], dim=1)  # (B, 2K, V, G)
        return feats.reshape(b, 2 * k * v, *self.shape)

    def _sparse_sum(
        self, pairs: SitePairs, widths: torch.Tensor, data: torch.Tensor, g: int
    ) -> torch.Tensor:
        b, s, x = data.shape
        w = torch.exp(-0.5 * (pairs.dist_km[None, :] / widths[:, None]) ** 2)  # (K, P)
        idx = torch.stack([pairs.cell, pairs.site])
        flat = data.permute(1, 0, 2).reshape(s, b * x).to(w.dtype)
        out = []
        for kk in range(w.shape[0]):
            mat = torch.sparse_coo_tensor(idx, w[kk], (g, s), is_coalesced=False)
            out.append(torch.sparse.mm(mat, flat))  # (G, B·2V)
        stacked = torch.stack(out)  # (K, G, B·2V)
        return stacked.reshape(-1, g, b, x).permute(2, 0, 3, 1).to(data.dtype)


class _KernelSum(torch.autograd.Function):
    """``einsum('kgs,bsx->bkxg', exp(-D²/2w_k²), data)`` as plain matrix products, with a
    hand-written backward.

    Autograd through the (K, G, S) weight tensor costs five elementwise passes over it; here
    the width gradient is one reduction, ``dL/dw_k = Σ_gs (dL/dW ⊙ W ⊙ D²)_kgs / w_k³``, and
    the data gradient (observations are data: usually not needed) only when asked for."""

    @staticmethod
    def forward(
        ctx: Any, dist: torch.Tensor, widths: torch.Tensor, data: torch.Tensor
    ) -> torch.Tensor:
        k, (g, s), (b, _, x) = widths.shape[0], dist.shape, data.shape
        w = torch.exp(-0.5 * (dist[None] / widths[:, None, None]) ** 2).reshape(k * g, s)
        flat = data.permute(1, 0, 2).reshape(s, b * x)
        ctx.save_for_backward(dist, widths, flat, w)
        ctx.dims = (k, g, s, b, x)
        return (w @ flat).reshape(k, g, b, x).permute(2, 0, 3, 1)  # (B, K, X, G)

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[None, torch.Tensor | None, torch.Tensor | None]:
        dist, widths, flat, w = ctx.saved_tensors
        k, g, s, b, x = ctx.dims
        grad_flat = grad.permute(1, 3, 0, 2).reshape(k * g, b * x)
        grad_widths = grad_data = None
        if ctx.needs_input_grad[1]:
            grad_w = grad_flat @ flat.t()  # (K·G, S): dL/dW
            weighted = (grad_w * w).reshape(k, g, s) * dist[None].square()
            grad_widths = weighted.sum(dim=(1, 2)) / widths.pow(3)
        if ctx.needs_input_grad[2]:
            grad_data = (w.t() @ grad_flat).reshape(s, b, x).permute(1, 0, 2)
        return None, grad_widths, grad_data
