"""Weather radar volumes → lowest-sweep reflectivity on a regular lat/lon grid."""

from stratocast.radar.grid import Sweep, beam_height_and_distance, gate_lat_lon, grid_sweep
from stratocast.radar.reader import RadarFileError, read_lowest_sweep, read_reflectivity
from stratocast.radar.sites import RadarSite, nexrad_site

__all__ = [
    "RadarFileError",
    "RadarSite",
    "Sweep",
    "beam_height_and_distance",
    "gate_lat_lon",
    "grid_sweep",
    "nexrad_site",
    "read_lowest_sweep",
    "read_reflectivity",
]
