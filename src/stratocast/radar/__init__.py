"""Weather radar volumes → lowest-sweep reflectivity on a regular lat/lon grid."""

from stratocast.radar.grid import Sweep, beam_height_and_distance, gate_lat_lon, grid_sweep
from stratocast.radar.reader import RadarFileError, read_lowest_sweep, read_reflectivity

__all__ = [
    "RadarFileError",
    "Sweep",
    "beam_height_and_distance",
    "gate_lat_lon",
    "grid_sweep",
    "read_lowest_sweep",
    "read_reflectivity",
]
