"""Conformance suite every registered forecast model must pass, on any grid.

Use it by subclassing in a test module and providing two fixtures::

    class TestObs2GridRegional(ModelTests):
        @pytest.fixture
        def geometry(self): return Geometry(lat=..., lon=..., ...)
        @pytest.fixture
        def model_factory(self): return lambda g: build_model("obs2grid", g, {"hidden": 8})

The checks, all on the fixture's grid: ``analyse`` and ``step`` return (B, C, H, W) float32
on the input's grid; outputs are finite on finite inputs; an all-masked window (obs_mask
zeros) gives no NaN and does not depend on the masked values (NaN included); one backward
pass reaches every parameter with a finite, non-zero gradient; longitude edges follow the
grid (a regional box's west column does not see its east column, a global grid's does,
through the wrap); a grid with latitude written the other way round gives the same fields
flipped; a field off the model's grid is refused with a project error; the observation sites
are run-time input (``set_observation_sites``: another network, smaller or larger, changes no
parameter, and reordering the sites with their reports changes nothing).

Models start from zero-initialised output layers ("no change" at first), which would hide
wiring faults (every gradient but the last layer's is zero, every step is the identity), so
the checks run on a model whose parameters were all nudged by seeded noise: see
:func:`perturbed`.

``padding_factory`` (default: ``model_factory``) builds the model for the longitude-edge
check. A model with a domain-wide statistic (GroupNorm over H×W, attention) couples every cell
by design; such a model passes a configuration without it (e.g. zero residual blocks), so the
check is about the padding alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from stratocast.errors import StratocastError
from stratocast.models.base import Geometry

Factory = Callable[[Geometry], torch.nn.Module]
BATCH = 2
# Cells a regional edge check needs between west and east so a small model's receptive field
# cannot reach across; below it the check is skipped, saying why.
MIN_EDGE_WIDTH = 24


def build(factory: Factory, geometry: Geometry, seed: int = 0) -> Any:
    """The factory's model under a fixed seed, perturbed; typed Any: a ForecastModel module."""
    torch.manual_seed(seed)
    model = factory(geometry)
    perturbed(model, seed)
    return model


def perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every parameter (a stand-in for a trained model)."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.add_(scale * noise.to(p.device))
    return model


