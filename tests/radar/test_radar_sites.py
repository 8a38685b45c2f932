"""Radar site location for volumes without one (legacy NEXRAD message type 1), compressed
volumes, and the ODIM site name, on volumes built from the shared real files.

No legacy (pre-2008) NEXRAD volume is among the shared files, so one is built here from the
real KLBB message-31 volume: its lowest sweep re-encoded as ICD 2620010 message type 1
records (Table III: 100-byte radial header, 1 km reflectivity gates as one byte each, no
site coordinates). The reflectivity codes are the real ones (every 4th 250 m gate); only the
container is legacy. Before this reader took the site from the NEXRAD table it returned such
a volume at 0 N 0 E, altitude 0, and gridded it there without a word.

The NEXRAD site table is NOAA NCEI HOMR's ``nexrad-stations.txt``, never shipped with the
code. The tests write one in HOMR's fixed-width layout: KLBB's row carries the location of
the real message-31 volume (so the legacy volume must land exactly where the modern one
says), the other rows are made up to exercise the format (names with spaces, blank
columns, short lines, a TDWR row). It reaches the reader by path, by environment variable
and by download from a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import bz2
import gzip
import http.server
import json
import shutil
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import xradar

from stratocast.radar import (
    RadarFileError,
    RadarSite,
    Sweep,
    nexrad_site,
    read_lowest_sweep,
    read_reflectivity,
)
from stratocast.radar import sites as sites_module
from stratocast.radar.sites import (
    SITES_ENV,
    SiteTableError,
    SiteTableUnavailable,
    default_cache_dir,
    nexrad_sites,
    resolve_site_table,
)

DATA = Path("/work/shared/data/radar")
NEXRAD = DATA / "KLBB20160601_150025_V06"
ODIM = DATA / "T_PAZA63_C_LFPW_20230420065041.h5"
needs_nexrad = pytest.mark.skipif(not NEXRAD.exists(), reason="shared NEXRAD file absent")
needs_odim = pytest.mark.skipif(not ODIM.exists(), reason="shared ODIM file absent")

_RECORD = 2432  # legacy Level II records are fixed-size
_ANGLE = 180.0 / (4096 * 8.0)  # degrees per count of a message-1 angle (ICD Table III)


def _message_1_volume(dst: Path, icao: bytes = b"KLBB") -> np.ndarray:
    """Write the real volume's lowest sweep as a message-type-1 volume; return its codes."""
    tree = xradar.io.open_nexradlevel2_datatree(NEXRAD, mask_and_scale=False, sweep=[0])
    ds = tree["sweep_0"].to_dataset()
    codes = np.asarray(ds["DBZH"].values)[:, ::4][:, :460]  # 1 km gates, as message 1 had
    first_gate = int(ds["range"].values[0])
    n = codes.shape[0]
    # volume header: "ARCHIVE2." + extension, Julian date, ms of day, ICAO
    out = bytearray(b"ARCHIVE2.001" + struct.pack(">II", 16953, 0) + icao)
    out += bytes(_RECORD)  # the reader starts after a first (metadata) record
    for i in range(n):
        t = ds["time"].values[i]
        day = t.astype("datetime64[D]")
        days = int((day - np.datetime64("1970-01-01", "D")).astype(int)) + 1
        ms = int((t - day).astype("timedelta64[ms]").astype(int))
        status = 3 if i == 0 else (4 if i == n - 1 else 1)  # volume start / middle / end
        radial = struct.pack(
            ">IHhHHHHHhhhhHHHfHHHHH8s2s2s2shhhH32s",
            ms,
            days,
            4600,  # unambiguous range, 0.1 km
            round(float(ds["azimuth"].values[i]) / _ANGLE),
            i + 1,
            status,
            round(float(ds["elevation"].values[i]) / _ANGLE),
            1,  # elevation number
            first_gate,  # reflectivity: range to first gate (m), gate spacing (m)
            0,
            1000,
            250,
            codes.shape[1],  # reflectivity gates
            0,  # Doppler gates: none
            1,
            0.0,
            100,  # reflectivity data right after the 100-byte radial header
            0,
            0,
            2,
            212,  # VCP
            *(b"",) * 4,
            0,
            0,
            0,
            0,
            b"",
        )
        header = struct.pack(">HBBHHIHH", (_RECORD - 12) // 2, 0, 1, i + 1, days, ms, 1, 1)
        record = bytes(12) + header + radial + codes[i].astype(np.uint8).tobytes()
        out += record + bytes(_RECORD - len(record))
    dst.write_bytes(bytes(out))
    return codes


# HOMR's nexrad-stations.txt columns and their widths (the runs of its dashes line)
_HOMR_COLUMNS = (
    *("NCDCID", "ICAO", "WBAN", "NAME", "COUNTRY", "ST", "COUNTY"),
    *("LAT", "LON", "ELEV", "UTC", "STNTYPE"),
)
_HOMR_WIDTHS = (8, 4, 5, 30, 20, 2, 30, 9, 10, 6, 5, 50)


def _fit(x: float, width: int) -> str:
    """``x`` with as many decimals as fit the column, as HOMR writes its coordinates."""
    return next(s for d in range(6, -1, -1) if len(s := f"{x:.{d}f}") <= width)


def _homr_line(values: tuple[str, ...]) -> str:
    return " ".join(v.ljust(w) for v, w in zip(values, _HOMR_WIDTHS, strict=True))


def _homr_row(
    icao: str,
    name: str,
    country: str,
    st: str,
    lat: float,
    lon: float,
    elev_ft: int,
    kind: str = "NEXRAD",
) -> str:
    return _homr_line(
        (
            "30000000",
            icao,
            "99999",
            name,
            country,
            st,
            "TEST COUNTY",
            _fit(lat, 9),
            _fit(lon, 10),
            str(elev_ft),
            "-6",
            kind,
        )
    )


def _homr_text(modern: Sweep, extra: str = "") -> str:
    klbb_ft = round(modern.altitude / 0.3048)  # HOMR gives whole feet
    lines = [
        _homr_line(_HOMR_COLUMNS),
        _homr_line(tuple("-" * w for w in _HOMR_WIDTHS)),
        _homr_row(
            "KLBB", "LUBBOCK", "UNITED STATES", "TX", modern.latitude, modern.longitude, klbb_ft
        ),
        _homr_row("TSTA", "TEST SITE WITH SPACES", "UNITED STATES", "OK", 35.25, -97.5, 1200),
        # blank state column and the trailing blanks cut off, as some editors save it
        _homr_row("TSTB", "OVERSEAS TEST", "AZORES", "", 38.75, -27.125, 3500).rstrip(),
        _homr_row("TSTC", "TERMINAL DOPPLER", "UNITED STATES", "OK", 35.0, -97.0, 1300, "TDWR"),
    ]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    if not NEXRAD.exists():
        pytest.skip("shared NEXRAD file absent")
    path = tmp_path_factory.mktemp("legacy") / "KLBB20160601_150025_msg1"
    return path, _message_1_volume(path)


@pytest.fixture(scope="module")
def modern() -> Sweep:
    if not NEXRAD.exists():
        pytest.skip("shared NEXRAD file absent")
    return read_lowest_sweep(NEXRAD)


@pytest.fixture
def homr(tmp_path: Path, modern: Sweep) -> Path:
    path = tmp_path / "nexrad-stations.txt"
    path.write_text(_homr_text(modern))
    return path


@dataclass
class _Server:
    url: str
    body: bytes = b""
    status: int = 200
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def ncei(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    """A real HTTP server on 127.0.0.1 standing in for NCEI; SITES_URL points at it."""
    state = _Server(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(f"GET {self.path}")
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/access/homr/file/nexrad-stations.txt"
    monkeypatch.setattr(sites_module, "SITES_URL", state.url)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_homr_table_is_cut_at_its_column_spans(homr: Path, modern: Sweep) -> None:
    sites = nexrad_sites(homr)
    assert set(sites) == {"KLBB", "TSTA", "TSTB"}  # TSTC is a TDWR: no Level II to locate
    assert sites["TSTA"] == RadarSite(35.25, -97.5, 1200 * 0.3048, "TEST SITE WITH SPACES")
    assert sites["TSTB"] == RadarSite(38.75, -27.125, 3500 * 0.3048, "OVERSEAS TEST")
    assert sites["KLBB"].latitude == pytest.approx(modern.latitude, abs=1e-5)
    assert sites["KLBB"].altitude == pytest.approx(modern.altitude, abs=0.2)  # whole feet
    assert nexrad_site("klbb", homr) == sites["KLBB"]
    assert nexrad_site("NONE", homr) is None


def test_message_1_volume_is_located_from_the_site_table(
    legacy: tuple[Path, np.ndarray], modern: Sweep, homr: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, codes = legacy
    # what xradar itself says about this volume: the message-1 placeholder location
    root = xradar.io.open_nexradlevel2_datatree(path, mask_and_scale=False).to_dataset()
    assert (float(root["latitude"]), float(root["longitude"]), float(root["altitude"])) == (
        0.0,
        0.0,
        0.0,
    )
    monkeypatch.setenv(SITES_ENV, str(homr))  # the table by environment variable
    sweep = read_lowest_sweep(path)
    assert sweep.site == "KLBB" and sweep.site_source == "table"
    # the table row against the message-31 volume's own location: same antenna
    assert sweep.latitude == pytest.approx(modern.latitude, abs=1e-5)
    assert sweep.longitude == pytest.approx(modern.longitude, abs=1e-5)
    assert sweep.altitude == pytest.approx(modern.altitude, abs=1.0)
    # the gates are the real ones: identical dBZ to the message-31 sweep at those gates
    ref = modern.dbz[:, ::4][:, : codes.shape[1]]
    assert np.array_equal(np.isnan(sweep.dbz), np.isnan(ref))
    assert np.array_equal(sweep.dbz[~np.isnan(ref)], ref[~np.isnan(ref)])
    grid = read_reflectivity(path, spacing=0.05)
    assert grid.attrs["radar_site_source"] == "table"
    # the 460 km of gates are centred on Lubbock, not on 0 N 0 E
    assert (float(grid.lat.min()) + float(grid.lat.max())) / 2 == pytest.approx(33.65, abs=0.1)


def test_site_table_by_path_wins_over_the_environment(
    legacy: tuple[Path, np.ndarray], homr: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = legacy
    moved = tmp_path / "moved.txt"  # the same table with KLBB 1 degree further north
    moved.write_text(homr.read_text().replace("KLBB", "XXXX").replace("TSTA", "KLBB", 1))
    monkeypatch.setenv(SITES_ENV, str(moved))
    assert read_lowest_sweep(path).latitude == 35.25
    by_path = read_lowest_sweep(path, site_table=homr)
    assert by_path.latitude == nexrad_sites(homr)["KLBB"].latitude
    # a named table that is not there is an error, never a quiet fall-back to another
    with pytest.raises(SiteTableError, match=r"absent\.txt: NEXRAD site table \(site_table=\)"):
        resolve_site_table(tmp_path / "absent.txt")
    monkeypatch.setenv(SITES_ENV, str(tmp_path / "gone.txt"))
    with pytest.raises(RadarFileError, match=rf"msg1: .*gone\.txt: .*\${SITES_ENV}"):
        read_lowest_sweep(path)


def test_site_table_is_downloaded_once_into_the_cache(
    legacy: tuple[Path, np.ndarray], modern: Sweep, ncei: _Server
) -> None:
    path, _ = legacy
    ncei.body = _homr_text(modern).encode()
    cached = default_cache_dir() / "homr" / "nexrad-stations.txt"
    assert not cached.exists()
    first = read_lowest_sweep(path)
    assert (first.site_source, first.latitude) == ("table", nexrad_sites(cached)["KLBB"].latitude)
    assert ncei.requests == ["GET /access/homr/file/nexrad-stations.txt"]
    assert cached.read_bytes() == ncei.body
    source = json.loads((cached.parent / ".nexrad-stations.txt.source.json").read_text())
    assert source["url"] == ncei.url
    # nothing but the table and its provenance is left in the cache (no staging files)
    assert sorted(p.name for p in cached.parent.iterdir()) == [
        ".nexrad-stations.txt.source.json",
        "nexrad-stations.txt",
    ]
    again = read_lowest_sweep(path)
    assert again.latitude == first.latitude
    assert len(ncei.requests) == 1  # the cached copy is reused: no second request


def test_no_site_table_reachable_says_how_to_give_one(
    legacy: tuple[Path, np.ndarray], ncei: _Server
) -> None:
    path, _ = legacy
    ncei.status, ncei.body = 404, b"not found"
    with pytest.raises(RadarFileError) as info:
        read_lowest_sweep(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for way in ("site=RadarSite(", SITES_ENV, "network access to NCEI", "HTTP 404"):
        assert way in message
    assert ncei.requests  # it did try the download
    with pytest.raises(SiteTableUnavailable):
        nexrad_sites()
    # nothing half-downloaded is cached for the next call to trust
    assert not (default_cache_dir() / "homr" / "nexrad-stations.txt").exists()


def test_downloaded_page_that_is_not_a_table_is_not_cached(ncei: _Server) -> None:
    ncei.body = b"<html><body>Service temporarily unavailable</body></html>\n"
    with pytest.raises(SiteTableError, match=r"nexrad-stations\.txt \(downloaded\): .*:2: "):
        nexrad_sites()
    assert not (default_cache_dir() / "homr" / "nexrad-stations.txt").exists()


def test_malformed_site_table_names_file_and_line(
    homr: Path, legacy: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    lines = homr.read_text().splitlines()
    bad = tmp_path / "bad_lat.txt"
    bad.write_text("\n".join([*lines[:3], lines[3].replace("35.25", "35.2x"), *lines[4:]]))
    with pytest.raises(SiteTableError, match=r"bad_lat\.txt:4: LAT '35\.2x0+' is not a number"):
        nexrad_sites(bad)
    with pytest.raises(RadarFileError, match=r"msg1: .*unusable: .*bad_lat\.txt:4: LAT"):
        read_lowest_sweep(legacy[0], site_table=bad)
    shifted = tmp_path / "shifted.txt"  # a column dropped: the header no longer fits HOMR's
    shifted.write_text("\n".join(line[:9] + line[14:] for line in lines))
    with pytest.raises(SiteTableError, match=r"shifted\.txt:1: header columns"):
        nexrad_sites(shifted)
    twice = tmp_path / "twice.txt"
    twice.write_text("\n".join([*lines, lines[2]]))
    with pytest.raises(SiteTableError, match=rf"twice\.txt:{len(lines) + 1}: ICAO KLBB listed"):
        nexrad_sites(twice)


def test_message_1_volume_with_an_unknown_site_is_an_error(tmp_path: Path, homr: Path) -> None:
    unknown = tmp_path / "XXXX_msg1"
    _message_1_volume(unknown, icao=b"XXXX")
    with pytest.raises(RadarFileError, match=r"XXXX_msg1: .*'XXXX' is not in the NEXRAD site"):
        read_lowest_sweep(unknown, site_table=homr)
    # the caller may say where the radar is (and then no table is needed at all)
    site = RadarSite(33.654139, -101.81416, 1029.6, "XXXX")
    sweep = read_lowest_sweep(unknown, site=site)
    assert (sweep.latitude, sweep.longitude, sweep.site_source) == (33.654139, -101.81416, "caller")
    blank = tmp_path / "blank_msg1"
    _message_1_volume(blank, icao=b"\0\0\0\0")
    with pytest.raises(RadarFileError, match=r"blank_msg1: .*names no site to look up"):
        read_lowest_sweep(blank, site_table=homr)


def test_a_located_volume_keeps_its_own_site(modern: Sweep) -> None:
    assert modern.site_source == "volume"
    other = RadarSite(0.5, 0.5, 0.0, "elsewhere")
    assert read_lowest_sweep(NEXRAD, site=other).latitude == modern.latitude


# ---------------------------------------------------------------------------- compressed


@needs_nexrad
@pytest.mark.parametrize("kind", ["gz", "bz2"])
def test_compressed_nexrad_volume_reads_as_the_original(
    kind: str, tmp_path: Path, modern: Sweep
) -> None:
    packed = tmp_path / f"{NEXRAD.name}.{kind}"
    opener = gzip.open if kind == "gz" else bz2.open
    with NEXRAD.open("rb") as src, opener(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    sweep = read_lowest_sweep(packed)
    assert sweep.source == str(packed) and sweep.site == "KLBB"
    assert (sweep.latitude, sweep.longitude, sweep.altitude) == (
        modern.latitude,
        modern.longitude,
        modern.altitude,
    )
    assert np.array_equal(sweep.dbz, modern.dbz, equal_nan=True)


@needs_nexrad
def test_corrupt_compressed_volume_names_the_file(tmp_path: Path) -> None:
    packed = tmp_path / "KLBB.gz"
    data = gzip.compress(NEXRAD.read_bytes()[:200_000])
    packed.write_bytes(data[: len(data) // 2])  # cut inside the gzip stream
    with pytest.raises(RadarFileError, match=r"KLBB\.gz: cannot decompress \(gzip\)"):
        read_lowest_sweep(packed)


@needs_odim
def test_compressed_odim_volume(tmp_path: Path) -> None:
    packed = tmp_path / f"{ODIM.name}.gz"
    packed.write_bytes(gzip.compress(ODIM.read_bytes()))
    a, b = read_lowest_sweep(ODIM), read_lowest_sweep(packed)
    assert np.array_equal(a.dbz, b.dbz, equal_nan=True) and a.site == b.site == "frave"


# ---------------------------------------------------------------------------- ODIM name


@needs_odim
def test_odim_site_name_from_source(tmp_path: Path) -> None:
    with h5py.File(ODIM, "r") as h5:
        source = h5["what"].attrs["source"].decode()
    assert source == "NOD:frave,PLC:Avesnes,WMO:07083"
    assert read_reflectivity(ODIM, spacing=0.1).attrs["radar_site"] == "frave"
    copy = tmp_path / "wmo_only.h5"
    shutil.copy(ODIM, copy)
    with h5py.File(copy, "r+") as h5:
        h5["what"].attrs["source"] = np.bytes_(b"PLC:Avesnes,WMO:07083")
    assert read_lowest_sweep(copy).site == "07083"
    with h5py.File(copy, "r+") as h5:
        h5["what"].attrs["source"] = np.bytes_(b"PLC:Avesnes")
    assert read_lowest_sweep(copy).site == ""
