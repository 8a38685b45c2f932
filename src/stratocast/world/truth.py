"""The built-in world's truth: a year of a physics-based simulated atmosphere.

The demo and the tests need a realistic, fully known atmosphere without a network, to stand in
for a reanalysis. It is produced by integrating the dry primitive equations with Held–Suarez
forcing (the JAX spectral dynamical core ``dinosaur``), optionally with a seasonal cycle in the
radiative-equilibrium temperature and with a smooth real-world-like orography built from airport
elevations. Near-surface fields (``t2m``, ``u10``, ``v10``, ``msl``) are diagnosed from the
lowest sigma level; ``z500`` and ``t850`` are interpolated to pressure levels. See
``docs/world.md`` for the formulas, the measured speed and the reasons behind the defaults.

The result is written once as a Zarr v3 store under a cache directory, keyed by a hash of the
config, and reused from then on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
import time as wallclock
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from stratocast.config import ComponentConfig
from stratocast.errors import StratocastError
from stratocast.vocab.variables import get as get_variable

# Bump when the generator's output changes for the same config, so stale caches are not reused.
GENERATOR_VERSION = "1"

OUTPUT_VARIABLES = ("t2m", "u10", "v10", "msl", "z500", "t850")

# Plausibility bounds for the stability check. Wider than any sane climate, narrower than what a
# numerically blown-up run produces, so a failure means the simulation went wrong.
_SANE_RANGES: dict[str, tuple[float, float]] = {
    "t2m": (180.0, 340.0),
    "u10": (-100.0, 100.0),
    "v10": (-100.0, 100.0),
    "msl": (90000.0, 110000.0),
    "z500": (40000.0, 62000.0),
    "t850": (190.0, 330.0),
}

# Physical constants for the diagnostics (SI).
_G = 9.80665  # m s-2
_R_DRY = 287.04  # J kg-1 K-1
_LAPSE = 0.0065  # K m-1, ICAO standard atmosphere
_FEET = 0.3048  # m
# Roughness length for the log-law reduction of the lowest-level wind to 10 m: between open sea
# (~1e-4 m) and grassland (~3e-2 m), since the grid makes no land/sea distinction in drag.
_Z0 = 0.01  # m
# Output time chunk (outer steps per compiled scan call, and Zarr chunk along time).
_CHUNK_STEPS = 120


class TruthGenerationError(StratocastError, RuntimeError):
    """The simulated truth is missing, malformed or physically implausible."""


class TruthConfig(ComponentConfig):
    """How to simulate the built-in world's truth. All fields enter the cache key."""

    resolution: Literal["T21", "T31", "T42"] = "T21"
    levels: int = Field(default=8, ge=4, le=40)
    days: float = Field(default=366.0, gt=0.0, le=36_600.0)  # a century
    spinup_days: float = Field(default=120.0, ge=0.0, le=3_660.0)
    output_hours: int = Field(default=6, ge=1, le=24)
    start: str = "2000-01-01T00"
    seed: int = 0
    orography: bool = True
    seasonal_cycle: bool = True
    # Not part of the original API, additive: a land-only diurnal cycle on t2m (the dynamics
    # are forced by daily-mean heating only, so the cycle is imposed in the diagnostics).
    diurnal_cycle: bool = True
    timestep_minutes: float = Field(default=30.0, gt=0.0)

    @model_validator(mode="after")
    def _check(self) -> TruthConfig:
        if 24 % self.output_hours:
            raise ValueError(f"output_hours must divide 24, got {self.output_hours}")
        if (self.output_hours * 60) % self.timestep_minutes:
            raise ValueError(
                f"timestep_minutes ({self.timestep_minutes}) must divide output_hours "
                f"({self.output_hours} h) exactly"
            )
        try:
            np.datetime64(self.start, "ns")
        except ValueError as err:
            raise ValueError(f"start must be an ISO date-time, got {self.start!r}: {err}") from None
        return self

    @property
    def start_time(self) -> np.datetime64:
        return np.datetime64(self.start, "ns")

    @property
    def steps_per_day(self) -> int:
        return 24 // self.output_hours

    @property
    def output_steps(self) -> int:
        return max(1, round(self.days * self.steps_per_day))

    @property
    def spinup_steps(self) -> int:
        return round(self.spinup_days * self.steps_per_day)

    @property
    def inner_steps(self) -> int:
        return round(self.output_hours * 60 / self.timestep_minutes)


