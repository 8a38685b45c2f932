"""Read the lowest-elevation reflectivity sweep of a radar volume, and grid it.

Formats (sniffed from content, not the name): NEXRAD Level II archive (``AR2V``/``ARCHIVE2``
header) and ODIM_H5 (HDF5 signature), both decoded with xradar. We take the raw stored codes
(``mask_and_scale=False``) and unpack them here because the flag codes differ by format and
xradar does not mask all of them: NEXRAD codes 0 (below threshold) and 1 (range folded) come
back as -33/-32.5 dBZ, ODIM ``undetect`` as ``offset``. Both flags, and ODIM ``nodata``, mean
"no reflectivity value" here and are left out of the grid average.

A file that cannot be read as a whole — not a radar format, corrupt, truncated (NEXRAD sweeps
cut short), or with no reflectivity sweep — raises :class:`RadarFileError` naming the file:
never a partial volume. Limit: xradar only notices a NEXRAD file cut inside a sweep; one cut
exactly between sweeps reads as a shorter volume. The lowest sweep we return is whole either way.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import xradar

from stratocast.errors import StratocastError
from stratocast.radar.grid import FloatArray, Sweep, grid_sweep

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NEXRAD_MAGICS = (b"AR2V", b"ARCHIVE2")
_REFLECTIVITY = "DBZH"  # xradar's name for NEXRAD REF and ODIM DBZH
_NEXRAD_FLAG_CODES = (0, 1)  # ICD 2620010: below threshold, range folded
# What xradar and the decoders below may raise on a damaged file; anything else is a bug.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    IndexError,
    EOFError,
    TypeError,
    RuntimeError,
    struct.error,
)


class RadarFileError(StratocastError, OSError):
    """The radar file as a whole cannot be read."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def read_lowest_sweep(path: Path | str) -> Sweep:
    """The lowest-elevation sweep holding reflectivity, with gate values in dBZ (NaN = none)."""
    path = Path(path)
    kind = _sniff(path)
    tree = _open_tree(path, kind)
    try:
        return _lowest_sweep(path, kind, tree)
    except _DECODE_ERRORS as exc:
        raise RadarFileError(path, f"cannot decode {kind} sweep data: {exc}") from exc


def read_reflectivity(path: Path | str, spacing: float = 0.01) -> xr.Dataset:
    """Lowest-sweep reflectivity averaged onto a regular lat/lon grid (see :func:`grid_sweep`).

    Returns ``dbz`` (dBZ) and ``gate_count`` on dims (time, lat, lon), ``lat`` ascending, ``lon``
    in [0, 360); ``time`` is the sweep start. Attributes carry the radar site
    (``radar_latitude``/``radar_longitude`` in degrees, longitude -180..180 as in the file,
    ``radar_altitude`` in m), the elevation angle and the source file.
    """
    return grid_sweep(read_lowest_sweep(path), spacing)


def _sniff(path: Path) -> str:
    if not path.is_file():
        raise RadarFileError(path, "no such file")
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(_HDF5_MAGIC):
        return "ODIM_H5"
    if head.startswith(_NEXRAD_MAGICS):
        return "NEXRAD Level II"
    if not head:
        raise RadarFileError(path, "empty file")
    raise RadarFileError(path, f"not NEXRAD Level II or ODIM_H5 (starts with {head[:8]!r})")


def _open_tree(path: Path, kind: str) -> xr.DataTree:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if kind == "ODIM_H5":
                tree = xradar.io.open_odim_datatree(path, mask_and_scale=False)
            else:
                tree = xradar.io.open_nexradlevel2_datatree(path, mask_and_scale=False)
        except _DECODE_ERRORS as exc:
            raise RadarFileError(path, f"cannot open as {kind}: {exc}") from exc
    # xradar drops sweeps a truncated NEXRAD file cuts short and only warns: a volume missing
    # sweeps is a damaged file, not a smaller volume.
    for w in caught:
        text = str(w.message)
        if "incomplete sweep" in text or "sweeps are incomplete" in text:
            raise RadarFileError(path, f"truncated or damaged {kind} volume: {text}")
    return tree


def _lowest_sweep(path: Path, kind: str, tree: xr.DataTree) -> Sweep:
    candidates = []
    for name, node in tree.children.items():
        ds = node.to_dataset()
        if name.startswith("sweep_") and _REFLECTIVITY in ds:
            candidates.append((float(ds["sweep_fixed_angle"]), int(name.split("_")[1]), ds))
    if not candidates:
        raise RadarFileError(path, f"no sweep with reflectivity ({_REFLECTIVITY})")
    # Split cuts repeat the lowest angle; the first (surveillance) one is the reference.
    angle, _, ds = min(candidates, key=lambda c: (c[0], c[1]))
    root = tree.to_dataset()
    dbz = _decode(path, kind, ds[_REFLECTIVITY])
    times = np.asarray(ds["time"].values, dtype="datetime64[ns]")
    if dbz.shape != (ds.sizes["azimuth"], ds.sizes["range"]) or np.isnat(times).all():
        raise RadarFileError(path, f"sweep at {angle:.2f} deg has inconsistent dimensions/times")
    return Sweep(
        source=str(path),
        site=_site_name(root),
        latitude=float(root["latitude"]),
        longitude=float(root["longitude"]),
        altitude=float(root["altitude"]),
        time=np.datetime64(np.nanmin(times), "ns"),
        fixed_angle=angle,
        azimuth=np.asarray(ds["azimuth"].values, dtype=np.float64),
        elevation=np.asarray(ds["elevation"].values, dtype=np.float64),
        range=np.asarray(ds["range"].values, dtype=np.float64),
        dbz=dbz,
    )


def _site_name(root: xr.Dataset) -> str:
    # xradar writes a missing name as the string "None"
    name = str(root.attrs.get("instrument_name") or "")
    return "" if name == "None" else name


def _decode(path: Path, kind: str, raw: xr.DataArray) -> FloatArray:
    meta = {**raw.encoding, **raw.attrs}
    if "scale_factor" not in meta or "add_offset" not in meta:
        raise RadarFileError(path, f"{_REFLECTIVITY} has no scale_factor/add_offset")
    codes = np.asarray(raw.values)
    if kind == "ODIM_H5":
        flags = [meta[k] for k in ("_FillValue", "_Undetect") if k in meta]
    else:
        flags = list(_NEXRAD_FLAG_CODES)
    dbz = codes.astype(np.float64) * float(meta["scale_factor"]) + float(meta["add_offset"])
    dbz[np.isin(codes, flags)] = np.nan
    return dbz
