"""Read the lowest-elevation reflectivity sweep of a radar volume, and grid it.

Formats (sniffed from content, not the name): NEXRAD Level II archive (``AR2V``/``ARCHIVE2``
header) and ODIM_H5 (HDF5 signature), both decoded with xradar, either as is or compressed
whole with gzip or bzip2 (``.gz``/``.bz2``, as the NCEI and AWS archives distribute older
volumes), decompressed in memory (at most ``MAX_DECOMPRESSED`` bytes). We take the raw stored codes
(``mask_and_scale=False``) and unpack them here because the flag codes differ by format and
xradar does not mask all of them: NEXRAD codes 0 (below threshold) and 1 (range folded) come
back as -33/-32.5 dBZ, ODIM ``undetect`` as ``offset``. Both flags, and ODIM ``nodata``, mean
"no reflectivity value" here and are left out of the grid average.

Site: the volume's own location; a legacy NEXRAD volume (message type 1) has none, and
xradar then says 0 N 0 E at 0 m. Such a volume takes the caller's ``site=`` or else the NOAA
NCEI HOMR NEXRAD site table entry of the ICAO id in its volume header (:mod:`.sites` finds
the table: ``site_table=``, ``$STRATOCAST_NEXRAD_SITES``, the cache, a download); a volume
with neither is a RadarFileError naming the file, never a grid at 0/0. ODIM: the site name is the
``NOD:`` (else ``WMO:``) part of ``what/source``, which xradar does not pass on.

A file that cannot be read as a whole — not a radar format, corrupt, truncated (NEXRAD sweeps
cut short), or with no reflectivity sweep — raises :class:`RadarFileError` naming the file:
never a partial volume. Limit: xradar only notices a NEXRAD file cut inside a sweep; one cut
exactly between sweeps reads as a shorter volume. The lowest sweep we return is whole either way.
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import struct
import warnings
import zlib
from pathlib import Path
from typing import IO

import h5py
import numpy as np
import xarray as xr
import xradar

from stratocast.errors import StratocastError
from stratocast.radar.grid import FloatArray, Sweep, grid_sweep
from stratocast.radar.sites import (
    SITES_ENV,
    RadarSite,
    SiteTableError,
    SiteTableUnavailable,
    nexrad_site,
)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
# A NEXRAD volume is < 100 MB uncompressed, an ODIM volume rarely more; the cap keeps a
# compressed bomb from filling memory.
MAX_DECOMPRESSED = 1 << 30
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


def read_lowest_sweep(
    path: Path | str, site: RadarSite | None = None, site_table: Path | str | None = None
) -> Sweep:
    """The lowest-elevation sweep holding reflectivity, with gate values in dBZ (NaN = none).

    ``site`` locates a volume that carries no location of its own (legacy NEXRAD message
    type 1); a volume that has one keeps it. Without ``site`` such a volume is looked up in
    the HOMR NEXRAD table: ``site_table`` (a path), else as :func:`.sites.resolve_site_table`
    finds it. The table is only sought for a volume that needs it.
    """
    path = Path(path)
    content = _load(path)
    kind = _sniff(path, content)
    if kind == "ODIM_H5" and isinstance(content, Path):
        # xradar's ODIM reader never releases the HDF5 file it opened by path (closing the
        # tree does not), which locks the file for writers in this process; from memory
        # nothing stays open. ODIM volumes are a few MB.
        content = _read_bytes(path)
    tree = _open_tree(path, kind, content)
    try:
        return _lowest_sweep(path, kind, tree, content, site, site_table)
    except RadarFileError:
        raise  # already names the file and the problem (RadarFileError is an OSError)
    except _DECODE_ERRORS as exc:
        raise RadarFileError(path, f"cannot decode {kind} sweep data: {exc}") from exc
    finally:
        tree.close()  # xradar reads lazily and holds a NEXRAD file open until closed


def read_reflectivity(
    path: Path | str,
    spacing: float = 0.01,
    site: RadarSite | None = None,
    site_table: Path | str | None = None,
) -> xr.Dataset:
    """Lowest-sweep reflectivity averaged onto a regular lat/lon grid (see :func:`grid_sweep`).

    Returns ``dbz`` (dBZ) and ``gate_count`` on dims (time, lat, lon), ``lat`` ascending, ``lon``
    in [0, 360); ``time`` is the sweep start. Attributes carry the radar site
    (``radar_latitude``/``radar_longitude`` in degrees, longitude -180..180 as in the file,
    ``radar_altitude`` in m, ``radar_site_source``: volume, caller or table), the elevation
    angle and the source file.
    """
    return grid_sweep(read_lowest_sweep(path, site, site_table), spacing)


def _load(path: Path) -> Path | bytes:
    """The path itself, or the decompressed bytes of a gzip/bzip2-compressed file."""
    if not path.is_file():
        raise RadarFileError(path, "no such file")
    with path.open("rb") as fh:
        head = fh.read(4)
    opener: type[gzip.GzipFile] | type[bz2.BZ2File]
    if head.startswith(_GZIP_MAGIC):
        opener, what = gzip.GzipFile, "gzip"
    elif head.startswith(_BZIP2_MAGIC):
        opener, what = bz2.BZ2File, "bzip2"
    else:
        return path
    try:
        with opener(path, "rb") as stream:
            data = stream.read(MAX_DECOMPRESSED + 1)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise RadarFileError(path, f"cannot decompress ({what}): {exc}") from exc
    if len(data) > MAX_DECOMPRESSED:
        raise RadarFileError(path, f"decompresses ({what}) to more than {MAX_DECOMPRESSED} bytes")
    return data


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RadarFileError(path, f"cannot read: {exc.strerror or exc}") from exc


def _source(content: Path | bytes) -> Path | IO[bytes]:
    return content if isinstance(content, Path) else io.BytesIO(content)


def _sniff(path: Path, content: Path | bytes) -> str:
    if isinstance(content, bytes):
        head = content[:16]
    else:
        with path.open("rb") as fh:
            head = fh.read(16)
    if head.startswith(_HDF5_MAGIC):
        return "ODIM_H5"
    if head.startswith(_NEXRAD_MAGICS):
        return "NEXRAD Level II"
    if not head:
        raise RadarFileError(path, "empty file")
    raise RadarFileError(path, f"not NEXRAD Level II or ODIM_H5 (starts with {head[:8]!r})")


def _open_tree(path: Path, kind: str, content: Path | bytes) -> xr.DataTree:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if kind == "ODIM_H5":
                tree = xradar.io.open_odim_datatree(_source(content), mask_and_scale=False)
            else:  # xradar reads a NEXRAD volume from bytes as from a path
                tree = xradar.io.open_nexradlevel2_datatree(content, mask_and_scale=False)
        except _DECODE_ERRORS as exc:
            raise RadarFileError(path, f"cannot open as {kind}: {exc}") from exc
    # xradar drops sweeps a truncated NEXRAD file cuts short and only warns: a volume missing
    # sweeps is a damaged file, not a smaller volume.
    for w in caught:
        text = str(w.message)
        if "incomplete sweep" in text or "sweeps are incomplete" in text:
            raise RadarFileError(path, f"truncated or damaged {kind} volume: {text}")
    return tree


def _lowest_sweep(
    path: Path,
    kind: str,
    tree: xr.DataTree,
    content: Path | bytes,
    site: RadarSite | None,
    site_table: Path | str | None,
) -> Sweep:
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
    name = _odim_source_name(path, content) if kind == "ODIM_H5" else _site_name(root)
    where, site_source = _locate(path, kind, root, name, site, site_table)
    return Sweep(
        source=str(path),
        site=name or where.name,
        latitude=where.latitude,
        longitude=where.longitude,
        altitude=where.altitude,
        site_source=site_source,
        time=np.datetime64(np.nanmin(times), "ns"),
        fixed_angle=angle,
        azimuth=np.asarray(ds["azimuth"].values, dtype=np.float64),
        elevation=np.asarray(ds["elevation"].values, dtype=np.float64),
        range=np.asarray(ds["range"].values, dtype=np.float64),
        dbz=dbz,
    )


def _site_name(root: xr.Dataset) -> str:
    # xradar writes a missing name as the string "None" (and "UNKNOWN" for a NEXRAD volume
    # without volume header); legacy headers may pad the ICAO with NULs or blanks
    name = str(root.attrs.get("instrument_name") or "").strip("\x00 ")
    return "" if name in ("None", "UNKNOWN") else name


def _locate(
    path: Path,
    kind: str,
    root: xr.Dataset,
    name: str,
    site: RadarSite | None,
    site_table: Path | str | None,
) -> tuple[RadarSite, str]:
    """The antenna location and where it came from: "volume", "caller" or "table"."""
    lat, lon, alt = (float(root[k]) for k in ("latitude", "longitude", "altitude"))
    # 0 N 0 E is what xradar gives when the volume has no location (NEXRAD message type 1);
    # no weather radar stands there, so it is read as "absent", never used
    if all(math.isfinite(v) for v in (lat, lon, alt)) and (lat, lon) != (0.0, 0.0):
        try:
            return RadarSite(lat, lon, alt, name), "volume"
        except ValueError as exc:
            raise RadarFileError(path, f"{kind} site location invalid: {exc}") from None
    if site is not None:
        return site, "caller"
    missing = f"the {kind} volume carries no site location (lat/lon 0/0: legacy message type 1?)"
    if kind != "NEXRAD Level II" or not name:
        raise RadarFileError(
            path, f"{missing} and it names no site to look up; pass site=RadarSite(lat, lon, alt)"
        )
    try:
        found = nexrad_site(name, site_table)
    except SiteTableUnavailable as exc:
        raise RadarFileError(
            path,
            f"{missing}, so its site {name!r} must come from one of: site=RadarSite(lat, lon, "
            f"alt); a HOMR nexrad-stations.txt named by site_table= or ${SITES_ENV}; or "
            f"network access to NCEI to download and cache that table ({exc})",
        ) from None
    except SiteTableError as exc:
        raise RadarFileError(
            path, f"{missing}, and the NEXRAD site table is unusable: {exc}"
        ) from None
    if found is None:
        raise RadarFileError(
            path,
            f"{missing} and ICAO id {name!r} is not in the NEXRAD site table; "
            "pass site=RadarSite(lat, lon, alt)",
        )
    return found, "table"


def _odim_source_name(path: Path, content: Path | bytes) -> str:
    """``NOD:`` (else ``WMO:``) of ODIM ``what/source``, e.g. ``NOD:frave,WMO:07083``."""
    with h5py.File(_source(content), "r") as h5:
        what = h5.get("what")
        raw = what.attrs.get("source", b"") if what is not None else b""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    parts = dict(p.split(":", 1) for p in text.split(",") if ":" in p)
    for key in ("NOD", "WMO"):
        value = parts.get(key, "").strip()
        if value and value != "00000":  # ODIM writes WMO:00000 for "no WMO number"
            return value
    return ""


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
