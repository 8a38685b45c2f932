"""Keep radar tests off the developer's NEXRAD site table: no env var, an empty cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratocast.radar.sites import SITES_ENV


@pytest.fixture(autouse=True)
def _isolated_site_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # stratocast's cache follows $XDG_CACHE_HOME; a table cached by real use must not make
    # a test pass (or a download test find the file already there)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv(SITES_ENV, raising=False)
