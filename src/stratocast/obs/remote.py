"""Remote inputs: ``s3://``, ``http(s)://``, ``gs://`` ... paths through fsspec.

A remote pattern is expanded (globs on object stores; URLs without magic are taken as they
are) and every object is downloaded to ``cache_dir/<sha256 of content>/<object name>`` before
the ordinary readers open it. The content hash is the same key the store's manifest uses, so a
file already ingested from disk is skipped when met again by URL, and the file keeps its
original name because readers put it into report ids.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from stratocast.errors import StratocastError

_LOCAL_PROTOCOLS = {"file", "local"}


class RemoteError(StratocastError, OSError):
    """A remote input could not be listed or downloaded; the message names the URL."""


def is_remote(pattern: str) -> bool:
    """True for a URL with a non-local protocol (``s3://...``); plain and file:// paths: False."""
    if "://" not in pattern:
        return False
    return pattern.split("://", 1)[0].lower() not in _LOCAL_PROTOCOLS


def _filesystem(url: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as err:  # unknown protocol or its package missing
        raise RemoteError(f"{url}: cannot open filesystem: {err}") from err


def expand(pattern: str, storage_options: dict[str, Any]) -> list[str]:
    """Full URLs of the objects ``pattern`` names, sorted; [] when a glob matches nothing.

    Raises :class:`RemoteError` when the store cannot be listed (bad bucket, credentials).
    """
    fs, path = _filesystem(pattern, storage_options)
    protocol = pattern.split("://", 1)[0]
    if not glob.has_magic(path):
        return [pattern]  # existence is checked by the download, which has to happen anyway
    try:
        found = sorted(fs.glob(path))
    except OSError as err:
        raise RemoteError(f"{pattern}: listing failed: {err}") from err
    # fsspec strips the protocol for object stores but keeps it for http
    return [p if "://" in p else f"{protocol}://{p}" for p in found if not p.endswith("/")]


def fetch(url: str, storage_options: dict[str, Any], cache_dir: Path) -> tuple[Path, str]:
    """Download ``url`` into the content-addressed cache; return (local path, sha256).

    The download goes to a temporary file first, so an interrupted transfer never leaves a
    truncated file under a valid key.
    """
    fs, path = _filesystem(url, storage_options)
    name = path.rstrip("/").rsplit("/", 1)[-1] or "object"
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with fs.open(path, "rb") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
            except FileNotFoundError as err:
                raise RemoteError(f"{url}: file not found") from err
            except OSError as err:
                raise RemoteError(f"{url}: download failed: {err}") from err
        key = h.hexdigest()
        final = cache_dir / key / name
        if not final.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        return final, key
    finally:
        if tmp.exists():
            tmp.unlink()


def clear_cache(cache_dir: Path) -> None:
    """Remove every cached download (they are re-fetched on demand)."""
    shutil.rmtree(cache_dir, ignore_errors=True)
