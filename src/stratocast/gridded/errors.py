"""The gridded reader's error: a file that as a whole cannot become canonical fields."""

from __future__ import annotations

from pathlib import Path

from stratocast.errors import StratocastError


class GriddedFileError(StratocastError, OSError):
    """The file as a whole cannot be read into canonical fields."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem
