from __future__ import annotations

import pytest
from verify_world import World, make_world


@pytest.fixture(scope="session")
def world() -> World:
    return make_world()