def config_hash(cfg: TruthConfig) -> str:
    payload = json.dumps(
        {"generator": GENERATOR_VERSION, "config": cfg.model_dump(mode="json")}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def truth_path(cfg: TruthConfig, cache_dir: Path) -> Path:
    """Deterministic location of the truth store for ``cfg`` under ``cache_dir``."""
    return Path(cache_dir) / f"truth-{config_hash(cfg)}.zarr"


def _is_complete(path: Path) -> bool:
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, json.JSONDecodeError):
        return False
    return bool(attrs.get("stratocast_complete", False))


def generate_truth(cfg: TruthConfig, cache_dir: Path, progress: bool = True) -> Path:
    """Simulate the truth for ``cfg`` (or reuse the cached store) and return its Zarr path.

    The store is written to a temporary directory and renamed into place only when complete and
    checked, so an interrupted run never leaves a store that a later call would reuse.
    """
    cache_dir = Path(cache_dir)
    final = truth_path(cfg, cache_dir)
    if _is_complete(final):
        return final
    if final.exists():
        # A store without the completion mark cannot come from this function; replace it.
        shutil.rmtree(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _simulate_to_zarr(cfg, tmp, progress=progress)
        try:
            tmp.rename(final)
        except OSError:
            # Another process finished the same config first; its store is equally valid.
            if not _is_complete(final):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def open_truth(path: Path) -> xr.Dataset:
    """Open a truth store written by :func:`generate_truth`, checking the data contract."""
    path = Path(path)
    if not _is_complete(path):
        raise TruthGenerationError(
            f"{path} is not a complete truth store (missing, or generation was interrupted); "
            "create it with generate_truth()"
        )
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
    missing = [v for v in (*OUTPUT_VARIABLES, "orography") if v not in ds]
    if missing:
        raise TruthGenerationError(f"{path}: truth store lacks variables {missing}")
    return ds


# --------------------------------------------------------------------------------------------
# Orography
# --------------------------------------------------------------------------------------------


def _cell_edges(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
    mids = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[lo], mids, [hi]])


