"""obs2grid's Newtonian relaxation: each step pulls the state towards a learned equilibrium
at a learned rate, so a free rollout's departures cannot grow without bound."""

from __future__ import annotations

import pytest
import torch
from test_model_shapes import SMALL, global_32x64, obs2grid, regional_33x49

from stratocast.models.base import Geometry
from stratocast.testing.models import Factory, ModelTests, inputs, state

RELAX = {**SMALL, "relaxation_days": 10.0}


class TestRelaxationGlobal32x64(ModelTests):
    @pytest.fixture
    def geometry(self) -> Geometry:
        return global_32x64()

    @pytest.fixture
    def model_factory(self) -> Factory:
        return obs2grid(RELAX)

    @pytest.fixture
    def padding_factory(self) -> Factory:
        return obs2grid({**RELAX, "blocks": 0})


def test_an_untrained_model_relaxes_exactly_at_its_rate() -> None:
    """The step network starts as "no change", so the step is the relaxation alone:
    after n steps the departure from equilibrium is (1 - 1/(4 days))^n of the initial one."""
    g = regional_33x49()
    model = obs2grid(RELAX)(g)
    with torch.no_grad():
        model.equilibrium.normal_()
    x = state(g)
    _, _, clock = inputs(g)
    s = x
    with torch.no_grad():
        for _ in range(20):
            s = model.step(s, clock)
    factor = (1.0 - 1.0 / (4 * 10.0)) ** 20
    want = model.equilibrium + factor * (x - model.equilibrium)
    torch.testing.assert_close(s, want, rtol=1e-4, atol=1e-5)


def test_without_the_option_there_is_no_relaxation() -> None:
    g = regional_33x49()
    model = obs2grid(SMALL)(g)
    assert not any("equilibrium" in n for n, _ in model.named_parameters())
    x = state(g)
    _, _, clock = inputs(g)
    with torch.no_grad():
        assert torch.equal(model.step(x, clock), x)  # zero-initialised: exactly no change
