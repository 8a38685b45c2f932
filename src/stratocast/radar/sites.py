"""Radar site locations for volumes that do not carry their own (NEXRAD message type 1).

Legacy NEXRAD Level II volumes (message type 1, the format before 2008) hold radials but no
site coordinates; xradar then reports the site at 0 N 0 E, altitude 0, and a grid built
there would be silently wrong by thousands of km. The site is taken, in this order, from the
volume itself, from the caller (``site=``), or from NOAA NCEI HOMR's NEXRAD station table
(``nexrad-stations.txt``), keyed by the ICAO id in the volume header.

That table is NOAA's data, not ours, so it is never shipped in the repository or the wheel.
:func:`resolve_site_table` finds it, in this order:

1. a path the caller passes (``site_table=``, down from the reader);
2. the file named by the environment variable ``STRATOCAST_NEXRAD_SITES``;
3. a copy cached earlier under stratocast's cache (``$XDG_CACHE_HOME/stratocast/homr/``,
   else ``~/.cache/stratocast/homr/``), kept as is: delete it to take a newer edition;
4. a download of :data:`SITES_URL` through :func:`stratocast.obs.fetch.http.fetch` (retried,
   atomic), parsed before it is moved into that cache, so the cache only ever holds a table
   that parsed.

An explicit path (1 or 2) that is missing or malformed is an error, never a silent fall
through to another source. HOMR's format: a header line naming the columns, a line of dash
runs whose spans are the fixed column widths (names hold spaces, so splitting on whitespace
would shift every later column), then one row per station; only ``STNTYPE`` NEXRAD rows are
kept (TDWR sites write no Level II archive); ``ELEV`` is in feet, which HOMR defines since
May 2021 as ground + tower + feedhorn, i.e. the antenna height a message-31 volume carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from stratocast.cache import default_cache_dir
from stratocast.errors import StratocastError

__all__ = [
    "SITES_ENV",
    "SITES_URL",
    "RadarSite",
    "SiteTableError",
    "SiteTableUnavailable",
    "default_cache_dir",
    "nexrad_site",
    "nexrad_sites",
    "parse_homr",
    "resolve_site_table",
]

SITES_URL = "https://www.ncei.noaa.gov/access/homr/file/nexrad-stations.txt"
SITES_ENV = "STRATOCAST_NEXRAD_SITES"
SITES_NAME = "nexrad-stations.txt"
_CACHE_SUBDIR = "homr"
_FEET = 0.3048  # m per international foot
# The columns we read; the others (NCDCID, WBAN, COUNTRY, ST, COUNTY, UTC) must merely exist
# in the header so that a reshuffled or different file is rejected rather than misread.
_COLUMNS = (
    *("NCDCID", "ICAO", "WBAN", "NAME", "COUNTRY", "ST", "COUNTY"),
    *("LAT", "LON", "ELEV", "UTC", "STNTYPE"),
)


@dataclass(frozen=True)
class RadarSite:
    """Where a radar antenna is: degrees north/east (WGS84), metres above MSL."""

    latitude: float
    longitude: float
    altitude: float
    name: str = ""

    def __post_init__(self) -> None:
        if not (-90.0 <= self.latitude <= 90.0 and -180.0 <= self.longitude <= 180.0):
            raise ValueError(
                f"radar site {self.name or '?'}: latitude/longitude "
                f"({self.latitude}, {self.longitude}) out of range"
            )


class SiteTableError(StratocastError, ValueError):
    """A NEXRAD site table that is missing where named, or malformed: names file and line."""


class SiteTableUnavailable(StratocastError, LookupError):
    """No NEXRAD site table is reachable: none named, none cached, the download failed."""


# ---------------------------------------------------------------------------- parsing


def _spans(path: Path, header: str, dashes: str) -> dict[str, tuple[int, int | None]]:
    """Column name -> (start, end) from the dashes line; a column runs to the next one's start."""
    starts = [i for i, c in enumerate(dashes) if c == "-" and (i == 0 or dashes[i - 1] != "-")]
    if not starts or set(dashes.strip()) - {"-", " "}:
        raise SiteTableError(f"{path}:2: expected the line of column dashes, got {dashes!r}")
    bounds = [(a, b) for a, b in zip(starts, [*starts[1:], None], strict=True)]
    names = [header[a:b].strip() for a, b in bounds]
    if names != list(_COLUMNS):
        raise SiteTableError(
            f"{path}:1: header columns {names} (cut at the dashes of line 2) are not "
            f"HOMR's nexrad-stations.txt columns {list(_COLUMNS)}"
        )
    return dict(zip(names, bounds, strict=True))


