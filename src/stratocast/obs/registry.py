"""Observation sources registered by name.

Built-in sources are imported lazily, so asking for ``metar`` never imports ecCodes (whose
import order against pyproj matters on some machines) and a broken optional dependency only
affects the source that needs it. Third-party code adds a source with :func:`register_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stratocast.errors import StratocastError
from stratocast.obs.base import ObsSource

SourceFactory = Callable[..., ObsSource]

_FACTORIES: dict[str, SourceFactory] = {}


def _metar(**options: Any) -> ObsSource:
    from stratocast.obs.sources.metar import MetarSource

    return MetarSource(**options)


def _synop_bufr(**options: Any) -> ObsSource:
    from stratocast.obs.sources.synop_bufr import SynopBufrSource

    return SynopBufrSource(**options)


def _synop_tac(**options: Any) -> ObsSource:
    from stratocast.obs.sources.synop_tac import SynopTacSource

    return SynopTacSource(**options)


def _isd_lite(**options: Any) -> ObsSource:
    from stratocast.obs.sources.isd_lite import IsdLiteSource

    return IsdLiteSource(**options)


def _hirs_bufr(**options: Any) -> ObsSource:
    from stratocast.obs.sources.hirs_bufr import HirsBufrSource

    return HirsBufrSource(**options)


def _temp_bufr(**options: Any) -> ObsSource:
    from stratocast.obs.sources.temp_bufr import TempBufrSource

    return TempBufrSource(**options)


def _aircraft_bufr(**options: Any) -> ObsSource:
    from stratocast.obs.sources.aircraft_bufr import AircraftBufrSource

    return AircraftBufrSource(**options)


def _table(**options: Any) -> ObsSource:
    from stratocast.obs.sources.station_table import TableSource

    return TableSource(**options)


def _cf_dsg(**options: Any) -> ObsSource:
    from stratocast.obs.sources.cf_dsg import CfDsgSource

    return CfDsgSource(**options)


_BUILTIN: dict[str, SourceFactory] = {
    "metar": _metar,
    "synop_bufr": _synop_bufr,
    "synop_tac": _synop_tac,
    "isd_lite": _isd_lite,
    "hirs_bufr": _hirs_bufr,
    "temp_bufr": _temp_bufr,
    "aircraft_bufr": _aircraft_bufr,
    "table": _table,
    "cf_dsg": _cf_dsg,
}


class SourceOptionError(StratocastError, TypeError):
    """A source's ``options`` that its reader does not take (an unknown or missing one)."""


class UnknownSourceError(StratocastError, KeyError):
    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0])


def register_source(name: str, factory: SourceFactory, *, replace: bool = False) -> None:
    """Make ``factory(**options)`` available as source ``name``."""
    # Two plugins, one name: a programming error, not the user's input (stays ValueError).
    if not replace and (name in _FACTORIES or name in _BUILTIN):
        raise ValueError(
            f"observation source {name!r} is already registered; pass replace=True to override"
        )
    _FACTORIES[name] = factory


def available_sources() -> list[str]:
    return sorted({*_BUILTIN, *_FACTORIES})


def get_source(name: str, **options: Any) -> ObsSource:
    """Construct the source registered as ``name`` with its reader ``options``."""
    factory = _FACTORIES.get(name) or _BUILTIN.get(name)
    if factory is None:
        raise UnknownSourceError(
            f"unknown observation source {name!r}; available: {', '.join(available_sources())}. "
            "Register a new one with stratocast.obs.registry.register_source(name, factory)."
        )
    try:
        return factory(**options)
    except TypeError as err:
        raise SourceOptionError(f"bad options for observation source {name!r}: {err}") from None
