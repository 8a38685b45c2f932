"""obs2grid's options: one typed set of defaults, read by ``train.model`` and by the factory.

Free of torch, so validating a run config (every CLI command does it first) stays fast.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stratocast.config import ComponentConfig, count


class Obs2GridConfig(ComponentConfig):
    name: Literal["obs2grid"] = "obs2grid"
    hidden: int = count(32, ge=4, le=65_536)  # channels; 65k is beyond any GPU
    blocks: int = count(4, ge=0, le=1_000)  # 0: the encoder and decoder alone (tests)
    # initial length scales of the set encoder's Gaussian kernels (learnable)
    kernel_widths_km: list[float] = Field(default=[300.0, 900.0], min_length=1, max_length=64)
    # cap on the learned widths (the pair cut-off is 3 x the cap); default 1.5 x the widest
    max_kernel_width_km: float | None = Field(default=None, gt=0)
    # hold the area-weighted global mean msl after each step (global grids with msl only)
    mass_fixer: bool = False
    # the network behind the analysis and the step: "gridnet" (one coarse scale, residual
    # blocks at half resolution) or "unet" (multi-scale, longitude-periodic; see unet.py)
    processor: Literal["gridnet", "unet"] = "gridnet"
    # relax each step towards a learned equilibrium state; the initial e-folding time in days
    # (the rate is learned too). None: no relaxation
    relaxation_days: float | None = Field(default=None, gt=0, le=10_000)
