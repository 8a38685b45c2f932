"""Where stratocast keeps data it downloads for the user (region polygons, radar site tables).

Its own module, with no heavy imports, so that a radar reader does not pull in geopandas to
learn a directory name.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """stratocast's cache: ``$XDG_CACHE_HOME/stratocast``, else ``~/.cache/stratocast``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stratocast"
