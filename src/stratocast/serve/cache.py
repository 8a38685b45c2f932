"""Query answers kept in memory, keyed by the run's publication version: a new publication
(LATEST moving on, or a run re-published with a new COMPLETE) gives new keys, so a stale
answer is never served; the bounded LRU drops the old ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stratocast.serve.catalog import LRU, Run


class QueryCache:
    def __init__(self, size: int) -> None:
        self.lru = LRU(size)

    def get_or(self, run: Run, what: str, params: dict[str, Any], make: Callable[[], Any]) -> Any:
        key = (run.product, run.stamp, run.version, what, tuple(sorted(params.items())))
        got = self.lru.get(key)
        if got is None:
            got = make()
            self.lru.put(key, got)
        return got
