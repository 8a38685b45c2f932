"""stratocast: sparse weather observations → trained AI forecast → verified products."""

__version__ = "0.1.0"

# Importing ecCodes before pyproj has broken pyproj on this platform and crashed the process
# at exit. Several stratocast modules import ecCodes and others (radar) pyproj, so every
# stratocast process imports pyproj first when it is installed.
import importlib.util as _importlib_util

if _importlib_util.find_spec("pyproj") is not None:
    import pyproj as _pyproj  # noqa: F401
