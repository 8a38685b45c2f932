"""Satellite products turned into located, timed values (gridded, not station reports)."""

from stratocast.satellite.geostationary import geos_crs, pixel_lonlat, read_crr, read_crr_files

__all__ = ["geos_crs", "pixel_lonlat", "read_crr", "read_crr_files"]
