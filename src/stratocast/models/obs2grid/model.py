"""obs2grid: sparse observations (+ own background) → dense analysis → residual stepper.

The analysis network corrects a background (the model's previous forecast when cycling, the
climatological mean otherwise) with gridded observation features; the step network predicts
the one-step tendency in units of its climatological size, so every channel's residual is O(1).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from stratocast.config import format_validation
from stratocast.errors import StratocastError
from stratocast.models.base import Geometry, ModelOptionError, register
from stratocast.models.obs2grid.config import Obs2GridConfig
from stratocast.models.obs2grid.processors import build_processor
from stratocast.models.obs2grid.sites import SetToGrid, SitePairs, height_offsets, site_pairs

LAPSE_RATE = 0.0065  # K/m, standard atmosphere


class GridShapeError(StratocastError, ValueError):
    """A field handed to the model that is not on the grid it was built for."""


class SitesNotSetError(StratocastError, RuntimeError):
    """``analyse`` before the observation sites were given."""


def _static_fields(g: Geometry) -> np.ndarray:
    lat, lon = np.meshgrid(np.radians(g.lat), np.radians(g.lon), indexing="ij")
    oro = g.orography / 1000.0
    return np.stack([np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon), oro]).astype(np.float32)


class Obs2Grid(nn.Module):
    static: torch.Tensor  # (n_static, H, W)
    tendency_scale: torch.Tensor  # (1, C, 1, 1)
    lon_hours: torch.Tensor  # (1, W): local solar time offset of each longitude
    area_weight: torch.Tensor  # (H, 1): cell area fractions of the whole grid (sum 1)

    def __init__(
        self,
        geometry: Geometry,
        hidden: int = 32,
        blocks: int = 4,
        kernel_widths_km: tuple[float, ...] = (300.0, 900.0),
        max_kernel_width_km: float | None = None,
        mass_fixer: bool = False,
        processor: str = "gridnet",
        relaxation_days: float | None = None,
    ) -> None:
        super().__init__()
        # Built on the ascending-latitude grid; a descending input is flipped at the boundary
        # (in analyse/step) so outputs come back on the caller's order and the weights are
        # the same whichever way the grid was written.
        self.flip_lat = geometry.lat_descending
        self.periodic_lon = geometry.lon_periodic
        g = geometry.lat_ascending()
        self.n_channels = len(g.channels)
        cap = max_kernel_width_km or 1.5 * max(kernel_widths_km)
        self.encoder = SetToGrid((len(g.lat), len(g.lon)), tuple(kernel_widths_km), cap)
        self._grid = g
        static = torch.from_numpy(_static_fields(g))
        self.register_buffer("static", static)
        n_static = static.shape[0] + 4  # + solar forcing, see _static
        lon_hours = torch.tensor(np.asarray(g.lon) / 15.0, dtype=torch.float32)[None, :]
        self.register_buffer("lon_hours", lon_hours)
        n_obs = self.encoder.n_features_per_variable * len(g.obs_variables)
        # +1: a plane saying whether the background is a real forecast or the climatology.
        self.analysis_net = build_processor(
            processor,
            n_obs + self.n_channels + 1 + n_static,
            self.n_channels,
            hidden,
            blocks,
            self.periodic_lon,
        )
        self.step_net = build_processor(
            processor,
            self.n_channels + n_static,
            self.n_channels,
            hidden,
            blocks,
            self.periodic_lon,
        )
        # Dry-mass proxy (as ACE2 corrects): after each step the area-weighted global mean
        # of msl is put back to its value before the step, so a long rollout cannot gain or
        # lose air. Global grids only: a regional box exchanges mass through its edges.
        self.mass_channel = g.channels.index("msl") if mass_fixer and "msl" in g.channels else None
        if mass_fixer and self.mass_channel is None:
            raise ModelOptionError("obs2grid: mass_fixer needs an 'msl' channel")
        if mass_fixer and not self.periodic_lon:
            raise ModelOptionError("obs2grid: mass_fixer needs a global grid (lon wraps)")
        # Newtonian relaxation (as the Held-Suarez forcing relaxes temperature to a radiative
        # equilibrium): each step pulls the state towards a learned equilibrium field at a
        # learned per-channel rate. Short training rollouts cannot teach what the model does
        # over weeks; without this anchor a free rollout's eddy variance grows without bound.
        self.relax = relaxation_days is not None
        if self.relax:
            steps = float(relaxation_days or 1.0) * 4.0  # 6-hourly steps
            n, hh, ww = self.n_channels, len(g.lat), len(g.lon)
            self.equilibrium = nn.Parameter(torch.zeros(1, n, hh, ww))
            self.log_rate = nn.Parameter(torch.full((1, n, 1, 1), float(np.log(1.0 / steps))))
        area = np.clip(np.cos(np.radians(np.asarray(g.lat, dtype=np.float64))), 0.0, None)
        self.register_buffer(
            "area_weight",
            torch.tensor(area / area.sum() / len(g.lon), dtype=torch.float32)[:, None],
        )
        self.register_buffer(
            "tendency_scale",
            torch.tensor(g.tendency_scale, dtype=torch.float32)[None, :, None, None],
        )
        # The observing sites are run-time input, not weights (sites.py): set from the
        # geometry's stations when it has them, replaced with set_observation_sites().
        self._pairs: SitePairs | None = None
        self._offset: torch.Tensor | None = None
        if len(g.station_lat):
            self.set_observation_sites(g.station_lat, g.station_lon, g.station_elevation)

    def set_observation_sites(
        self, lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray
    ) -> None:
        """The positions of the observation slots the next ``analyse`` calls receive."""
        g = self._grid
        self._pairs = site_pairs(g.lat, g.lon, lat, lon, 3.0 * self.encoder.max_width_km)
        # Reports are reduced to the grid cell's surface height before spreading (the model's
        # t2m lives on the grid orography): the standard-atmosphere lapse correction.
        offset = np.zeros((len(lat), len(g.obs_variables)), dtype=np.float32)
        if "t2m" in g.obs_variables:
            k = g.obs_variables.index("t2m")
            dz = height_offsets(g.lat, g.lon, g.orography, lat, lon, elevation)
            offset[:, k] = LAPSE_RATE * dz / g.obs_std[k]
        self._offset = torch.from_numpy(offset)

    def _sites(self, device: torch.device) -> tuple[SitePairs, torch.Tensor]:
        if self._pairs is None or self._offset is None:
            raise SitesNotSetError(
                "obs2grid: no observation sites set; call set_observation_sites(lat, lon, "
                "elevation) with the positions of the observation slots"
            )
        if self._pairs.site.device != device:  # plain tensors: .to(module) does not move them
            self._pairs = self._pairs.to(device)
            self._offset = self._offset.to(device)
        return self._pairs, self._offset

    def _static(self, clock: torch.Tensor) -> torch.Tensor:
        """Static fields plus solar forcing: local time of day and season, as sin/cos."""
        b = clock.shape[0]
        static = self.static.unsqueeze(0).expand(b, -1, -1, -1)
        local_hour = clock[:, 0, None, None] + self.lon_hours[None]  # (B, 1, W)
        day = 2 * torch.pi * local_hour / 24.0
        year = 2 * torch.pi * clock[:, 1] / 365.25
        h, w = static.shape[-2:]
        forcing = torch.stack(
            [
                torch.sin(day).expand(b, h, w),
                torch.cos(day).expand(b, h, w),
                torch.sin(year)[:, None, None].expand(b, h, w),
                torch.cos(year)[:, None, None].expand(b, h, w),
            ],
            dim=1,
        )
        return torch.cat([static, forcing], dim=1)

    def analyse(
        self,
        obs: torch.Tensor,
        obs_mask: torch.Tensor,
        background: torch.Tensor | None,
        clock: torch.Tensor,
    ) -> torch.Tensor:
        b = obs.shape[0]
        h, w = self.static.shape[-2:]
        if background is None:
            background = obs.new_zeros((b, self.n_channels, h, w))  # normalised climatology
            flag = obs.new_zeros((b, 1, h, w))
        else:
            self._check_grid(background, "analyse: background")
            background = self._to_internal(background)
            flag = obs.new_ones((b, 1, h, w))
        # Values under a zero mask are no data, whatever they hold (NaN from an API caller):
        # 0 * NaN would otherwise spread NaN over every cell the station's kernel reaches.
        obs = torch.where(obs_mask > 0, obs, torch.zeros_like(obs))
        pairs, offset = self._sites(obs.device)
        feats = self.encoder(obs + offset * obs_mask, obs_mask, pairs)
        x = torch.cat([feats, background, flag, self._static(clock)], dim=1)
        out: torch.Tensor = background + self.analysis_net(x)
        return self._to_internal(out)  # the flip is its own inverse

    def step(self, state: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        self._check_grid(state, "step: state")
        state = self._to_internal(state)
        x = torch.cat([state, self._static(clock)], dim=1)
        out: torch.Tensor = state + self.tendency_scale * self.step_net(x)
        if self.relax:
            rate = torch.exp(self.log_rate).clamp(max=1.0)
            out = out - rate * (state - self.equilibrium)
        if self.mass_channel is not None:
            out = self._hold_mass(state, out)
        return self._to_internal(out)

    def global_mean(self, field: torch.Tensor) -> torch.Tensor:
        """Area-weighted mean over the grid of (..., H, W) on the internal (ascending) grid."""
        return (field * self.area_weight).sum(dim=(-2, -1))

    def _hold_mass(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        # Normalisation is affine per channel, so holding the normalised mean holds the
        # physical one. A uniform shift: the pattern the network predicted is kept.
        k = self.mass_channel
        drift = self.global_mean(after[:, k]) - self.global_mean(before[:, k])
        fix = torch.zeros_like(after)
        fix[:, k] = drift[:, None, None]
        return after - fix

    def _to_internal(self, field: torch.Tensor) -> torch.Tensor:
        """Caller's latitude order <-> the ascending order the network runs on."""
        return field.flip(-2) if self.flip_lat else field

    def _check_grid(self, field: torch.Tensor, what: str) -> None:
        want = (self.n_channels, *self.static.shape[-2:])
        if field.dim() != 4 or tuple(field.shape[1:]) != want:
            raise GridShapeError(
                f"obs2grid {what} has shape {tuple(field.shape)}, expected (B, C, H, W) with "
                f"(C, H, W) = {want} from the model's geometry"
            )


@register("obs2grid")
def build(geometry: Geometry, options: dict[str, object]) -> nn.Module:
    known = set(Obs2GridConfig.model_fields) - {"name"}
    unknown = set(options) - known
    if unknown:
        raise ModelOptionError(
            f"obs2grid: unknown options {sorted(unknown)}; known: {sorted(known)}"
        )
    try:
        cfg = Obs2GridConfig.model_validate(options)
    except ValidationError as err:
        raise ModelOptionError(f"obs2grid: {format_validation(err, 'options')}") from None
    return Obs2Grid(
        geometry,
        hidden=cfg.hidden,
        blocks=cfg.blocks,
        kernel_widths_km=tuple(cfg.kernel_widths_km),
        max_kernel_width_km=cfg.max_kernel_width_km,
        mass_fixer=cfg.mass_fixer,
        processor=cfg.processor,
        relaxation_days=cfg.relaxation_days,
    )
