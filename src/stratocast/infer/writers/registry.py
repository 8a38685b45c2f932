"""Forecast writers registered by name (the product config's ``outputs`` names them).

Built-in writers are imported lazily, so a Zarr-only product never imports ecCodes, and a
broken optional dependency affects only the format that needs it. Third-party code adds a
format with :func:`register_writer`; :mod:`stratocast.testing.writers` is its conformance suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stratocast.errors import StratocastError
from stratocast.infer.writers.base import ForecastWriter

WriterFactory = Callable[..., ForecastWriter]


def _zarr(**options: Any) -> ForecastWriter:
    from stratocast.infer.writers.zarr_writer import ZarrWriter

    return ZarrWriter(**options)


def _netcdf(**options: Any) -> ForecastWriter:
    from stratocast.infer.writers.netcdf_writer import NetcdfWriter

    return NetcdfWriter(**options)


def _grib2(**options: Any) -> ForecastWriter:
    from stratocast.infer.writers.grib2_writer import Grib2Writer

    return Grib2Writer(**options)


def _points_csv(**options: Any) -> ForecastWriter:
    from stratocast.infer.writers.points_writer import PointsWriter

    return PointsWriter(fmt="csv", **options)


def _points_parquet(**options: Any) -> ForecastWriter:
    from stratocast.infer.writers.points_writer import PointsWriter

    return PointsWriter(fmt="parquet", **options)


_BUILTIN: dict[str, WriterFactory] = {
    "zarr": _zarr,
    "netcdf": _netcdf,
    "grib2": _grib2,
    "points_csv": _points_csv,
    "points_parquet": _points_parquet,
}
_FACTORIES: dict[str, WriterFactory] = {}


class UnknownWriterError(StratocastError, KeyError):
    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0])


class WriterOptionError(StratocastError, TypeError):
    """Options a writer does not take (an unknown or missing one)."""


def register_writer(name: str, factory: WriterFactory, *, replace: bool = False) -> None:
    """Make ``factory(**options)`` available as output format ``name``."""
    # Two plugins, one name: a programming error, not the user's input (stays ValueError).
    if not replace and (name in _FACTORIES or name in _BUILTIN):
        raise ValueError(f"forecast writer {name!r} is already registered; pass replace=True")
    _FACTORIES[name] = factory


def available_writers() -> list[str]:
    return sorted({*_BUILTIN, *_FACTORIES})


def get_writer(name: str, **options: Any) -> ForecastWriter:
    """The writer registered as ``name``, built with its ``options``."""
    factory = _FACTORIES.get(name) or _BUILTIN.get(name)
    if factory is None:
        raise UnknownWriterError(
            f"unknown output format {name!r}; available: {', '.join(available_writers())}. "
            "Register a new one with stratocast.infer.writers.registry.register_writer."
        )
    try:
        return factory(**options)
    except TypeError as err:
        raise WriterOptionError(f"bad options for output format {name!r}: {err}") from None