def inputs(
    geometry: Geometry, seed: int = 0, masked_fraction: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised observations, their mask and the clock for one batch."""
    gen = torch.Generator().manual_seed(seed)
    s, v = len(geometry.station_lat), len(geometry.obs_variables)
    obs = torch.randn(BATCH, s, v, generator=gen)
    mask = (torch.rand(BATCH, s, v, generator=gen) >= masked_fraction).float()
    obs = obs * mask  # the loader fills masked slots with zeros
    clock = torch.tensor([[6.0, 100.0], [18.0, 280.0]])[:BATCH]
    return obs, mask, clock


def state(geometry: Geometry, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed + 7)
    h, w = len(geometry.lat), len(geometry.lon)
    return torch.randn(BATCH, len(geometry.channels), h, w, generator=gen)


def flipped_lat(geometry: Geometry) -> Geometry:
    """The same grid with latitude written the other way round."""
    return dataclasses.replace(
        geometry,
        lat=np.asarray(geometry.lat)[::-1].copy(),
        orography=np.asarray(geometry.orography)[::-1].copy(),
    )


class ModelTests:
    """Mixin of pytest tests; subclasses provide ``geometry`` and ``model_factory``."""

    @pytest.fixture
    def padding_factory(self, model_factory: Factory) -> Factory:
        return model_factory

    @pytest.fixture
    def model(self, model_factory: Factory, geometry: Geometry) -> Any:
        return build(model_factory, geometry)

    def _shape(self, geometry: Geometry) -> tuple[int, int, int, int]:
        return (BATCH, len(geometry.channels), len(geometry.lat), len(geometry.lon))

    def test_output_shapes_and_dtypes(self, model: Any, geometry: Geometry) -> None:
        obs, mask, clock = inputs(geometry)
        with torch.no_grad():
            cold = model.analyse(obs, mask, None, clock)
            warm = model.analyse(obs, mask, state(geometry), clock)
            nxt = model.step(warm, clock)
        for name, out in (("analyse(None)", cold), ("analyse(bg)", warm), ("step", nxt)):
            assert tuple(out.shape) == self._shape(geometry), (name, tuple(out.shape))
            assert out.dtype == torch.float32, (name, out.dtype)

    def test_finite_outputs(self, model: Any, geometry: Geometry) -> None:
        obs, mask, clock = inputs(geometry)
        with torch.no_grad():
            a = model.analyse(obs, mask, state(geometry), clock)
            s = model.step(model.step(a, clock), clock)
        assert torch.isfinite(a).all() and torch.isfinite(s).all()

    def test_all_masked_observations(self, model: Any, geometry: Geometry) -> None:
        obs, _, clock = inputs(geometry)
        none = torch.zeros_like(obs)
        bg = state(geometry)
        with torch.no_grad():
            zeros = model.analyse(torch.zeros_like(obs), none, bg, clock)
            junk = model.analyse(obs * 1e3, none, bg, clock)  # values under a zero mask
            nans = model.analyse(torch.full_like(obs, float("nan")), none, bg, clock)
            cold = model.analyse(torch.zeros_like(obs), none, None, clock)
        assert torch.isfinite(zeros).all() and torch.isfinite(cold).all()
        assert torch.equal(zeros, junk), "masked observation values leak into the analysis"
        assert torch.equal(zeros, nans), "NaN under a zero mask leaks into the analysis"

    def test_gradients_reach_every_parameter(self, model: Any, geometry: Geometry) -> None:
        obs, mask, clock = inputs(geometry)
        a = model.analyse(obs, mask, None, clock)
        b = model.analyse(obs, mask, a, clock)  # both background paths (climatology, forecast)
        loss = (model.step(b, clock) ** 2).mean() + (a**2).mean()
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, f"{name}: no gradient (not in the graph)"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
            assert p.grad.abs().max() > 0, f"{name}: zero gradient"

    def test_longitude_edges(self, padding_factory: Factory, geometry: Geometry) -> None:
        """Perturb the east column; the west column sees it only through a periodic wrap."""
        if len(geometry.lon) < MIN_EDGE_WIDTH:
            pytest.skip(f"W={len(geometry.lon)} < {MIN_EDGE_WIDTH}: receptive field spans it")
        model = build(padding_factory, geometry)
        x = state(geometry)
        y = x.clone()
        y[..., -1] += 1.0
        _, _, clock = inputs(geometry)
        with torch.no_grad():
            west_x = model.step(x, clock)[..., 0]
            west_y = model.step(y, clock)[..., 0]
        if geometry.lon_periodic:
            assert not torch.allclose(west_x, west_y), "global grid: no wrap in longitude"
        else:
            assert torch.equal(west_x, west_y), "regional box: the west edge sees the east edge"

    def test_latitude_order(self, model_factory: Factory, geometry: Geometry) -> None:
        """The grid written the other way round gives the same fields, flipped."""
        other = flipped_lat(geometry)
        assert other.lat_descending != geometry.lat_descending
        m1, m2 = build(model_factory, geometry), build(model_factory, other)
        obs, mask, clock = inputs(geometry)
        x = state(geometry)
        with torch.no_grad():
            a1, a2 = m1.analyse(obs, mask, x, clock), m2.analyse(obs, mask, x.flip(-2), clock)
            s1, s2 = m1.step(x, clock), m2.step(x.flip(-2), clock)
        torch.testing.assert_close(a2, a1.flip(-2), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s2, s1.flip(-2), rtol=1e-5, atol=1e-5)

    def test_rejects_field_off_grid(self, model: Any, geometry: Geometry) -> None:
        _, _, clock = inputs(geometry)
        wrong = state(geometry)[..., :-1]
        with pytest.raises(StratocastError, match="shape"):
            model.step(wrong, clock)

    def test_observation_sites_are_run_time_input(self, model: Any, geometry: Geometry) -> None:
        """A different network — sites removed, added, reordered — needs no retraining: the
        parameters do not depend on the sites, and the encoder treats reports as a set."""
        before = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        rng = np.random.default_rng(3)
        lat = np.asarray(geometry.lat, dtype=np.float64)
        lon = np.asarray(geometry.lon, dtype=np.float64)
        n = len(geometry.station_lat) // 2 + 7
        site_lat = rng.uniform(lat.min(), lat.max(), n)
        site_lon = rng.uniform(lon.min(), lon.max(), n)
        site_z = rng.uniform(0.0, 800.0, n)
        model.set_observation_sites(site_lat, site_lon, site_z)
        assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == before
        gen = torch.Generator().manual_seed(11)
        v = len(geometry.obs_variables)
        obs = torch.randn(BATCH, n, v, generator=gen)
        mask = (torch.rand(BATCH, n, v, generator=gen) > 0.3).float()
        _, _, clock = inputs(geometry)
        with torch.no_grad():
            out = model.analyse(obs * mask, mask, None, clock)
            assert tuple(out.shape) == self._shape(geometry) and torch.isfinite(out).all()
            perm = rng.permutation(n)
            model.set_observation_sites(site_lat[perm], site_lon[perm], site_z[perm])
            shuffled = model.analyse((obs * mask)[:, perm], mask[:, perm], None, clock)
        torch.testing.assert_close(shuffled, out, rtol=1e-4, atol=1e-5)

    def test_deterministic(self, model_factory: Factory, geometry: Geometry) -> None:
        """The same seed builds the same model, and the same inputs give the same fields."""
        m1, m2 = build(model_factory, geometry), build(model_factory, geometry)
        obs, mask, clock = inputs(geometry)
        with torch.no_grad():
            a1 = m1.analyse(obs, mask, None, clock)
            a2 = m2.analyse(obs, mask, None, clock)
            again = m1.analyse(obs, mask, None, clock)
        assert torch.equal(a1, a2), "two models from one seed differ"
        assert torch.equal(a1, again), "one model, one input, two answers"

    def test_state_dict_round_trip(self, model_factory: Factory, geometry: Geometry) -> None:
        """A fresh model given the saved parameters forecasts exactly the same."""
        trained = build(model_factory, geometry, seed=0)
        fresh = build(model_factory, geometry, seed=5)
        fresh.load_state_dict(trained.state_dict())
        x = state(geometry)
        _, _, clock = inputs(geometry)
        with torch.no_grad():
            assert torch.equal(fresh.step(x, clock), trained.step(x, clock))

    def test_long_rollout_is_finite(self, model: Any, geometry: Geometry) -> None:
        """40 steps (10 days at 6 h) from an analysis stay finite."""
        obs, mask, clock = inputs(geometry)
        with torch.no_grad():
            s = model.analyse(obs, mask, None, clock)
            for k in range(40):
                s = model.step(s, clock + torch.tensor([6.0 * k, 0.0]))
                assert torch.isfinite(s).all(), f"non-finite state at step {k + 1}"
