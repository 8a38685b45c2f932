"""The forecast-model plug point.

A model is single-device code with two operations: ``analyse`` turns the observations of one
window (plus a background state, its own previous forecast when cycling) into a dense grid
state, and ``step`` advances a state by one time step. Training, cycling and rollout are
written once, outside the models, against this contract.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from stratocast.errors import StratocastError


class GeometryError(StratocastError, ValueError):
    """A grid a model cannot be built on (non-monotonic latitude, mismatched shapes, ...)."""


def lon_is_periodic(lon: np.ndarray) -> bool:
    """Whether ``lon`` closes the circle: W cells of the median spacing span 360° to within half
    a spacing (a global grid, with or without a duplicated 360° column it is not)."""
    lon = np.asarray(lon, dtype=np.float64)
    if lon.size < 2:
        return False
    spacing = float(np.median(np.diff(lon) % 360.0))  # % 360: grids written across 180° or 0°
    return spacing > 0 and abs(spacing * lon.size - 360.0) < 0.5 * spacing


@dataclass(frozen=True)
class Geometry:
    """Everything a model needs to know about the grid and the observing network.

    ``lat`` may run either way (strictly monotonic); models return fields in the input's order.
    Whether longitude wraps is derived from ``lon`` (:func:`lon_is_periodic`) unless
    ``periodic_lon`` overrides it (True: treat as global, False: a regional box).
    """

    lat: np.ndarray  # (H,) degrees, strictly ascending or strictly descending
    lon: np.ndarray  # (W,) degrees
    orography: np.ndarray  # (H, W) metres
    station_lat: np.ndarray  # (S,)
    station_lon: np.ndarray  # (S,)
    station_elevation: np.ndarray  # (S,) metres
    channels: tuple[str, ...]
    obs_variables: tuple[str, ...]
    obs_std: np.ndarray  # (V,) physical std of each observed variable (for physical offsets)
    tendency_scale: np.ndarray  # (C,) diff_std / std: one step's typical normalised change
    periodic_lon: bool | None = None  # None: derived from lon

    def __post_init__(self) -> None:
        # A checkpoint stores every field and reloads it through np.asarray: undo that here.
        flag = self.periodic_lon
        if isinstance(flag, np.ndarray):
            flag = flag.item()
        if flag is not None and not isinstance(flag, bool | np.bool_):
            raise GeometryError(f"Geometry.periodic_lon must be True, False or None, not {flag!r}")
        object.__setattr__(self, "periodic_lon", None if flag is None else bool(flag))
        lat = np.asarray(self.lat, dtype=np.float64)
        lon = np.asarray(self.lon)
        if lat.ndim != 1 or lon.ndim != 1 or lat.size == 0 or lon.size == 0:
            raise GeometryError(
                f"Geometry: lat and lon must be non-empty 1-D, got shapes {lat.shape} and "
                f"{lon.shape}"
            )
        step = np.diff(lat)
        if step.size and not (np.all(step > 0) or np.all(step < 0)):
            bad = int(np.argmax(step <= 0) if step[0] > 0 else np.argmax(step >= 0))
            raise GeometryError(
                "Geometry.lat must be strictly ascending or strictly descending; it turns at "
                f"index {bad + 1} ({lat[bad]} -> {lat[bad + 1]})"
            )
        oro = np.asarray(self.orography)
        if oro.shape != (lat.size, lon.size):
            raise GeometryError(
                f"Geometry.orography has shape {oro.shape}, expected (H, W) = "
                f"({lat.size}, {lon.size}) from lat and lon"
            )

    @property
    def lon_periodic(self) -> bool:
        """Whether convolutions wrap in longitude (global grid) or stop at the edges (box)."""
        if self.periodic_lon is not None:
            return self.periodic_lon
        return lon_is_periodic(self.lon)

    @property
    def lat_descending(self) -> bool:
        lat = np.asarray(self.lat)
        return bool(lat.size > 1 and lat[1] < lat[0])

    def lat_ascending(self) -> Geometry:
        """The same grid with latitude (and orography rows) ascending: a no-op if already."""
        if not self.lat_descending:
            return self
        return dataclasses.replace(
            self,
            lat=np.asarray(self.lat)[::-1].copy(),
            orography=np.asarray(self.orography)[::-1].copy(),
            periodic_lon=self.lon_periodic,
        )


class ForecastModel(Protocol):
    def analyse(
        self,
        obs: torch.Tensor,
        obs_mask: torch.Tensor,
        background: torch.Tensor | None,
        clock: torch.Tensor,
    ) -> torch.Tensor:
        """obs, obs_mask: (B, S, V) normalised; background: (B, C, H, W) or None;
        clock: (B, 2) UTC hour of day and day of year of the analysis time. Where obs_mask is
        0 the obs value is ignored, whatever it holds (NaN included). Fields are on the
        geometry's grid in its latitude order (see stratocast.testing.models)."""
        ...

    def step(self, state: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalised state at t (clock (B, 2) of t) → state at t + one step."""
        ...

    def set_observation_sites(
        self, lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray
    ) -> None:
        """Positions (degrees, metres) of the S observation slots ``analyse`` receives from
        now on: run-time input, never weights, so a network that changed needs no retraining."""
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
