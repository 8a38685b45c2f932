"""The processors obs2grid can run its analysis and step networks with, by name.

A processor maps (B, c_in, H, W) → (B, c_out, H, W) on any grid size, starts as "no change"
(zero output) and is built from (c_in, c_out, hidden, blocks, periodic_lon). Lazy imports:
naming one processor does not import the others.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Processor = Callable[[int, int, int, int, bool], nn.Module]


def _gridnet(c_in: int, c_out: int, hidden: int, blocks: int, periodic: bool) -> nn.Module:
    from stratocast.models.obs2grid.blocks import GridNet

    return GridNet(c_in, c_out, hidden, blocks, periodic)


def _unet(c_in: int, c_out: int, hidden: int, blocks: int, periodic: bool) -> nn.Module:
    from stratocast.models.obs2grid.unet import UNet

    return UNet(c_in, c_out, hidden, blocks, periodic)


PROCESSORS: dict[str, Processor] = {"gridnet": _gridnet, "unet": _unet}


def build_processor(
    name: str, c_in: int, c_out: int, hidden: int, blocks: int, periodic: bool
) -> nn.Module:
    return PROCESSORS[name](c_in, c_out, hidden, blocks, periodic)