def _number(path: Path, lineno: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SiteTableError(f"{path}:{lineno}: {column} {text!r} is not a number") from None


def parse_homr(path: Path | str) -> Mapping[str, RadarSite]:
    """ICAO id -> site for the NEXRAD rows of a HOMR ``nexrad-stations.txt`` (feet -> metres).

    Any malformed row, a duplicate ICAO id, or no NEXRAD row at all is a
    :class:`SiteTableError` naming ``path:line``: a lookup table read in part would locate
    some radars and quietly not others.
    """
    path = Path(path)
    try:
        # HOMR writes plain ASCII; latin-1 reads any byte, so a stray one lands in a
        # name (harmless) instead of failing the whole table
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as exc:
        raise SiteTableError(f"{path}: cannot read the NEXRAD site table: {exc}") from None
    if len(lines) < 2:
        raise SiteTableError(f"{path}:{len(lines) + 1}: no header and dashes lines")
    cols = _spans(path, lines[0], lines[1])

    def cell(line: str, name: str) -> str:
        a, b = cols[name]
        return line[a:b].strip()

    sites: dict[str, RadarSite] = {}
    for lineno, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue  # a blank line (e.g. at the end) holds no station
        if cell(line, "STNTYPE") != "NEXRAD":
            continue  # TDWR and others: no Level II archive to locate
        icao = cell(line, "ICAO").upper()
        if len(icao) != 4 or not icao.isalnum():
            raise SiteTableError(f"{path}:{lineno}: ICAO {icao!r} is not a 4-character id")
        if icao in sites:
            raise SiteTableError(f"{path}:{lineno}: ICAO {icao} listed twice")
        lat, lon, elev_ft = (
            _number(path, lineno, c, cell(line, c)) for c in ("LAT", "LON", "ELEV")
        )
        try:
            sites[icao] = RadarSite(lat, lon, elev_ft * _FEET, cell(line, "NAME") or icao)
        except ValueError as exc:
            raise SiteTableError(f"{path}:{lineno}: {exc}") from None
    if not sites:
        raise SiteTableError(f"{path}:{len(lines)}: no STNTYPE NEXRAD row in the table")
    return MappingProxyType(sites)


@lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, size: int) -> Mapping[str, RadarSite]:
    # keyed by mtime and size too, so a table replaced on disk is read afresh
    return parse_homr(path)


def _load(path: Path) -> Mapping[str, RadarSite]:
    try:
        st = path.stat()
    except OSError as exc:
        raise SiteTableError(f"{path}: cannot read the NEXRAD site table: {exc}") from None
    return _parsed(str(path), st.st_mtime_ns, st.st_size)


# ---------------------------------------------------------------------------- finding


def _download(target: Path) -> Path:
    """Fetch :data:`SITES_URL`, parse it, and only then move it onto ``target``."""
    from stratocast.obs.fetch.http import FetchError, fetch  # only when a download is due

    url = SITES_URL  # read at call time: tests point it at a local server
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        try:
            got = fetch(url, staging, filename=target.name, timeout=30.0, force=True)
        except FetchError as exc:
            raise SiteTableUnavailable(str(exc)) from None
        try:
            parse_homr(got)
        except SiteTableError as exc:
            raise SiteTableError(f"{url} (downloaded): {exc}") from None
        data = got.read_bytes()
        os.replace(got, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # provenance of the cached copy: where and when it came from, and what it was
    meta = {
        "url": url,
        "retrieved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    target.with_name(f".{target.name}.source.json").write_text(json.dumps(meta))
    return target


def resolve_site_table(
    site_table: Path | str | None = None, *, cache_dir: Path | str | None = None
) -> Path:
    """The HOMR NEXRAD table file to use (see the module docstring for the order).

    Raises :class:`SiteTableError` when a named file is missing or a download is not a
    HOMR table, :class:`SiteTableUnavailable` when none is named, none is cached and the
    download fails.
    """
    if site_table is not None:
        path = Path(site_table).expanduser()
        if not path.is_file():
            raise SiteTableError(f"{path}: NEXRAD site table (site_table=) not found")
        return path
    env = os.environ.get(SITES_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise SiteTableError(f"{path}: NEXRAD site table (${SITES_ENV}) not found")
        return path
    cached = Path(cache_dir or default_cache_dir()) / _CACHE_SUBDIR / SITES_NAME
    if cached.is_file():
        return cached
    try:
        return _download(cached)
    except SiteTableUnavailable as exc:
        raise SiteTableUnavailable(
            f"no NEXRAD site table: none given (site_table=, ${SITES_ENV}), none cached at "
            f"{cached}, and the download failed: {exc}"
        ) from None


def nexrad_sites(
    site_table: Path | str | None = None, *, cache_dir: Path | str | None = None
) -> Mapping[str, RadarSite]:
    """ICAO id -> site from the HOMR table that :func:`resolve_site_table` finds."""
    return _load(resolve_site_table(site_table, cache_dir=cache_dir))


def nexrad_site(
    icao: str, site_table: Path | str | None = None, *, cache_dir: Path | str | None = None
) -> RadarSite | None:
    """The NEXRAD site with this ICAO id (case-insensitive), or None if the table lacks it."""
    return nexrad_sites(site_table, cache_dir=cache_dir).get(icao.strip().upper())
