"""The forecast-model plug point.

A model is single-device code with two operations: ``analyse`` turns the observations of one
window (plus a background state, its own previous forecast when cycling) into a dense grid
state, and ``step`` advances a state by one time step. Training, cycling and rollout are
written once, outside the models, against this contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from stratocast.errors import StratocastError


@dataclass(frozen=True)
class Geometry:
    """Everything a model needs to know about the grid and the observing network."""

    lat: np.ndarray  # (H,) degrees, ascending
    lon: np.ndarray  # (W,) degrees
    orography: np.ndarray  # (H, W) metres
    station_lat: np.ndarray  # (S,)
    station_lon: np.ndarray  # (S,)
    station_elevation: np.ndarray  # (S,) metres
    channels: tuple[str, ...]
    obs_variables: tuple[str, ...]
    obs_std: np.ndarray  # (V,) physical std of each observed variable (for physical offsets)
    tendency_scale: np.ndarray  # (C,) diff_std / std: one step's typical normalised change


class ForecastModel(Protocol):
    def analyse(
        self,
        obs: torch.Tensor,
        obs_mask: torch.Tensor,
        background: torch.Tensor | None,
        clock: torch.Tensor,
    ) -> torch.Tensor:
        """obs, obs_mask: (B, S, V) normalised; background: (B, C, H, W) or None;
        clock: (B, 2) UTC hour of day and day of year of the analysis time."""
        ...

    def step(self, state: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised state at t (clock (B, 2) of t) → state at t + one step."""
        ...


ModelFactory = Callable[[Geometry, dict[str, object]], torch.nn.Module]


class ModelOptionError(StratocastError, ValueError):
    """A model's options (``train.model``) that its factory does not accept."""


class UnknownModelError(StratocastError, KeyError):
    """``train.model.name`` names no registered model."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0])


_REGISTRY: dict[str, ModelFactory] = {}


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def deco(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:  # a programming error (two modules, one name): not the user's
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def build_model(name: str, geometry: Geometry, options: dict[str, object]) -> torch.nn.Module:
    # Import the built-in architectures so they register themselves.
    from stratocast.models.obs2grid import model as _obs2grid  # noqa: F401

    if name not in _REGISTRY:
        raise UnknownModelError(
            f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}. A new model is "
            "one module calling stratocast.models.base.register"
        )
    return _REGISTRY[name](geometry, options)
