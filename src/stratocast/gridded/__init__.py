"""Gridded inputs (GRIB1/GRIB2, NetCDF, Zarr) as canonical fields on the training grid."""

from stratocast.gridded.errors import GriddedFileError
from stratocast.gridded.lexicon import LevelTarget, LexiconError, Target
from stratocast.gridded.reader import open_gridded
from stratocast.gridded.regrid import regrid
from stratocast.gridded.skipped import skipped_fields
from stratocast.gridded.steps import StepError

__all__ = [
    "GriddedFileError",
    "LevelTarget",
    "LexiconError",
    "StepError",
    "Target",
    "open_gridded",
    "regrid",
    "skipped_fields",
]
