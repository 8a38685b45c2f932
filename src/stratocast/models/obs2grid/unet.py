"""A longitude-periodic U-Net: the multi-scale processor.

Why a U-Net beside GridNet: GridNet sees the grid at one coarse scale (half resolution), so a
synoptic system's advection over a day is a few cells of receptive field per block. The U-Net
halves the grid ``levels`` times, doubling the channels each time (the work per level stays
about equal: cells / 4, channels² × 4), so its deepest blocks see planetary scales while the
skips keep the fine detail. The same padding rules as GridNet (wrap in longitude on a global
grid, reflect on a box, replicate at the latitude edges), the same odd-size handling (pad by one
before a stride, crop after), the same zero-initialised output ("no change" at step 0) and the
same ResBlock, so activation checkpointing and FSDP sharding find its blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stratocast.models.obs2grid.blocks import ResBlock, SphereConv, pad_lat, pad_lon


class _Level(nn.Module):
    def __init__(self, c: int, blocks: int, periodic_lon: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(c, periodic_lon) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x


class UNet(nn.Module):
    FACTOR = 2

    def __init__(
        self,
        c_in: int,
        c_out: int,
        hidden: int,
        blocks: int,
        periodic_lon: bool = True,
        levels: int = 2,
    ) -> None:
        super().__init__()
        self.periodic_lon = periodic_lon
        self.levels = levels
        widths = [hidden * 2**k for k in range(levels + 1)]
        per_level = max(1, blocks // (levels + 1)) if blocks else 0
        self.stem = SphereConv(c_in, hidden, periodic_lon=periodic_lon)
        self.enc = nn.ModuleList([_Level(w, per_level, periodic_lon) for w in widths[:-1]])
        self.down = nn.ModuleList(
            [nn.Conv2d(widths[k], widths[k + 1], 2, stride=2) for k in range(levels)]
        )
        # the bottom gets what is left of the block budget: it is the cheapest level per block
        bottom = max(blocks - per_level * (2 * levels), per_level)
        self.mid = _Level(widths[-1], bottom, periodic_lon)
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(widths[k + 1], widths[k], 2, stride=2) for k in range(levels)]
        )
        self.merge = nn.ModuleList(
            [SphereConv(2 * widths[k], widths[k], periodic_lon=periodic_lon) for k in range(levels)]
        )
        self.dec = nn.ModuleList([_Level(w, per_level, periodic_lon) for w in widths[:-1]])
        self.out = nn.Conv2d(hidden, c_out, 1)
        nn.init.zeros_(self.out.weight)  # the first prediction is "no change"
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    def _pad_even(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return pad_lat(pad_lon(x, 0, -w % self.FACTOR, self.periodic_lon), 0, -h % self.FACTOR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.stem(x))
        skips: list[torch.Tensor] = []
        for k in range(self.levels):
            h = self.enc[k](h)
            skips.append(h)
            h = self.down[k](self._pad_even(h))
        h = self.mid(h)
        for k in reversed(range(self.levels)):
            skip = skips[k]
            h = self.up[k](h)[..., : skip.shape[-2], : skip.shape[-1]]
            h = F.gelu(self.merge[k](torch.cat([skip, h], dim=1)))
            h = self.dec[k](h)
        out: torch.Tensor = self.out(h)
        return out
