from __future__ import annotations

import pytest

from stratocast.obs.stations import StationCatalogue


@pytest.fixture(scope="session")
def airports() -> StationCatalogue:
    return StationCatalogue.from_airportsdata()
