"""The publications on disk as the API sees them: products, runs (with status), opened runs.

Reads the layout :mod:`stratocast.infer.publish` writes: ``<root>/<product>/<stamp>/COMPLETE``
and ``LATEST``. Opened runs are kept in a bounded LRU keyed by the run's COMPLETE mtime, so a
re-publication of a run (or a new LATEST) is seen on the next request without a restart.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.infer.publish import COMPLETE, LATEST


class NotFound(StratocastError, LookupError):
    """An unknown product, run or variable (HTTP 404)."""


class BadRequest(StratocastError, ValueError):
    """A query the API cannot answer as asked (HTTP 400)."""


class TooLarge(StratocastError, ValueError):
    """A query over the configured size limit (HTTP 413)."""


@dataclass(frozen=True)
class Run:
    product: str
    stamp: str
    record: dict[str, Any]
    version: float  # COMPLETE's mtime: a re-publication changes it

    @property
    def status(self) -> str:
        if self.record.get("fallback"):
            return "fallback"
        if "deadline" in self.record and "published_at" in self.record:
            late = datetime.fromisoformat(self.record["published_at"]) > datetime.fromisoformat(
                self.record["deadline"]
            )
            if late:
                return "late"
        return "complete"


class LRU:
    """A small thread-safe LRU (the app's worker threads share one)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
            self.misses += 1
            return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


class Catalog:
    def __init__(self, root: Path, cache_runs: int = 8) -> None:
        self.root = Path(root)
        self.opened = LRU(cache_runs)

    def products(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def _base(self, product: str) -> Path:
        base = self.root / product
        if product.startswith(".") or "/" in product or not base.is_dir():
            raise NotFound(f"unknown product {product!r}; known: {self.products()}")
        return base

    def runs(self, product: str) -> list[Run]:
        base = self._base(product)
        out = []
        for p in sorted(base.iterdir()):
            marker = p / COMPLETE
            if p.is_dir() and not p.name.startswith(".") and marker.is_file():
                try:
                    rec = json.loads(marker.read_text())
                except (OSError, ValueError):
                    continue  # being replaced right now: the next request sees it
                out.append(Run(product, p.name, rec, marker.stat().st_mtime_ns / 1e9))
        return out

    def latest(self, product: str) -> str | None:
        marker = self._base(product) / LATEST
        try:
            return marker.read_text().strip() or None
        except OSError:
            return None

    def run(self, product: str, run: str) -> Run:
        stamp = self.latest(product) if run == "latest" else run
        if stamp is None:
            raise NotFound(f"product {product!r} has no published run yet")
        if "/" in stamp or stamp.startswith("."):
            raise NotFound(f"unknown run {run!r} of product {product!r}")
        marker = self._base(product) / stamp / COMPLETE
        try:
            rec = json.loads(marker.read_text())
            version = marker.stat().st_mtime_ns / 1e9
        except (OSError, ValueError):
            raise NotFound(
                f"unknown run {run!r} of product {product!r} (runs are YYYYMMDDTHHMM or latest)"
            ) from None
        return Run(product, stamp, rec, version)

    def dataset(self, run: Run) -> xr.Dataset:
        """The run's forecast, loaded into memory once per publication version."""
        key = (run.product, run.stamp, run.version)
        ds = self.opened.get(key)
        if ds is None:
            path = self.root / run.product / run.stamp / "forecast.zarr"
            try:
                ds = xr.open_zarr(path, consolidated=False, decode_timedelta=False).load()
            except (OSError, ValueError, KeyError) as err:
                raise NotFound(
                    f"run {run.stamp} of {run.product} has no readable Zarr: {err}"
                ) from err
            if ds["lat"].size > 1 and float(ds["lat"][0]) > float(ds["lat"][-1]):
                ds = ds.isel(lat=slice(None, None, -1))  # ascending, as the interpolation wants
            self.opened.put(key, ds)
        return ds


def variables(ds: xr.Dataset) -> list[str]:
    return [str(v) for v in ds.data_vars if "lead_time" in ds[v].dims]


def leads(ds: xr.Dataset) -> list[int]:
    return [int(x) for x in np.asarray(ds["lead_time"].values)]
