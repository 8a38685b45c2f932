"""The U-Net processor passes the model conformance suite on the grids GridNet does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model_shapes import (
    NO_BLOCKS,
    SMALL,
    global_32x64,
    make_geometry,
    obs2grid,
    regional_33x49,
)

from stratocast.models.base import Geometry
from stratocast.models.obs2grid.unet import UNet
from stratocast.testing.models import Factory, ModelTests

UNET = {**SMALL, "processor": "unet", "blocks": 3}
UNET_NO_BLOCKS = {**NO_BLOCKS, "processor": "unet"}


class TestUNetRegional33x49(ModelTests):
    @pytest.fixture
    def geometry(self) -> Geometry:
        return regional_33x49()

    @pytest.fixture
    def model_factory(self) -> Factory:
        return obs2grid(UNET)

    @pytest.fixture
    def padding_factory(self) -> Factory:
        return obs2grid(UNET_NO_BLOCKS)


class TestUNetGlobal32x64(TestUNetRegional33x49):
    @pytest.fixture
    def geometry(self) -> Geometry:
        return global_32x64()


class TestUNetGlobal33x49Odd(TestUNetRegional33x49):
    @pytest.fixture
    def geometry(self) -> Geometry:
        return make_geometry(np.linspace(-80.0, 80.0, 33), np.arange(49) * 360.0 / 49)


@pytest.mark.parametrize("shape", [(32, 64), (33, 49), (7, 9), (1, 5)])
def test_unet_keeps_the_grid_and_starts_as_no_change(shape: tuple[int, int]) -> None:
    net = UNet(3, 2, hidden=4, blocks=3, periodic_lon=True)
    x = torch.randn(2, 3, *shape)
    out = net(x)
    assert tuple(out.shape) == (2, 2, *shape)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised head


def test_unet_sees_farther_than_gridnet() -> None:
    """One cell's change reaches more of the grid through the U-Net's coarse levels."""
    from stratocast.models.obs2grid.blocks import GridNet

    torch.manual_seed(0)
    reach = {}
    for name, net in (("gridnet", GridNet(1, 1, 8, 3)), ("unet", UNet(1, 1, 8, 3))):
        torch.nn.init.normal_(net.out.weight)  # type: ignore[arg-type]
        x = torch.zeros(1, 1, 32, 64)
        y = x.clone()
        y[0, 0, 16, 32] = 1.0
        with torch.no_grad():
            diff = (net(y) - net(x)).abs()[0, 0]
        reach[name] = int((diff > 0).sum())
    assert reach["unet"] > reach["gridnet"], reach
