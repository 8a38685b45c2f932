"""The project's one error root.

Every error stratocast raises on purpose derives from :class:`StratocastError` (and keeps its
historical builtin base — ``ValueError``, ``OSError``, ``RuntimeError`` — so callers that catch
those still do). The CLI turns any ``StratocastError`` into one line naming what and where and
exits 2; anything else is a bug and keeps its traceback under ``--debug``.
"""

from __future__ import annotations


class StratocastError(Exception):
    """Base of every error the project raises deliberately; the message names what and where."""
