"""Radar beam geometry (4/3 effective-earth-radius model) and gate → lat/lon gridding.

Geometry follows Doviak & Zrnić (1993, eqs. 2.28b/c), the model Py-ART, wradlib and xradar
use: with effective radius ``Re = 4/3 · R``, a gate at slant range ``r`` and elevation ``θ``
is at height ``h = sqrt(r² + (Re+H)² + 2 r (Re+H) sin θ) − Re`` (``H`` the antenna altitude)
and ground arc distance ``s = Re · asin(r cos θ / (Re + h))`` from the radar. The point at
``s`` along the azimuth is then found on the WGS84 ellipsoid (geodesic forward problem), as
xradar's azimuthal-equidistant projection does: a sphere of 6371 km would misplace far gates
by about a kilometre, i.e. a grid cell.

Gridding averages gate values in linear reflectivity ``Z = 10^(dBZ/10)`` (mm⁶ m⁻³): averaging
dBZ directly would bias strong, small cores low. Each gate is binned by its centre; cells no
valid gate falls in stay NaN. At long range the beams are wider than a 0.01° cell, so the far
field of a fine grid is speckled with empty cells: that is honest (no data there at this
resolution), not filled in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyproj
import xarray as xr

FloatArray = npt.NDArray[np.float64]

EARTH_RADIUS_M = 6371000.0
EFFECTIVE_RADIUS_FRACTION = 4.0 / 3.0
_GEOD = pyproj.Geod(ellps="WGS84")


@dataclass(frozen=True)
class Sweep:
    """One plan-position sweep of reflectivity, as read from a file (see :mod:`.reader`)."""

    source: str  # file path, for messages and provenance
    site: str  # instrument name / station id, "" if the file has none
    latitude: float  # degrees north
    longitude: float  # degrees east, as in the file (-180..180)
    altitude: float  # antenna altitude above sea level, m
    time: np.datetime64  # sweep start (first ray)
    fixed_angle: float  # nominal elevation, degrees
    azimuth: FloatArray  # (n_ray,) degrees clockwise from north
    elevation: FloatArray  # (n_ray,) degrees
    range: FloatArray  # (n_gate,) slant range to gate centre, m
    dbz: FloatArray  # (n_ray, n_gate) dBZ, NaN where the gate has no value
    site_source: str = "volume"  # where the location came from: volume, caller or table


def beam_height_and_distance(
    slant_range: FloatArray, elevation_deg: FloatArray, site_altitude: float
) -> tuple[FloatArray, FloatArray]:
    """Height above sea level (m) and ground arc distance (m) of gates (4/3-earth model)."""
    re = EARTH_RADIUS_M * EFFECTIVE_RADIUS_FRACTION
    theta = np.deg2rad(elevation_deg)
    sr = re + site_altitude
    height = np.sqrt(slant_range**2 + sr**2 + 2.0 * slant_range * sr * np.sin(theta)) - re
    distance = re * np.arcsin(slant_range * np.cos(theta) / (re + height))
    return height, distance


def gate_lat_lon(sweep: Sweep) -> tuple[FloatArray, FloatArray]:
    """Latitude and longitude (-180..180) of every gate centre, each shaped (n_ray, n_gate)."""
    rng = sweep.range[np.newaxis, :]
    elev = sweep.elevation[:, np.newaxis]
    _, distance = beam_height_and_distance(rng, elev, sweep.altitude)
    azimuth = np.broadcast_to(sweep.azimuth[:, np.newaxis], distance.shape)
    lon, lat, _ = _GEOD.fwd(
        np.full(distance.size, sweep.longitude),
        np.full(distance.size, sweep.latitude),
        azimuth.ravel(),
        distance.ravel(),
    )
    shape = distance.shape
    return np.asarray(lat, dtype=np.float64).reshape(shape), np.asarray(
        lon, dtype=np.float64
    ).reshape(shape)


def grid_sweep(sweep: Sweep, spacing: float = 0.01) -> xr.Dataset:
    """Average a sweep onto a regular lat/lon grid of ``spacing`` degrees covering its range.

    Cell centres sit on multiples of ``spacing`` (so grids of neighbouring radars line up);
    ``lat`` ascends, ``lon`` is in ``[0, 360)`` ascending. Returns ``dbz`` (time, lat, lon) and
    ``gate_count``, the number of valid gates averaged into each cell (the weight needed to
    combine cells or radars without bias).
    """
    if not spacing > 0:
        raise ValueError(f"grid spacing must be positive, got {spacing!r}")
    lat, lon = gate_lat_lon(sweep)
    # Unwrap around the radar so the grid is one contiguous block even across ±180.
    lon = sweep.longitude + (lon - sweep.longitude + 180.0) % 360.0 - 180.0
    ilat = np.rint(lat / spacing).astype(np.int64)
    ilon = np.rint(lon / spacing).astype(np.int64)
    lat0, lon0 = int(ilat.min()), int(ilon.min())
    nlat, nlon = int(ilat.max()) - lat0 + 1, int(ilon.max()) - lon0 + 1
    valid = np.isfinite(sweep.dbz)
    cell = (ilat[valid] - lat0) * nlon + (ilon[valid] - lon0)
    linear_z = 10.0 ** (sweep.dbz[valid] / 10.0)
    count = np.bincount(cell, minlength=nlat * nlon)
    total = np.bincount(cell, weights=linear_z, minlength=nlat * nlon)
    with np.errstate(divide="ignore", invalid="ignore"):
        dbz = np.where(count > 0, 10.0 * np.log10(total / np.maximum(count, 1)), np.nan)
    # Rounded so centres print and compare as the multiples of ``spacing`` they are.
    lats = np.round(np.arange(lat0, lat0 + nlat) * spacing, 10)
    lons = np.round(np.arange(lon0, lon0 + nlon) * spacing, 10)
    return _dataset(sweep, spacing, lats, lons, dbz.reshape(nlat, nlon), count.reshape(nlat, nlon))


def _dataset(
    sweep: Sweep,
    spacing: float,
    lats: FloatArray,
    lons: FloatArray,
    dbz: FloatArray,
    count: npt.NDArray[np.int64],
) -> xr.Dataset:
    lon360 = np.mod(lons, 360.0)
    # 360 - tiny rounds to 360.0 in float; fold it back so lon stays in [0, 360)
    lon360[lon360 >= 360.0] -= 360.0
    ds = xr.Dataset(
        {
            "dbz": (("time", "lat", "lon"), dbz[np.newaxis]),
            "gate_count": (("time", "lat", "lon"), count.astype(np.int32)[np.newaxis]),
        },
        coords={
            "time": np.array([sweep.time], dtype="datetime64[ns]"),
            "lat": lats,
            "lon": lon360,
        },
    ).sortby(["lat", "lon"])
    ds["lat"].attrs = {"units": "degrees_north", "standard_name": "latitude"}
    ds["lon"].attrs = {"units": "degrees_east", "standard_name": "longitude"}
    ds["time"].attrs = {"long_name": "start time of the sweep"}
    ds["dbz"].attrs = {
        "units": "dBZ",
        "standard_name": "equivalent_reflectivity_factor",
        "long_name": "reflectivity, mean of gates in linear Z",
    }
    ds["gate_count"].attrs = {"units": "1", "long_name": "valid radar gates averaged in cell"}
    ds.attrs = {
        "radar_site": sweep.site,
        "radar_latitude": sweep.latitude,
        "radar_longitude": sweep.longitude,
        "radar_altitude": sweep.altitude,
        "radar_site_source": sweep.site_source,
        "elevation_angle": sweep.fixed_angle,
        "grid_spacing_deg": spacing,
        "beam_model": "4/3 effective earth radius, gate centres, WGS84 geodesic",
        "source": sweep.source,
    }
    return ds
