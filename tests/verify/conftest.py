from __future__ import annotations

from pathlib import Path

import pytest
from verify_world import World, make_world

from stratocast.verify.regions import RegionError, default_cache_dir, resolve_ar6_file


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()


@pytest.fixture(scope="session")
def ar6_file() -> Path:
    """The AR6 shapefile zip (not in the repository): $STRATOCAST_AR6_REGIONS, regionmask's
    cache, ~/.cache/stratocast, regionmask's download or regionmask's sdist on PyPI."""
    try:
        return resolve_ar6_file(cache_dir=default_cache_dir())
    except RegionError as err:
        pytest.skip(f"AR6 region file unavailable by every route (offline?): {err}")
