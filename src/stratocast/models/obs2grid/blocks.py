"""Convolutions on a lat-lon grid: periodic in longitude on a global grid, reflected at the
edges of a regional box, edge-padded (replicated) at the first and last latitude row.

Why reflection for a box: it keeps the field's values and its smoothness at the edge (a mirror,
like a zero-gradient boundary), where zeros would put a ring of climatology next to static
channels that are not zero (orography, sin lat), and replication would make a flat strip that
pulls every kernel at the edge towards the edge value. A box narrower than the padding (one
column) cannot be reflected and is replicated instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def pad_lon(x: torch.Tensor, west: int, east: int, periodic: bool) -> torch.Tensor:
    if west == 0 and east == 0:
        return x
    if periodic:
        return F.pad(x, (west, east, 0, 0), mode="circular")  # longitude wraps around the globe
    mode = "reflect" if x.shape[-1] > max(west, east) else "replicate"
    return F.pad(x, (west, east, 0, 0), mode=mode)


def pad_lat(x: torch.Tensor, first: int, last: int) -> torch.Tensor:
    if first == 0 and last == 0:
        return x
    return F.pad(x, (0, 0, first, last), mode="replicate")


class SphereConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, periodic_lon: bool = True) -> None:
        super().__init__()
        self.pad = kernel // 2
        self.periodic_lon = periodic_lon
        self.conv = nn.Conv2d(c_in, c_out, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        x = pad_lat(pad_lon(x, p, p, self.periodic_lon), p, p)
        out: torch.Tensor = self.conv(x)
        return out


class ResBlock(nn.Module):
    """The repeated unit: activation checkpointing and FSDP sharding apply per block (the
    training layer finds blocks by their ``activation_checkpointing`` switch)."""

    def __init__(self, c: int, periodic_lon: bool = True) -> None:
        super().__init__()
        self.activation_checkpointing = False
        self.norm = nn.GroupNorm(min(8, c), c)
        self.conv1 = SphereConv(c, c, periodic_lon=periodic_lon)
        self.conv2 = SphereConv(c, c, periodic_lon=periodic_lon)
        nn.init.zeros_(self.conv2.conv.weight)  # starts as identity: stable deep rollouts
        nn.init.zeros_(self.conv2.conv.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation_checkpointing and torch.is_grad_enabled():
            out: torch.Tensor = checkpoint(self._forward, x, use_reentrant=False)
            return out
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.gelu(self.conv1(F.gelu(self.norm(x)))))
        return x + h


class GridNet(nn.Module):
    """Full-resolution stem, residual blocks at half resolution, skip back to full resolution.

    Any H×W: an odd axis is padded by one row/column at its end (with the same rule as the
    convolutions: wrap, reflect or replicate) before the stride-2 step and cropped back after
    the upsampling, so the output is always on the input's grid. Even axes pass untouched.
    """

    FACTOR = 2  # the down/up-sampling stride

    def __init__(
        self, c_in: int, c_out: int, hidden: int, blocks: int, periodic_lon: bool = True
    ) -> None:
        super().__init__()
        self.periodic_lon = periodic_lon
        self.stem = SphereConv(c_in, hidden, periodic_lon=periodic_lon)
        self.down = nn.Conv2d(hidden, hidden, 2, stride=2)
        self.blocks = nn.ModuleList([ResBlock(hidden, periodic_lon) for _ in range(blocks)])
        self.up = nn.ConvTranspose2d(hidden, hidden, 2, stride=2)
        self.head = SphereConv(2 * hidden, hidden, periodic_lon=periodic_lon)
        self.out = nn.Conv2d(hidden, c_out, 1)
        nn.init.zeros_(self.out.weight)  # the first prediction is "no change"
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.gelu(self.stem(x))
        h_in, w_in = s.shape[-2:]
        extra_h, extra_w = -h_in % self.FACTOR, -w_in % self.FACTOR
        h = pad_lat(pad_lon(s, 0, extra_w, self.periodic_lon), 0, extra_h)
        h = self.down(h)
        for blk in self.blocks:
            h = blk(h)
        h = self.up(h)[..., :h_in, :w_in]
        out: torch.Tensor = self.out(F.gelu(self.head(torch.cat([s, h], dim=1))))
        return out
