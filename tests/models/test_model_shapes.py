"""The registered obs2grid model on any grid: the conformance suite on regional, global,
pole-row and descending-latitude grids (one of them the real ERA5 sample's), plus large grids
shape-only, the geometry's own rules, and the demo grid's unchanged behaviour."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stratocast.models.base import Geometry, GeometryError, build_model, lon_is_periodic
from stratocast.models.obs2grid.blocks import GridNet, SphereConv
from stratocast.testing.models import Factory, ModelTests, build, inputs, state

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ERA5_NC = DATA / "netcdf" / "era5_1995-07-14T12.nc"
ISD_STATIONS = DATA / "stations" / "isd-history.csv"

SMALL: dict[str, object] = {"hidden": 8, "blocks": 1, "kernel_widths_km": [600.0]}
# GroupNorm in the residual blocks is a domain-wide statistic (every cell sees every cell);
# the longitude-edge check is about padding, so it runs without residual blocks.
NO_BLOCKS: dict[str, object] = {**SMALL, "blocks": 0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small convolutions on a shared 2-core machine: one intra-op thread is ~10× faster
    than two fighting the other processes (measured 0.05 s against 1.9 s a forward)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def obs2grid(options: dict[str, object]) -> Factory:
    return lambda g: build_model("obs2grid", g, options)


def make_geometry(
    lat: np.ndarray, lon: np.ndarray, n_stations: int = 12, seed: int = 0, **kw: object
) -> Geometry:
    """Synthetic orography and stations inside the box: the grids here are about shape."""
    rng = np.random.default_rng(seed)
    h, w = len(lat), len(lon)
    return Geometry(
        lat=lat,
        lon=lon,
        orography=rng.uniform(0.0, 2500.0, (h, w)),
        station_lat=rng.uniform(lat.min(), lat.max(), n_stations),
        station_lon=rng.uniform(lon.min(), lon.max(), n_stations),
        station_elevation=rng.uniform(0.0, 1500.0, n_stations),
        channels=("t2m", "msl", "u10"),
        obs_variables=("t2m", "msl"),
        obs_std=np.array([5.0, 800.0]),
        tendency_scale=np.array([0.3, 0.2, 0.5]),
        **kw,  # type: ignore[arg-type]
    )


def regional_33x49() -> Geometry:
    return make_geometry(np.linspace(30.0, 62.0, 33), np.linspace(-20.0, 28.0, 49))


def global_32x64() -> Geometry:
    return make_geometry(np.linspace(-87.2, 87.2, 32), np.arange(64) * 5.625)


def global_poles(step: float) -> Geometry:
    """Global with pole rows: (180/step + 1) × (360/step), e.g. 121×240 at 1.5°."""
    n_lat, n_lon = round(180 / step) + 1, round(360 / step)
    return make_geometry(np.linspace(-90.0, 90.0, n_lat), np.arange(n_lon) * step)


class TestRegional33x49(ModelTests):
    @pytest.fixture
    def geometry(self) -> Geometry:
        return regional_33x49()

    @pytest.fixture
    def model_factory(self) -> Factory:
        return obs2grid(SMALL)

    @pytest.fixture
    def padding_factory(self) -> Factory:
        return obs2grid(NO_BLOCKS)


class TestRegional33x49Descending(TestRegional33x49):
    @pytest.fixture
    def geometry(self) -> Geometry:
        g = regional_33x49()
        return make_geometry(g.lat[::-1].copy(), g.lon)


class TestGlobal32x64(TestRegional33x49):
    @pytest.fixture
    def geometry(self) -> Geometry:
        return global_32x64()


class TestGlobal121x240Poles(TestRegional33x49):
    @pytest.fixture
    def geometry(self) -> Geometry:
        return global_poles(1.5)


class TestGlobal33x49Odd(TestRegional33x49):
    """Odd sizes on a global grid: the east pad for the stride wraps rather than reflects."""

    @pytest.fixture
    def geometry(self) -> Geometry:
        return make_geometry(np.linspace(-80.0, 80.0, 33), np.arange(49) * 360.0 / 49)


class TestRealEra5Box(TestRegional33x49):
    """The real ERA5 sample's grid: 105×237 at 0.25°, latitude descending (50°N → 24°N), a
    regional box over North America; stations are the first ISD stations inside it."""

    @pytest.fixture
    def geometry(self) -> Geometry:
        if not ERA5_NC.is_file() or not ISD_STATIONS.is_file():
            pytest.skip(f"real sample data absent ({ERA5_NC.parent.parent})")
        import netCDF4
        import pandas as pd

        with netCDF4.Dataset(ERA5_NC) as ds:
            lat = np.asarray(ds["latitude"][:], dtype=np.float64)
            lon = np.asarray(ds["longitude"][:], dtype=np.float64)
        st = pd.read_csv(ISD_STATIONS, usecols=["LAT", "LON", "ELEV(M)"]).dropna()
        inside = st[st.LAT.between(lat.min(), lat.max()) & st.LON.between(lon.min(), lon.max())]
        inside = inside[(inside.LAT != 0) | (inside.LON != 0)].head(40)
        assert len(inside) == 40
        rng = np.random.default_rng(0)
        return Geometry(
            lat=lat,
            lon=lon,
            orography=rng.uniform(0.0, 2500.0, (len(lat), len(lon))),
            station_lat=inside.LAT.to_numpy(),
            station_lon=inside.LON.to_numpy(),
            station_elevation=inside["ELEV(M)"].clip(-400, 9000).to_numpy(),
            channels=("t2m", "u10", "v10"),
            obs_variables=("t2m",),
            obs_std=np.array([5.0]),
            tendency_scale=np.array([0.3, 0.5, 0.5]),
        )

    def test_era5_grid_read_as_regional_descending(self, geometry: Geometry) -> None:
        assert geometry.lat_descending and not geometry.lon_periodic


# --- large grids: shape only, one pass, memory measured ---------------------------------------

TINY: dict[str, object] = {"hidden": 4, "blocks": 1, "kernel_widths_km": [600.0]}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


@pytest.mark.parametrize(
    ("step", "backward"),
    [
        pytest.param(0.5, True, id="361x720-fwd-bwd"),
        pytest.param(0.25, True, id="721x1440-fwd-bwd"),
    ],
)
def test_large_global_grid_with_pole_rows(step: float, backward: bool) -> None:
    g = global_poles(step)
    assert g.lon_periodic
    model = build(obs2grid(TINY), g)
    obs, mask, clock = inputs(g)
    obs, mask, clock = obs[:1], mask[:1], clock[:1]
    before = _rss_mb()
    with torch.set_grad_enabled(backward):
        out = model.step(model.analyse(obs, mask, None, clock), clock)
        if backward:
            out.square().mean().backward()
            assert all(p.grad is not None for p in model.parameters())
    assert tuple(out.shape) == (1, 3, len(g.lat), len(g.lon))
    assert torch.isfinite(out).all()
    print(
        f"{len(g.lat)}x{len(g.lon)} backward={backward}: peak RSS {_rss_mb():.0f} MB "
        f"(was {before:.0f} MB before the pass)"
    )


# --- the geometry's rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lon", "periodic"),
    [
        (np.arange(64) * 5.625, True),
        (np.arange(-180.0, 180.0, 1.5), True),
        (np.concatenate([np.arange(180.0, 360.0, 2.5), np.arange(0.0, 180.0, 2.5)]), True),
        (np.arange(0.0, 360.1, 1.5), False),  # a duplicated 360° column: 361.5° of cells
        (np.arange(49) * 360.0 / 49, True),
        (np.linspace(-20.0, 28.0, 49), False),
        (np.array([170.0, 175.0, 180.0, -175.0, -170.0]), False),  # a box across the date line
        (np.array([10.0]), False),
    ],
)
def test_lon_periodicity_is_derived_from_lon(lon: np.ndarray, periodic: bool) -> None:
    assert lon_is_periodic(lon) is periodic


def test_periodicity_override_and_checkpoint_form() -> None:
    g = global_32x64()
    assert g.lon_periodic
    box = make_geometry(g.lat, g.lon, periodic_lon=False)
    assert not box.lon_periodic
    # a checkpoint reloads every field through np.asarray
    assert make_geometry(g.lat, g.lon, periodic_lon=np.asarray(False)).periodic_lon is False
    assert make_geometry(g.lat, g.lon, periodic_lon=np.asarray(None)).lon_periodic
    model = build(obs2grid(NO_BLOCKS), box)
    x = state(box)
    y = x.clone()
    y[..., -1] += 1.0
    _, _, clock = inputs(box)
    with torch.no_grad():
        assert torch.equal(model.step(x, clock)[..., 0], model.step(y, clock)[..., 0])


def test_geometry_rejects_bad_grids() -> None:
    g = regional_33x49()
    lat = g.lat.copy()
    lat[10] = lat[9]
    with pytest.raises(GeometryError, match=r"turns at index 10"):
        make_geometry(lat, g.lon)
    with pytest.raises(GeometryError, match=r"orography has shape \(33, 48\), expected"):
        Geometry(**{**g.__dict__, "orography": np.zeros((33, 48))})
    with pytest.raises(GeometryError, match="periodic_lon"):
        make_geometry(g.lat, g.lon, periodic_lon="yes")


def test_regional_conv_reflects_and_global_conv_wraps() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 7)
    for periodic, mode in ((True, "circular"), (False, "reflect")):
        conv = SphereConv(2, 3, periodic_lon=periodic)
        want = conv.conv(F.pad(F.pad(x, (1, 1, 0, 0), mode=mode), (0, 0, 1, 1), mode="replicate"))
        assert torch.equal(conv(x), want)


@pytest.mark.parametrize(("h", "w"), [(33, 49), (1, 1), (2, 3), (7, 64)])
@pytest.mark.parametrize("periodic", [True, False])
def test_gridnet_any_size(h: int, w: int, periodic: bool) -> None:
    net = GridNet(3, 2, hidden=4, blocks=1, periodic_lon=periodic)
    assert net(torch.randn(2, 3, h, w)).shape == (2, 2, h, w)


# --- the demo grid: unchanged behaviour ----------------------------------------------------


def _reference_conv(conv: Any, x: torch.Tensor) -> torch.Tensor:
    """The pre-change SphereConv: always circular in longitude, replicated in latitude."""
    p = conv.pad
    return conv.conv(F.pad(F.pad(x, (p, p, 0, 0), mode="circular"), (0, 0, p, p), "replicate"))


def _reference_gridnet(net: GridNet, x: torch.Tensor) -> torch.Tensor:
    """The pre-change GridNet.forward (even sizes only), written against the same weights."""
    s = F.gelu(_reference_conv(net.stem, x))
    h = net.down(s)
    blk: Any
    for blk in net.blocks:
        r = F.gelu(_reference_conv(blk.conv1, F.gelu(blk.norm(h))))
        h = h + _reference_conv(blk.conv2, r)
    h = net.up(h)
    out: torch.Tensor = net.out(F.gelu(_reference_conv(net.head, torch.cat([s, h], dim=1))))
    return out


def test_demo_grid_takes_the_unchanged_path(tiny_shards: tuple[Path, object]) -> None:
    """The demo's own geometry (from its shards) is global and ascending, and its model runs
    exactly the pre-change forward (circular then replicate padding, no stride padding)."""
    from stratocast.loader.dataset import ShardStore
    from stratocast.train.trainer import geometry_from_store

    g = geometry_from_store(ShardStore(tiny_shards[0]))
    assert g.lon_periodic and not g.lat_descending
    options: dict[str, object] = {"hidden": 8, "blocks": 2, "kernel_widths_km": [800.0]}
    model = build(obs2grid(options), g)
    assert model.flip_lat is False
    obs, mask, clock = inputs(g)
    with torch.no_grad():
        a = model.analyse(obs, mask, None, clock)
        s = model.step(a, clock)
        static = model._static(clock)
        want = model.tendency_scale * _reference_gridnet(
            model.step_net, torch.cat([a, static], dim=1)
        )
    assert torch.equal(s, a + want)
    assert all(m.periodic_lon for m in model.modules() if isinstance(m, SphereConv))


def test_checkpoint_keeps_the_periodicity_override(tmp_path: Path) -> None:
    """A global-looking grid declared regional reloads as regional, same outputs."""
    from stratocast.models.checkpoint import load_checkpoint, save_checkpoint

    g = make_geometry(global_32x64().lat, global_32x64().lon, periodic_lon=False)
    model = build(obs2grid(SMALL), g)
    path = tmp_path / "model.pt"
    n_c, n_v = len(g.channels), len(g.obs_variables)
    stats = {"mean": [0.0] * n_c, "std": [1.0] * n_c, "diff_std": [1.0] * n_c}
    obs_stats = {"mean": [0.0] * n_v, "std": [1.0] * n_v, "diff_std": [1.0] * n_v}
    meta = {"grid_stats": stats, "obs_stats": obs_stats, "time_step_hours": 6, "history": 2}
    save_checkpoint(path, model, "obs2grid", SMALL, g, meta)
    loaded: Any
    loaded, card = load_checkpoint(path)
    g2 = card.geometry
    assert g2.periodic_lon is False and not g2.lon_periodic
    x = state(g)
    _, _, clock = inputs(g)
    with torch.no_grad():
        assert torch.equal(loaded.step(x, clock), model.step(x, clock))
