"""Regridder (xarray-regrid underneath) against independent references.

* conservative: an exact-overlap implementation written here (the one the product used before
  it switched to the library). On a sphere a lat/lon cell's area is ``R² Δλ Δ(sin φ)``, so the
  overlap of a target and a source cell is the product of their lon overlap (periodic) and
  their ``sin φ`` overlap; the weight matrix is separable.
* bilinear: :class:`scipy.interpolate.RegularGridInterpolator` on the source padded with one
  wrapped column on each side.

Real fields come from /work/shared/data (skipped when absent), regridded to the demo training
grid: T21, 32 × 64, either uniform in latitude (5.625°) or at the Gaussian latitudes.

Tolerance of library vs exact conservative, derived. Both are, per target cell, convex
combinations of the same valid source cells with the same lon weights; only the latitude
weights differ. The library weights a source row by ``overlap_deg × (whole-row band area)``,
the reference by the exact band area of the overlapped part, so with ``w`` the reference
weights their ratio is ``r_j = mean cos φ over the row / mean cos φ over the overlap``: 1 for
rows wholly inside the target cell, within ``[1/(1+ε_j), 1+ε_j]`` for a row split by a target
edge (``ε_j = max cos / min cos − 1`` over the row) and 0 for a row centred on a pole (zero
band area in the library). With ``S = Σ w_j |r_j − 1|`` (bounded by ``ε_j`` and 1 as said),
``|lib − ref| = |Σ w_j (r_j/R − 1)(x_j − ref)| ≤ 2S/(1 − S) · (max x − min x)`` over the cell's
support, since ``|R − 1| ≤ S``. The tests assert that per-cell bound; the global mean of the
library result then differs from the source's by at most the area-weighted mean of the bound.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy.interpolate import RegularGridInterpolator

from stratocast.gridded import open_gridded, regrid

DATA = Path("/work/shared/data")
GRIB = DATA / "grib"
NC = DATA / "netcdf" / "era5_1995-07-14T12.nc"
needs_grib = pytest.mark.skipif(not GRIB.is_dir(), reason="shared GRIB data absent")
needs_nc = pytest.mark.skipif(not NC.exists(), reason="shared NetCDF data absent")

# T21 training grid, 32 x 64: uniform latitudes (the cells tile the sphere) and Gaussian ones
T21_LON = (360.0 / 64) * np.arange(64)
T21_UNIFORM = -90.0 + 180.0 / 64 + (180.0 / 32) * np.arange(32)
T21_GAUSS = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(32)[0]))

# (file, canonical variable, selection) — global fields, poles included, some with NaN
REAL_FIELDS = [
    ("gfs.t12z.pgrbf120.2p5deg.grib2", "z500", {}),
    ("gfs.t12z.pgrbf120.2p5deg.grib2", "t2m", {}),
    ("regular_ll_msl.grib", "msl", {}),
    ("era5-levels-members.grib", "t850", {"member": 3}),
    ("fields_with_missing_values.grib", "t2m", {}),
]


# ---------------------------------------------------------------------------- references


def _edges(c: np.ndarray) -> np.ndarray:
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _lat_edges(lat: np.ndarray) -> np.ndarray:
    return np.clip(_edges(lat), -90.0, 90.0)


def _lon_edges(lon: np.ndarray) -> np.ndarray:
    if abs(lon[-1] - lon[0] + (lon[-1] - lon[-2]) - 360.0) < 1e-6:
        seam = 0.5 * (lon[-1] + lon[0] + 360.0)  # halfway between last and first + 360
        return np.concatenate([[seam - 360.0], 0.5 * (lon[1:] + lon[:-1]), [seam]])
    return _edges(lon)


def _overlap(t_edges: np.ndarray, s_edges: np.ndarray, shifts: tuple[float, ...]) -> np.ndarray:
    """(n_target, n_source) overlap length of each interval pair, source shifted by k."""
    ta, tb = t_edges[:-1, None], t_edges[1:, None]
    total = np.zeros((t_edges.size - 1, s_edges.size - 1))
    for k in shifts:
        sa, sb = s_edges[None, :-1] + k, s_edges[None, 1:] + k
        total += np.clip(np.minimum(tb, sb) - np.maximum(ta, sa), 0.0, None)
    return total


def _exact_weights(
    slat: np.ndarray, slon: np.ndarray, tlat: np.ndarray, tlon: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    sin_s, sin_t = (np.sin(np.deg2rad(_lat_edges(x))) for x in (slat, tlat))
    w_lat = _overlap(sin_t, sin_s, (0.0,))
    w_lon = _overlap(_lon_edges(tlon), _lon_edges(slon), (-360.0, 0.0, 360.0))
    return w_lat, w_lon


def _exact_conservative(
    x: np.ndarray, slat: np.ndarray, slon: np.ndarray, tlat: np.ndarray, tlon: np.ndarray
) -> np.ndarray:
    """Mean of the valid source over each target cell, exact sin-band areas; NaN if none."""
    w_lat, w_lon = _exact_weights(slat, slon, tlat, tlon)
    valid = ~np.isnan(x)
    num = w_lat @ np.where(valid, x, 0.0) @ w_lon.T
    den = w_lat @ valid.astype(np.float64) @ w_lon.T
    return np.where(den > 0.0, num / np.where(den > 0.0, den, 1.0), np.nan)


def _latitude_bound(
    x: np.ndarray, slat: np.ndarray, slon: np.ndarray, tlat: np.ndarray, tlon: np.ndarray
) -> np.ndarray:
    """Per target cell, 2S/(1-S) × (range of valid source values in its support)."""
    w_lat, w_lon = _exact_weights(slat, slon, tlat, tlon)
    e = _lat_edges(slat)
    cos_hi = np.cos(np.deg2rad(np.minimum(np.abs(e[:-1]), np.abs(e[1:]))))
    cos_hi[np.sign(e[:-1]) != np.sign(e[1:])] = 1.0  # a row straddling the equator
    cos_lo = np.cos(np.deg2rad(np.maximum(np.abs(e[:-1]), np.abs(e[1:]))))
    with np.errstate(divide="ignore"):
        eps = np.where(cos_lo > 0.0, cos_hi / cos_lo - 1.0, np.inf)
    full = np.diff(np.sin(np.deg2rad(e)))[None, :]
    split = (w_lat > 0.0) & (w_lat < full * (1.0 - 1e-12))
    rel = np.where(split, eps[None, :], 0.0)
    rel[:, np.abs(slat) == 90.0] = 1.0  # pole rows: zero weight in the library
    rel = np.minimum(rel, 1e6)
    valid = (~np.isnan(x)).astype(np.float64)
    den = w_lat @ valid @ w_lon.T
    s = ((w_lat * rel) @ valid @ w_lon.T) / np.where(den > 0.0, den, 1.0)
    spread = np.zeros(s.shape)  # cells without valid support are NaN in both results
    rows, cols = w_lat > 0.0, w_lon > 0.0
    hi, lo = np.where(np.isnan(x), -np.inf, x), np.where(np.isnan(x), np.inf, x)
    for i in np.flatnonzero(rows.any(axis=1)):
        band_hi, band_lo = hi[rows[i]], lo[rows[i]]
        for j in np.flatnonzero(cols.any(axis=1)):
            spread[i, j] = max(band_hi[:, cols[j]].max() - band_lo[:, cols[j]].min(), 0.0)
    factor = np.where(s < 1.0, 2.0 * s / np.maximum(1.0 - s, 1e-300), np.inf)
    with np.errstate(invalid="ignore"):  # inf × 0 where the support holds equal values
        return np.where(spread > 0.0, factor * spread, 0.0)


def _area_mean(values: np.ndarray, lat: np.ndarray) -> float:
    """Exact-area mean on a grid whose cells tile the sphere (uniform lon)."""
    w = np.diff(np.sin(np.deg2rad(_lat_edges(lat))))
    return float((np.nanmean(values, axis=-1) * w).sum() / w.sum())


# ---------------------------------------------------------------------------- helpers


def _global(nlat: int, nlon: int, values: np.ndarray) -> xr.Dataset:
    dlat, dlon = 180.0 / nlat, 360.0 / nlon
    lat = -90.0 + dlat / 2 + dlat * np.arange(nlat)
    lon = dlon * np.arange(nlon)
    return xr.Dataset(
        {"f": (("time", "lat", "lon"), values[None], {"units": "K"})},
        coords={"time": [np.datetime64("2020-01-01", "ns")], "lat": lat, "lon": lon},
        attrs={"source": "test"},
    )


def _real(name: str, var: str, pick: dict[str, int]) -> xr.Dataset:
    ds = open_gridded(GRIB / name)[[var]].isel({"time": 0, **pick})
    return ds.expand_dims("time")


def _check_conservative(src: xr.Dataset, var: str, tlat: np.ndarray, tlon: np.ndarray) -> None:
    x = src[var].isel(time=0).values.astype(np.float64)
    slat, slon = src["lat"].values, src["lon"].values
    got = regrid(src, tlat, tlon, "conservative")[var].isel(time=0).values
    ref = _exact_conservative(x, slat, slon, tlat, tlon)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    bound = _latitude_bound(x, slat, slon, tlat, tlon) + 1e-12 * np.nanmax(np.abs(x))
    ok = np.isnan(ref) | (np.abs(got - ref) <= bound)
    assert ok.all(), np.argwhere(~ok)[:5]


# ---------------------------------------------------------------------------- conservative


@needs_grib
@pytest.mark.parametrize(("name", "var", "pick"), REAL_FIELDS)
@pytest.mark.parametrize("tlat", [T21_UNIFORM, T21_GAUSS], ids=["uniform", "gauss"])
def test_conservative_real_field_within_derived_bound(
    name: str, var: str, pick: dict[str, int], tlat: np.ndarray
) -> None:
    _check_conservative(_real(name, var, pick), var, tlat, T21_LON)


@needs_grib
@pytest.mark.parametrize(("name", "var", "pick"), REAL_FIELDS[:4])  # no NaN: whole sphere
def test_conservative_real_field_global_mean(name: str, var: str, pick: dict[str, int]) -> None:
    src = _real(name, var, pick)
    x = src[var].isel(time=0).values
    slat, slon = src["lat"].values, src["lon"].values
    got = regrid(src, T21_UNIFORM, T21_LON, "conservative")[var].isel(time=0).values
    ref = _exact_conservative(x, slat, slon, T21_UNIFORM, T21_LON)
    mean_src = _area_mean(x, slat)
    # the exact reference preserves the mean to rounding; the library within its bound
    assert _area_mean(ref, T21_UNIFORM) == pytest.approx(mean_src, rel=1e-12)
    bound = _latitude_bound(x, slat, slon, T21_UNIFORM, T21_LON)
    allowed = _area_mean(bound, T21_UNIFORM) + 1e-12 * abs(mean_src)
    assert abs(_area_mean(got, T21_UNIFORM) - mean_src) <= allowed
    # stated tolerance, tighter than the bound (≤ 1e-3): observed ≤ 2.2e-5 on these fields
    assert abs(_area_mean(got, T21_UNIFORM) - mean_src) <= 1e-4 * abs(mean_src)


@pytest.mark.parametrize(
    ("src_shape", "dst"), [((90, 180), (36, 72)), ((36, 72), (73, 144)), ((61, 120), (32, 64))]
)
def test_conservative_random_field_and_constant(
    src_shape: tuple[int, int], dst: tuple[int, int]
) -> None:
    rng = np.random.default_rng(0)
    src = _global(*src_shape, 250.0 + 50.0 * rng.random(src_shape))
    dlat = 180.0 / dst[0]
    tlat = -90.0 + dlat / 2 + dlat * np.arange(dst[0])
    tlon = (360.0 / dst[1]) * np.arange(dst[1]) + 1.3  # offset: cells straddle the seam
    _check_conservative(src, "f", tlat, tlon)
    const = regrid(_global(*src_shape, np.full(src_shape, 7.0)), tlat, tlon, "conservative")
    np.testing.assert_allclose(const["f"].values, 7.0, rtol=1e-12)


def test_conservative_ignores_missing_source_cells() -> None:
    values = np.full((18, 36), 2.0)
    values[0, 0] = np.nan
    out = regrid(_global(18, 36, values), [-85.0, 0.0], [0.0, 180.0], "conservative")
    np.testing.assert_allclose(out["f"].values, 2.0)


def test_conservative_keeps_attributes_and_passes_other_variables() -> None:
    src = _global(18, 36, np.ones((18, 36)))
    src["lat"].attrs["units"] = "degrees_north"
    src["level"] = xr.DataArray([500.0], dims="lev")
    out = regrid(src, T21_UNIFORM, T21_LON, "conservative")
    assert out["f"].attrs == {"units": "K"} and out.attrs == {"source": "test"}
    assert out["lat"].attrs == {"units": "degrees_north"}
    assert out["level"].values.tolist() == [500.0]
    np.testing.assert_array_equal(out["lon"].values, T21_LON)


# ---------------------------------------------------------------------------- bilinear


def _padded_interpolator(
    x: np.ndarray, lat: np.ndarray, lon: np.ndarray
) -> RegularGridInterpolator:
    padded = np.concatenate([x[:, -1:], x, x[:, :1]], axis=1)
    plon = np.concatenate([[lon[-1] - 360.0], lon, [lon[0] + 360.0]])
    return RegularGridInterpolator((lat, plon), padded, bounds_error=False, fill_value=np.nan)


@needs_grib
@pytest.mark.parametrize(("name", "var", "pick"), REAL_FIELDS)
@pytest.mark.parametrize("tlat", [T21_UNIFORM, T21_GAUSS], ids=["uniform", "gauss"])
def test_bilinear_real_field_matches_scipy(
    name: str, var: str, pick: dict[str, int], tlat: np.ndarray
) -> None:
    src = _real(name, var, pick)
    x = src[var].isel(time=0).values
    tlon = T21_LON + 1.3  # off the source meridians, and some targets past the last one
    got = regrid(src, tlat, tlon, "bilinear")[var].isel(time=0).values
    interp = _padded_interpolator(x, src["lat"].values, src["lon"].values)
    glat, glon = np.meshgrid(tlat, tlon, indexing="ij")
    np.testing.assert_allclose(got, interp((glat, glon)), rtol=1e-6, equal_nan=True)


@needs_nc
def test_bilinear_and_conservative_regional_source() -> None:
    src = open_gridded(NC)[["t2m"]]  # 24..50 N, 235..294 E
    x = src["t2m"].isel(time=0).values
    slat, slon = src["lat"].values, src["lon"].values
    inside = np.logical_and(slon[0] <= T21_LON, slon[-1] >= T21_LON)
    rows = np.logical_and(slat[0] <= T21_UNIFORM, slat[-1] >= T21_UNIFORM)
    lin = regrid(src, T21_UNIFORM, T21_LON, "bilinear")["t2m"].isel(time=0).values
    interp = RegularGridInterpolator((slat, slon), x, bounds_error=False, fill_value=np.nan)
    glat, glon = np.meshgrid(T21_UNIFORM, T21_LON, indexing="ij")
    np.testing.assert_allclose(lin, interp((glat, glon)), rtol=1e-6, equal_nan=True)
    assert np.isnan(lin[~rows]).all() and np.isnan(lin[:, ~inside]).all()
    con = regrid(src, T21_UNIFORM, T21_LON, "conservative")["t2m"].isel(time=0).values
    mask = rows[:, None] & inside[None, :]
    assert np.isnan(con[~mask]).all() and not np.isnan(con[mask]).any()
    ref = _exact_conservative(x, slat, slon, T21_UNIFORM, T21_LON)
    bound = _latitude_bound(x, slat, slon, T21_UNIFORM, T21_LON)
    assert (np.abs(con - ref)[mask] <= bound[mask] + 1e-9).all()


def test_bilinear_exact_on_linear_in_lat() -> None:
    lat_values = 3.0 + 2.0 * (-85.0 + 10.0 * np.arange(18))
    src = _global(18, 36, np.broadcast_to(lat_values[:, None], (18, 36)).copy())
    tlat = np.linspace(-80.0, 80.0, 33)
    tlon = np.linspace(0.0, 357.5, 144)
    out = regrid(src, tlat, tlon, "bilinear")
    expected = np.broadcast_to((3.0 + 2.0 * tlat)[:, None], (33, 144))
    np.testing.assert_allclose(out["f"].isel(time=0).values, expected, rtol=1e-12)
    assert out["f"].attrs == {"units": "K"}


def test_bilinear_periodic_seam() -> None:
    lon = 10.0 * np.arange(36)
    values = np.broadcast_to(lon[None, :], (18, 36)).copy()  # 0 .. 350, jumps back at 360
    src = _global(18, 36, values)
    out = regrid(src, [-5.0, 5.0], [0.0, 5.0, 355.0, 359.0], "bilinear")
    row = out["f"].isel(time=0, lat=0).values
    # between 350 (value 350) and 360≡0 (value 0): linear across the seam, not NaN
    np.testing.assert_allclose(row, [0.0, 5.0, 175.0, 35.0])


@pytest.mark.parametrize("method", ["bilinear", "conservative"])
def test_regional_source_across_greenwich_leaves_gap_empty(method: str) -> None:
    lon = np.array([0.0, 10.0, 20.0, 340.0, 350.0])
    src = xr.Dataset(
        {"f": (("time", "lat", "lon"), np.ones((1, 2, 5)))},
        coords={"time": [np.datetime64("2020-01-01", "ns")], "lat": [0.0, 10.0], "lon": lon},
    )
    tlon = [5.0, 180.0, 355.0, 359.0]
    out = regrid(src, [2.0, 5.0], tlon, method)["f"].isel(time=0, lat=1)  # type: ignore[arg-type]
    np.testing.assert_array_equal(out.values, [1.0, np.nan, 1.0, 1.0])
    np.testing.assert_array_equal(out["lon"].values, tlon)


def test_regrid_rejects_bad_target() -> None:
    src = _global(18, 36, np.zeros((18, 36)))
    with pytest.raises(ValueError, match="target_lon"):
        regrid(src, [0.0, 10.0], [-10.0, 0.0])
    with pytest.raises(ValueError, match="method"):
        regrid(src, [0.0, 10.0], [0.0, 10.0], "nearest")  # type: ignore[arg-type]
