"""Cycling and rollout, written once for every model that meets the ForecastModel contract.

Training and forecasting both run them; they live beside the models so that ``infer/`` needs
nothing from ``train/``.

A sample holds ``history`` observation windows and the target states from the first window
to ``rollout`` steps past the last. The first window is analysed from the climatology; each
later one from the model's own forecast of the previous analysis (as in operational cycling);
then the last analysis is rolled forward.
"""

from __future__ import annotations

import torch
from torch import nn

from stratocast.models.base import ForecastModel


def cycle_and_rollout(
    model: ForecastModel,
    obs: torch.Tensor,
    obs_mask: torch.Tensor,
    clock: torch.Tensor,
    rollout: int,
) -> torch.Tensor:
    """obs, obs_mask: (B, T_hist, S, V); clock: (B, ≥ T_hist + rollout, 2)
    → states (B, T_hist + rollout, C, H, W)."""
    background: torch.Tensor | None = None
    states = []
    n_hist = obs.shape[1]
    for k in range(n_hist):
        analysis = model.analyse(obs[:, k], obs_mask[:, k], background, clock[:, k])
        states.append(analysis)
        if k + 1 < n_hist:
            background = model.step(analysis, clock[:, k])
    state = states[-1]
    for j in range(rollout):
        state = model.step(state, clock[:, n_hist - 1 + j])
        states.append(state)
    return torch.stack(states, dim=1)


class Rollout(nn.Module):
    """The training forward as one module call, so DDP and FSDP hooks see it (models expose
    ``analyse``/``step``, not ``forward``). Parameters live under ``model.``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, obs: torch.Tensor, obs_mask: torch.Tensor, clock: torch.Tensor, rollout: int
    ) -> torch.Tensor:
        fm: ForecastModel = self.model  # type: ignore[assignment]
        return cycle_and_rollout(fm, obs, obs_mask, clock, rollout)
