"""Bilinear weights on grids whose longitudes are written in -180..180 (ERA5 regional boxes,
e.g. the shared NetCDF's -125..-66): points are placed in the grid's own longitude range."""

from __future__ import annotations

import numpy as np

from stratocast.grid.interp import bilinear_weights


def _field(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Linear in lat and lon: bilinear interpolation reproduces it exactly inside cells."""
    return 2.0 * lat[:, None] + 0.5 * lon[None, :]


def test_box_in_minus_180_to_180_interpolates_inside_points() -> None:
    lat = np.arange(20.0, 50.0 + 1e-9, 0.25)
    lon = np.arange(-125.0, -66.0 + 1e-9, 0.25)
    plat = np.array([33.66, 40.1, 25.0])
    plon_east = np.array([-101.82, -75.3, -80.0])  # degrees east, negative
    field = _field(lat, lon)
    for plon in (plon_east, plon_east + 360.0):  # the same points written in 0..360
        w = bilinear_weights(lat, lon, plat, plon)
        assert np.asarray(w.inside).all()
        np.testing.assert_allclose(w.apply(field), 2.0 * plat + 0.5 * plon_east, atol=1e-9)


def test_point_outside_the_box_is_outside() -> None:
    lat = np.arange(20.0, 50.0 + 1e-9, 1.0)
    lon = np.arange(-125.0, -66.0 + 1e-9, 1.0)
    w = bilinear_weights(lat, lon, np.array([40.0, 40.0]), np.array([-100.0, 10.0]))
    inside = np.asarray(w.inside)
    assert inside.tolist() == [True, False]
