"""obs2grid: sparse observations (+ own background) → dense analysis → residual stepper.

The analysis network corrects a background (the model's previous forecast when cycling, the
climatological mean otherwise) with gridded observation features; the step network predicts
the one-step tendency in units of its climatological size, so every channel's residual is O(1).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stratocast.errors import StratocastError
from stratocast.grid.interp import bilinear_weights
from stratocast.models.base import Geometry, ModelOptionError, register
from stratocast.models.obs2grid.blocks import GridNet
from stratocast.models.obs2grid.encoder import LAPSE_RATE, StationToGrid


class GridShapeError(StratocastError, ValueError):
    """A field handed to the model that is not on the grid it was built for."""


def _static_fields(g: Geometry) -> np.ndarray:
    lat, lon = np.meshgrid(np.radians(g.lat), np.radians(g.lon), indexing="ij")
    oro = g.orography / 1000.0
    return np.stack([np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon), oro]).astype(np.float32)


class Obs2Grid(nn.Module):
    static: torch.Tensor  # (n_static, H, W)
    tendency_scale: torch.Tensor  # (1, C, 1, 1)
    obs_offset: torch.Tensor  # (S, V)
    lon_hours: torch.Tensor  # (1, W): local solar time offset of each longitude

    def __init__(
        self,
        geometry: Geometry,
        hidden: int = 32,
        blocks: int = 4,
        kernel_widths_km: tuple[float, ...] = (300.0, 900.0),
    ) -> None:
        super().__init__()
        # Built on the ascending-latitude grid; a descending input is flipped at the boundary
        # (in analyse/step) so outputs come back on the caller's order and the weights are
        # the same whichever way the grid was written.
        self.flip_lat = geometry.lat_descending
        self.periodic_lon = geometry.lon_periodic
        g = geometry.lat_ascending()
        self.n_channels = len(g.channels)
        self.encoder = StationToGrid(g.lat, g.lon, g.station_lat, g.station_lon, kernel_widths_km)
        static = torch.from_numpy(_static_fields(g))
        self.register_buffer("static", static)
        n_static = static.shape[0] + 4  # + solar forcing, see _static
        lon_hours = torch.tensor(np.asarray(g.lon) / 15.0, dtype=torch.float32)[None, :]
        self.register_buffer("lon_hours", lon_hours)
        n_obs = self.encoder.n_features_per_variable * len(g.obs_variables)
        # +1: a plane saying whether the background is a real forecast or the climatology.
        self.analysis_net = GridNet(
            n_obs + self.n_channels + 1 + n_static,
            self.n_channels,
            hidden,
            blocks,
            periodic_lon=self.periodic_lon,
        )
        self.step_net = GridNet(
            self.n_channels + n_static, self.n_channels, hidden, blocks, self.periodic_lon
        )
        self.register_buffer(
            "tendency_scale",
            torch.tensor(g.tendency_scale, dtype=torch.float32)[None, :, None, None],
        )
        # Reports are reduced to the grid cell's surface height before spreading (the model's
        # t2m lives on the grid orography); this is the standard-atmosphere lapse correction.
        offset = np.zeros((len(g.station_lat), len(g.obs_variables)), dtype=np.float32)
        if "t2m" in g.obs_variables:
            k = g.obs_variables.index("t2m")
            # Longitudes relative to the grid's west edge: interp compares a point's lon taken
            # mod 360 with the grid's own, so a box written in -180..180 (the ERA5 sample's
            # -125..-66) would find every station outside it. A global grid from 0° is as is.
            lon0 = float(np.asarray(g.lon)[0])
            oro_at = bilinear_weights(
                g.lat, (np.asarray(g.lon) - lon0) % 360.0, g.station_lat, g.station_lon - lon0
            ).apply(g.orography)
            # A station beyond a regional box (its kernel may still reach in) has no grid height
            # to be reduced to: it is spread uncorrected rather than poisoning the grid with NaN.
            offset[:, k] = np.nan_to_num(
                LAPSE_RATE * (g.station_elevation - oro_at) / g.obs_std[k], nan=0.0
            )
        self.register_buffer("obs_offset", torch.from_numpy(offset))

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
        feats = self.encoder(obs + self.obs_offset * obs_mask, obs_mask)
        x = torch.cat([feats, background, flag, self._static(clock)], dim=1)
        out: torch.Tensor = background + self.analysis_net(x)
        return self._to_internal(out)  # the flip is its own inverse

    def step(self, state: torch.Tensor, clock: torch.Tensor) -> torch.Tensor:
        self._check_grid(state, "step: state")
        state = self._to_internal(state)
        x = torch.cat([state, self._static(clock)], dim=1)
        out: torch.Tensor = state + self.tendency_scale * self.step_net(x)
        return self._to_internal(out)

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
    known = {"hidden", "blocks", "kernel_widths_km"}
    unknown = set(options) - known
    if unknown:
        raise ModelOptionError(
            f"obs2grid: unknown options {sorted(unknown)}; known: {sorted(known)}"
        )
    hidden = int(options.get("hidden", 32))  # type: ignore[call-overload]
    blocks = int(options.get("blocks", 4))  # type: ignore[call-overload]
    widths = tuple(float(w) for w in options.get("kernel_widths_km", (300.0, 900.0)))  # type: ignore[attr-defined]
    return Obs2Grid(geometry, hidden=hidden, blocks=blocks, kernel_widths_km=widths)
