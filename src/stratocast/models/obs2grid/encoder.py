"""Observation operator, station → grid: Gaussian-kernel spreading of sparse reports.

For each kernel width L the encoder gives, per observed variable, the kernel-weighted mean of
the reports near each grid cell and the summed weight (how much data there is). Several widths
let the network tell a station in the cell from one 1000 km away. Weights are a fixed buffer:
the network is static, so this is one matrix product per batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

EARTH_RADIUS_KM = 6371.0
LAPSE_RATE = 0.0065  # K/m, standard atmosphere


def great_circle_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lon2 - lon1)
    cos = np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl)
    return EARTH_RADIUS_KM * np.arccos(np.clip(cos, -1.0, 1.0))


class StationToGrid(nn.Module):
    weights: torch.Tensor  # (K, H·W, S) buffer

    def __init__(
        self,
        lat: np.ndarray,
        lon: np.ndarray,
        station_lat: np.ndarray,
        station_lon: np.ndarray,
        widths_km: tuple[float, ...],
    ) -> None:
        super().__init__()
        glat, glon = np.meshgrid(lat, lon, indexing="ij")
        d = great_circle_km(
            glat.ravel()[:, None], glon.ravel()[:, None], station_lat[None, :], station_lon[None, :]
        )
        kernels = []
        for width in widths_km:
            w = np.exp(-0.5 * (d / width) ** 2)
            w[d > 3 * width] = 0.0  # compact support: distant stations carry no weight
            kernels.append(w)
        self.shape = (len(lat), len(lon))
        self.register_buffer("weights", torch.tensor(np.stack(kernels), dtype=torch.float32))

    @property
    def n_features_per_variable(self) -> int:
        return 2 * int(self.weights.shape[0])

    def forward(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, S, V) → (B, 2·K·V, H, W): weighted means and weight sums per kernel."""
        b = obs.shape[0]
        w = self.weights
        num = torch.einsum("kgs,bsv->bkvg", w, obs * mask)
        den = torch.einsum("kgs,bsv->bkvg", w, mask)
        mean = num / (den + 1e-3)
        density = torch.log1p(den)
        feats = torch.cat([mean, density], dim=1)  # (B, 2K, V, HW)
        return feats.reshape(b, -1, *self.shape)