def airport_orography(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Mean airport elevation (m) per grid cell, zero where a cell holds no airport.

    ``lat`` ascending degrees north and ``lon`` ascending degrees east in [0, 360) are the cell
    centres; returns shape (lat, lon). Airports sample where people live, so this is a biased but
    recognisable picture of the continents (Rockies, Andes, Tibet, East Africa, Antarctica).
    """
    import airportsdata

    airports = airportsdata.load("ICAO")
    a_lat = np.array([a["lat"] for a in airports.values()], dtype=np.float64)
    a_lon = np.array([a["lon"] for a in airports.values()], dtype=np.float64) % 360.0
    a_elev = np.array([a["elevation"] for a in airports.values()], dtype=np.float64) * _FEET
    ok = np.isfinite(a_lat) & np.isfinite(a_lon) & np.isfinite(a_elev)
    a_lat, a_lon, a_elev = a_lat[ok], a_lon[ok], np.clip(a_elev[ok], 0.0, None)

    lat_edges = _cell_edges(lat, -90.0, 90.0)
    dlon = 360.0 / lon.size
    # Cells are centred on the longitudes, so shift by half a cell and wrap.
    i_lon = np.floor(((a_lon + 0.5 * dlon) % 360.0) / dlon).astype(int) % lon.size
    i_lat = np.clip(np.searchsorted(lat_edges, a_lat, side="right") - 1, 0, lat.size - 1)
    total = np.zeros((lat.size, lon.size))
    count = np.zeros((lat.size, lon.size))
    np.add.at(total, (i_lat, i_lon), a_elev)
    np.add.at(count, (i_lat, i_lon), 1.0)
    return np.where(count > 0, total / np.maximum(count, 1.0), 0.0)


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def _import_jax() -> Any:
    # The world runs on CPU next to the training job; never grab an accelerator or warn about it.
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    return jax


class _World:
    """The dinosaur model for one config, plus the jitted chunked trajectory."""

    def __init__(self, cfg: TruthConfig) -> None:
        jax = _import_jax()
        import jax.numpy as jnp
        from dinosaur import (
            coordinate_systems,
            held_suarez,
            primitive_equations,
            primitive_equations_states,
            scales,
            sigma_coordinates,
            spherical_harmonic,
            time_integration,
            xarray_utils,
        )

        self.cfg = cfg
        units = scales.units
        grid = getattr(spherical_harmonic.Grid, cfg.resolution)()
        coords = coordinate_systems.CoordinateSystem(
            horizontal=grid,
            vertical=sigma_coordinates.SigmaCoordinates.equidistant(cfg.levels),
        )
        specs = primitive_equations.PrimitiveEquationsSpecs.from_si()
        self.coords = coords
        lon_rad, sin_lat = grid.nodal_mesh  # (lon, lat)
        self.lon = np.degrees(lon_rad[:, 0])
        self.lat = np.degrees(np.arcsin(sin_lat[0, :]))
        if np.any(np.diff(self.lat) <= 0) or np.any(np.diff(self.lon) <= 0):
            raise TruthGenerationError("dinosaur grid is not ascending in lat/lon; update truth.py")

        # Orography: smooth, spectrally truncated, and what the model sees is what we report.
        if cfg.orography:
            raw = airport_orography(self.lat, self.lon).T  # (lon, lat) as the model wants
            modal = grid.to_modal(raw)
            # Damp the high wavenumbers hard: a block-mean field has sharp coasts that would
            # ring (negative heights over the sea) and excite grid-scale noise in the dynamics.
            modal = spherical_harmonic_filter(grid, modal, order=2, strength=8.0)
            smooth = np.clip(np.asarray(grid.to_nodal(modal)), 0.0, None)
            surface_height = smooth * units.meter
            land = raw > 0.0
        else:
            surface_height = None
            land = np.zeros(grid.nodal_shape, dtype=bool)
        init_fn, aux = primitive_equations_states.isothermal_rest_atmosphere(
            coords=coords,
            physics_specs=specs,
            p0=1e5 * units.pascal,
            p1=5e3 * units.pascal,
            surface_height=surface_height,
        )
        ref_temps = aux[xarray_utils.REF_TEMP_KEY]
        modal_orography = primitive_equations.truncated_modal_orography(
            aux[xarray_utils.OROGRAPHY], coords
        )
        nodal_orography = np.asarray(grid.to_nodal(modal_orography))  # nondimensional
        to_m = 1.0 / float(specs.nondimensionalize(1.0 * units.meter))
        self.orography_m = (nodal_orography * to_m).T.astype(np.float32)  # (lat, lon)
        self.land = land.T  # (lat, lon)

        dt_nd = float(specs.nondimensionalize(cfg.timestep_minutes * units.minute))
        self.day_nd = float(specs.nondimensionalize(1.0 * units.day))
        primitive = primitive_equations.PrimitiveEquations(
            ref_temps, modal_orography, coords, specs
        )
        forcing: Any
        if cfg.seasonal_cycle:
            day0 = _day_of_year(cfg.start_time) - cfg.spinup_steps / cfg.steps_per_day
            forcing = _SeasonalHeldSuarez(
                coords=coords,
                physics_specs=specs,
                reference_temperature=ref_temps,
                day_nd=self.day_nd,
                day_at_sim_time_zero=day0,
            )
        else:
            forcing = held_suarez.HeldSuarezForcingSigma(
                coords=coords, physics_specs=specs, reference_temperature=ref_temps
            )
        equation = time_integration.compose_equations([primitive, forcing])
        step = time_integration.imex_rk_sil3(equation, dt_nd)
        # The filter of dinosaur's Held–Suarez example: removes the top of the spectrum that the
        # spectral transform cannot represent without aliasing.
        filters = [
            time_integration.exponential_step_filter(
                grid, dt_nd, tau=0.0087504, order=1.5, cutoff=0.8
            )
        ]
        step = time_integration.step_with_filters(step, filters)

        # Scales from nondimensional to SI.
        k_scale = 1.0 / float(specs.nondimensionalize(1.0 * units.degK))
        v_scale = 1.0 / float(specs.nondimensionalize(1.0 * units.m / units.s))
        p_scale = 1.0 / float(specs.nondimensionalize(1.0 * units.pascal))
        phi_scale = 1.0 / float(specs.nondimensionalize(1.0 * units.m**2 / units.s**2))
        sigma = np.asarray(coords.vertical.centers, dtype=np.float64)
        log_sigma = jnp.asarray(np.log(sigma), dtype=jnp.float32)
        ref_t = jnp.asarray(ref_temps, dtype=jnp.float32)
        wind_factor = _log_law_factor(sigma[-1])
        exponent = _R_DRY * _LAPSE / _G
        layers = cfg.levels

        def to_pressure_level(
            field: Any, temp: Any, phi: Any, ps: Any, p_target: float, kind: str
        ) -> Any:
            # Linear in log-pressure between levels; below the lowest level (under the
            # mountains, or under the lowest layer centre), the standard-atmosphere lapse rate
            # from the lowest level, as reanalyses do for pressure levels below ground.
            lt = jnp.log(p_target / ps)
            above = jnp.sum(log_sigma[:, None, None] < lt[None], axis=0)
            upper = jnp.clip(above, 1, layers - 1)
            lo_v = jnp.take_along_axis(field, (upper - 1)[None], axis=0)[0]
            hi_v = jnp.take_along_axis(field, upper[None], axis=0)[0]
            w = (lt - log_sigma[upper - 1]) / (log_sigma[upper] - log_sigma[upper - 1])
            inside = lo_v + w * (hi_v - lo_v)
            ratio = (p_target / (ps * sigma[-1])) ** exponent
            if kind == "t":
                below = temp[-1] * ratio
            else:
                below = phi[-1] + _G * temp[-1] / _LAPSE * (1.0 - ratio)
            return jnp.where(above >= layers, below, inside)

        def diagnose(state: Any) -> dict[str, Any]:
            temp = (ref_t[:, None, None] + grid.to_nodal(state.temperature_variation)) * k_scale
            u_l, v_l = spherical_harmonic.vor_div_to_uv_nodal(
                grid, state.vorticity[-1:], state.divergence[-1:]
            )
            ps = jnp.exp(grid.to_nodal(state.log_surface_pressure))[0] * p_scale
            phi = (
                primitive_equations.get_geopotential_on_sigma(
                    temp / k_scale,
                    nodal_orography=jnp.asarray(nodal_orography),
                    sigma=coords.vertical,
                    gravity_acceleration=specs.g,
                    ideal_gas_constant=specs.R,
                )
                * phi_scale
            )
            t_low = temp[-1]
            # Height of the lowest layer centre above ground (hypsometric, isothermal layer).
            z_low = _R_DRY * t_low / _G * math.log(1.0 / sigma[-1])
            t2m = t_low + _LAPSE * (z_low - 2.0)
            h = jnp.asarray(self.orography_m.T)
            msl = ps * ((t2m + _LAPSE * h) / t2m) ** (_G / (_R_DRY * _LAPSE))
            out = {
                "t2m": t2m,
                "u10": u_l[0] * v_scale * wind_factor,
                "v10": v_l[0] * v_scale * wind_factor,
                "msl": msl,
                "z500": to_pressure_level(phi, temp, phi, ps, 50000.0, "phi"),
                "t850": to_pressure_level(temp, temp, phi, ps, 85000.0, "t"),
            }
            # (lon, lat) -> (lat, lon)
            return {k: jnp.transpose(v).astype(jnp.float32) for k, v in out.items()}

        self.chunk_steps = min(_CHUNK_STEPS, cfg.spinup_steps + cfg.output_steps)
        trajectory = time_integration.trajectory_from_step(
            step,
            outer_steps=self.chunk_steps,
            inner_steps=cfg.inner_steps,
            start_with_input=True,
            post_process_fn=diagnose,
        )
        self.run_chunk: Callable[[Any], tuple[Any, dict[str, Any]]] = jax.jit(trajectory)
        state = init_fn(rng_key=jax.random.PRNGKey(cfg.seed))
        # Carry simulation time so the seasonal forcing can see it (the dynamical core
        # integrates it with unit tendency).
        self.initial_state = primitive_equations.State(
            vorticity=state.vorticity,
            divergence=state.divergence,
            temperature_variation=state.temperature_variation,
            log_surface_pressure=state.log_surface_pressure,
            sim_time=jnp.float32(0.0),
        )


def spherical_harmonic_filter(grid: Any, modal: Any, order: int, strength: float) -> Any:
    """Damp modal coefficients by exp(-strength * (l / l_max) ** (2 * order))."""
    from dinosaur import filtering

    return filtering.exponential_filter(grid, attenuation=strength, order=order)(modal)


def _log_law_factor(sigma_low: float) -> float:
    z_low = _R_DRY * 288.0 / _G * math.log(1.0 / sigma_low)
    return math.log(10.0 / _Z0) / math.log(z_low / _Z0)


def _day_of_year(t: np.datetime64) -> float:
    year_start = t.astype("datetime64[Y]").astype("datetime64[ns]")
    return float((t - year_start) / np.timedelta64(1, "D"))


class _SeasonalHeldSuarez:
    """Held–Suarez forcing whose radiative-equilibrium temperature follows the sun.

    The latitude of maximum equilibrium temperature moves as 15° sin(2π (d - 80) / 365) (d the
    day of year, so it crosses the equator at the March equinox); drag and relaxation rates are
    the standard ones.
    """

    def __init__(
        self,
        coords: Any,
        physics_specs: Any,
        reference_temperature: Any,
        day_nd: float,
        day_at_sim_time_zero: float,
    ) -> None:
        from dinosaur import held_suarez

        self.base = held_suarez.HeldSuarezForcingSigma(
            coords=coords, physics_specs=physics_specs, reference_temperature=reference_temperature
        )
        self.day_nd = day_nd
        self.day0 = day_at_sim_time_zero

    def explicit_terms(self, state: Any) -> Any:
        import jax
        import jax.numpy as jnp
        from dinosaur import primitive_equations

        hs = self.base
        coords = hs.coords
        day = self.day0 + state.sim_time / self.day_nd
        shift = jnp.deg2rad(15.0) * jnp.sin(2.0 * jnp.pi * (day - 80.0) / 365.0)
        lat_eff = hs.lat - shift
        aux = primitive_equations.compute_diagnostic_state_sigma(state=state, coords=coords)
        velocity_tendency = jax.tree.map(
            lambda x: -hs.kv() * x / coords.horizontal.cos_lat**2, aux.cos_lat_u
        )
        temperature = hs.reference_temperature[:, None, None] + aux.temperature_variation
        ps = jnp.exp(coords.horizontal.to_nodal(state.log_surface_pressure))
        p_over_p0 = hs.sigma[:, None, None] * ps / hs.p0
        t_eq = jnp.maximum(
            hs.minT,
            p_over_p0**hs.physics_specs.kappa
            * (
                hs.maxT
                - hs.dTy * jnp.sin(lat_eff) ** 2
                - hs.dThz * jnp.log(p_over_p0) * jnp.cos(lat_eff) ** 2
            ),
        )
        temperature_tendency = -hs.kt() * (temperature - t_eq)
        modal_velocity = coords.horizontal.to_modal(velocity_tendency)
        return primitive_equations.State(
            vorticity=coords.horizontal.curl_cos_lat(modal_velocity),
            divergence=coords.horizontal.div_cos_lat(modal_velocity),
            temperature_variation=coords.horizontal.to_modal(temperature_tendency),
            log_surface_pressure=jnp.zeros_like(state.log_surface_pressure),
        )


def _diurnal_anomaly(
    times: np.ndarray, lat: np.ndarray, lon: np.ndarray, land: np.ndarray
) -> np.ndarray:
    """t2m diurnal anomaly (K), shape (time, lat, lon): peak at 15 local solar time.

    The forcing is daily-mean, so the model has no diurnal cycle; a land-surface-like one is
    imposed here: amplitude 5 K over land and 0.5 K over sea, tapering with cos(latitude).
    """
    hours = (times - times.astype("datetime64[D]")) / np.timedelta64(1, "h")
    local = hours[:, None] + lon[None, :] / 15.0  # (time, lon)
    phase = np.cos(2.0 * np.pi * (local - 15.0) / 24.0)
    amp = np.where(land, 5.0, 0.5) * np.cos(np.deg2rad(lat))[:, None]  # (lat, lon)
    return (amp[None, :, :] * phase[:, None, :]).astype(np.float32)


def _check_chunk(fields: dict[str, np.ndarray], times: np.ndarray, lat: np.ndarray) -> None:
    for name, arr in fields.items():
        bad = ~np.isfinite(arr)
        if bad.any():
            t, i, _ = np.argwhere(bad)[0]
            raise TruthGenerationError(
                f"simulation blew up: {name} is not finite at {times[t]} lat={lat[i]:.1f} "
                f"({int(bad.sum())} values); try a shorter timestep_minutes"
            )
        lo, hi = _SANE_RANGES[name]
        amin, amax = float(arr.min()), float(arr.max())
        if amin < lo or amax > hi:
            t, i, _ = np.argwhere((arr < lo) | (arr > hi))[0]
            raise TruthGenerationError(
                f"simulated {name} out of plausible range [{lo}, {hi}]: min={amin:.1f}, "
                f"max={amax:.1f}, first at {times[t]} lat={lat[i]:.1f}; the run is unstable "
                "or mis-configured (try a shorter timestep_minutes)"
            )


def _simulate_to_zarr(cfg: TruthConfig, path: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    t0 = wallclock.perf_counter()
    world = _World(cfg)
    total = cfg.spinup_steps + cfg.output_steps
    n_chunks = math.ceil(total / world.chunk_steps)
    step_td = np.timedelta64(cfg.output_hours, "h").astype("timedelta64[ns]")
    start = cfg.start_time
    written = 0
    state = world.initial_state
    bar = tqdm(
        total=n_chunks,
        desc=f"simulating truth ({cfg.resolution}L{cfg.levels})",
        unit="chunk",
        disable=not progress,
    )
    with bar:
        for k in range(n_chunks):
            state, frames = world.run_chunk(state)
            first = k * world.chunk_steps  # global index of this chunk's first frame
            lo = max(cfg.spinup_steps - first, 0)
            hi = min(cfg.spinup_steps + cfg.output_steps - first, world.chunk_steps)
            bar.update(1)
            if hi <= lo:
                continue
            fields = {name: np.asarray(frames[name][lo:hi]) for name in OUTPUT_VARIABLES}
            idx = np.arange(first + lo, first + hi) - cfg.spinup_steps
            times = start + idx * step_td
            _check_chunk(fields, times, world.lat)
            if cfg.diurnal_cycle:
                fields["t2m"] = fields["t2m"] + _diurnal_anomaly(
                    times, world.lat, world.lon, world.land
                )
            ds = _chunk_dataset(fields, times, world)
            if written == 0:
                ds.attrs.update(_global_attrs(cfg, world))
                ds.attrs["stratocast_complete"] = False
                encoding = {
                    v: {"chunks": (world.chunk_steps, world.lat.size, world.lon.size)}
                    for v in OUTPUT_VARIABLES
                }
                ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False, encoding=encoding)
            else:
                ds.drop_vars("orography").to_zarr(
                    path, append_dim="time", zarr_format=3, consolidated=False
                )
            written += hi - lo
    if written != cfg.output_steps:
        raise TruthGenerationError(
            f"internal error: wrote {written} time steps to {path}, expected {cfg.output_steps}"
        )
    import zarr

    group = zarr.open_group(path, mode="r+", zarr_format=3)
    group.attrs["generation_seconds"] = round(wallclock.perf_counter() - t0, 1)
    group.attrs["stratocast_complete"] = True


def _chunk_dataset(fields: dict[str, np.ndarray], times: np.ndarray, world: _World) -> xr.Dataset:
    data_vars: dict[str, Any] = {}
    for name in OUTPUT_VARIABLES:
        var = get_variable(name)
        data_vars[name] = xr.Variable(
            ("time", "lat", "lon"),
            fields[name].astype(np.float32),
            attrs={
                "units": var.units,
                "standard_name": var.standard_name,
                "long_name": var.description,
            },
        )
    oro = get_variable("orography")
    data_vars["orography"] = xr.Variable(
        ("lat", "lon"),
        world.orography_m,
        attrs={"units": oro.units, "standard_name": oro.standard_name, "long_name": "orography"},
    )
    coords = {
        "time": xr.Variable("time", times.astype("datetime64[ns]")),
        "lat": xr.Variable(
            "lat", world.lat, attrs={"units": "degrees_north", "standard_name": "latitude"}
        ),
        "lon": xr.Variable(
            "lon", world.lon, attrs={"units": "degrees_east", "standard_name": "longitude"}
        ),
    }
    return xr.Dataset(data_vars, coords=coords)


def _global_attrs(cfg: TruthConfig, world: _World) -> dict[str, Any]:
    import dinosaur

    return {
        "title": "stratocast built-in world: simulated truth",
        "simulator": (
            f"dinosaur {getattr(dinosaur, '__version__', '?')} dry primitive equations, sigma "
            "coordinates, Held-Suarez (1994) forcing"
            + (
                " with seasonal cycle (max heating at 15° sin(2π(doy-80)/365))"
                if cfg.seasonal_cycle
                else ""
            )
        ),
        "resolution": f"{cfg.resolution} Gaussian grid {world.lat.size}x{world.lon.size}",
        "levels": f"{cfg.levels} equidistant sigma levels",
        "timestep_minutes": cfg.timestep_minutes,
        "spinup": f"{cfg.spinup_days} days from rest plus a 50 hPa surface-pressure perturbation",
        "orography_source": (
            "airportsdata mean airport elevation per cell, spectrally smoothed"
            if cfg.orography
            else "none (flat)"
        ),
        "near_surface": (
            "t2m: lowest-level T moved to 2 m with 6.5 K/km; u10/v10: lowest-level wind x "
            f"log-law factor (z0={_Z0} m); msl: surface pressure reduced with the standard "
            "lapse-rate formula using t2m and orography"
            + ("; t2m includes an imposed diurnal cycle" if cfg.diurnal_cycle else "")
        ),
        "config": cfg.model_dump_json(),
        "config_hash": config_hash(cfg),
        "generator_version": GENERATOR_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
