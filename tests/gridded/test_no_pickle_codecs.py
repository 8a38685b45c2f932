"""A Zarr store whose arrays use a pickle-based codec is refused, and nothing in it executes.

Unpickling runs whatever the bytes say (``__reduce__``), so a gridded store from an untrusted
place must never reach ``pickle.loads``. Each store here is a tiny valid gridded layout
(latitude, longitude, time, one 2 m temperature field) whose field chunk is a pickle that
creates a marker file when loaded; :func:`stratocast.gridded.open_gridded` must raise a
:class:`GriddedFileError` naming the store and the codec, and the marker must not exist. The
refusal today comes from zarr-python's codec and data-type resolution: this pins it, so an
upgrade that starts accepting the codec fails here instead of executing a payload.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratocast.gridded import open_gridded
from stratocast.gridded.errors import GriddedFileError


class _Payload:
    """Pickles to "open(marker, 'w')": unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _v2_array(
    root: Path,
    name: str,
    dtype: str,
    filters: Any,
    dims: list[str],
    chunk: bytes,
    shape: list[int],
    attrs: dict[str, Any] | None = None,
) -> None:
    d = root / name
    d.mkdir()
    meta = {
        "zarr_format": 2,
        "shape": shape,
        "chunks": shape,
        "dtype": dtype,
        "compressor": None,
        "fill_value": None,
        "order": "C",
        "filters": filters,
        "dimension_separator": ".",
    }
    (d / ".zarray").write_text(json.dumps(meta))
    (d / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": dims, **(attrs or {})}))
    (d / ".".join("0" * len(shape))).write_bytes(chunk)


_TIME = {"units": "hours since 2020-01-01", "calendar": "proleptic_gregorian"}


def _store_v2(root: Path, payload: bytes, dtype: str) -> Path:
    """Zarr v2: the field's filter is numcodecs' ``pickle`` (dtype ``|O``, its documented use,
    or a numeric dtype)."""
    root.mkdir()
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (root / ".zattrs").write_text("{}")
    _v2_array(root, "latitude", "<f8", None, ["latitude"], np.array([10.0, 20.0]).tobytes(), [2])
    _v2_array(root, "longitude", "<f8", None, ["longitude"], np.array([0.0, 1.0]).tobytes(), [2])
    _v2_array(root, "time", "<i8", None, ["time"], np.array([0]).tobytes(), [1], _TIME)
    _v2_array(
        root,
        "2m_temperature",
        dtype,
        [{"id": "pickle", "protocol": 5}],
        ["time", "latitude", "longitude"],
        payload,
        [1, 2, 2],
    )
    return root


def _store_v3(root: Path, payload: bytes) -> Path:
    """Zarr v3: the field's codec chain is numcodecs' ``numcodecs.pickle``."""
    root.mkdir()
    group = {"zarr_format": 3, "node_type": "group", "attributes": {}}
    (root / "zarr.json").write_text(json.dumps(group))
    little = [{"name": "bytes", "configuration": {"endian": "little"}}]

    def array(
        name: str,
        shape: list[int],
        dtype: str,
        codecs: Any,
        dims: list[str],
        chunk: bytes,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        d = root / name
        d.mkdir()
        meta = {
            "zarr_format": 3,
            "node_type": "array",
            "shape": shape,
            "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shape}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": codecs,
            "dimension_names": dims,
            "attributes": attrs or {},
        }
        (d / "zarr.json").write_text(json.dumps(meta))
        c = d.joinpath("c", *("0" * len(shape)))
        c.parent.mkdir(parents=True)
        c.write_bytes(chunk)

    array("latitude", [2], "float64", little, ["latitude"], np.array([10.0, 20.0]).tobytes())
    array("longitude", [2], "float64", little, ["longitude"], np.array([0.0, 1.0]).tobytes())
    array("time", [1], "int64", little, ["time"], np.array([0]).tobytes(), _TIME)
    pickle_codec = [{"name": "numcodecs.pickle", "configuration": {"protocol": 5}}]
    array(
        "2m_temperature",
        [1, 2, 2],
        "float64",
        pickle_codec,
        ["time", "latitude", "longitude"],
        payload,
    )
    return root


STORES: dict[str, Callable[[Path, bytes], Path]] = {
    "v2-object": lambda root, p: _store_v2(root, p, "|O"),
    "v2-float": lambda root, p: _store_v2(root, p, "<f8"),
    "v3": _store_v3,
}


@pytest.mark.parametrize("layout", sorted(STORES))
def test_pickle_codec_store_is_refused_and_nothing_runs(layout: str, tmp_path: Path) -> None:
    # the payload is live: loading it (here, on purpose) does create its marker
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()

    marker = tmp_path / "MARKER"
    payload = pickle.dumps(np.array([_Payload(marker)] * 4, dtype=object).reshape(1, 2, 2))
    store = STORES[layout](tmp_path / "store.zarr", payload)
    with pytest.raises(GriddedFileError, match=r"store\.zarr.*pickle") as err:
        ds = open_gridded(store)
        ds.load()  # were it opened, touching the data is where the codec would run
    assert "cannot open as zarr" in str(err.value)
    assert not marker.exists(), "the pickled payload ran"
