"""The training loss: latitude- and variable-weighted MSE per rollout step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from stratocast.errors import StratocastError


class LossWeightError(StratocastError, ValueError):
    """``train.loss_weights`` names a channel the shards do not hold."""


def latitude_weights(lat_deg: torch.Tensor) -> torch.Tensor:
    """Area weights normalised to mean 1, as in WeatherBench's latitude-weighted RMSE."""
    w = torch.cos(torch.deg2rad(lat_deg)).clamp_min(0.0)
    return w / w.mean()


def channel_weights(channels: Sequence[str], weights: Mapping[str, float]) -> torch.Tensor:
    """(C,) weights, 1 for channels not named, normalised to mean 1 so that the loss scale
    (and so the learning rate that suits it) does not change with the weighting."""
    unknown = sorted(set(weights) - set(channels))
    if unknown:
        raise LossWeightError(
            f"train.loss_weights names {unknown}, not channels of the shards {list(channels)}"
        )
    w = torch.tensor([float(weights.get(c, 1.0)) for c in channels], dtype=torch.float32)
    return w / w.mean()


def weighted_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    lat_w: torch.Tensor,
    chan_w: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per time step (B, T, C, H, W) → (T,) latitude-weighted MSE averaged over the rest."""
    err = (pred - target) ** 2 * lat_w[None, None, None, :, None]
    if chan_w is not None:
        err = err * chan_w[None, None, :, None, None]
    return err.mean(dim=(0, 2, 3, 4))
