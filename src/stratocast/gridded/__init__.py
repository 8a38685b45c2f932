"""Gridded inputs (GRIB1/GRIB2, NetCDF, Zarr) as canonical fields on the training grid."""

from stratocast.gridded.reader import GriddedFileError, open_gridded
from stratocast.gridded.regrid import regrid

__all__ = ["GriddedFileError", "open_gridded", "regrid"]
