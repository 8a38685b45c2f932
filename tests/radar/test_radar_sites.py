"""Radar site location for volumes without one (legacy NEXRAD message type 1), compressed
volumes, and the ODIM site name, on volumes built from the shared real files.

No legacy (pre-2008) NEXRAD volume is among the shared files, so one is built here from the
real KLBB message-31 volume: its lowest sweep re-encoded as ICD 2620010 message type 1
records (Table III: 100-byte radial header, 1 km reflectivity gates as one byte each, no
site coordinates). The reflectivity codes are the real ones (every 4th 250 m gate); only the
container is legacy. Before this reader took the site from the NEXRAD table it returned such
a volume at 0 N 0 E, altitude 0, and gridded it there without a word.
"""

from __future__ import annotations

import bz2
import gzip
import shutil
import struct
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
from stratocast.radar.sites import nexrad_sites

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


def test_message_1_volume_is_located_from_the_site_table(
    legacy: tuple[Path, np.ndarray], modern: Sweep
) -> None:
    path, codes = legacy
    # what xradar itself says about this volume: the message-1 placeholder location
    root = xradar.io.open_nexradlevel2_datatree(path, mask_and_scale=False).to_dataset()
    assert (float(root["latitude"]), float(root["longitude"]), float(root["altitude"])) == (
        0.0,
        0.0,
        0.0,
    )
    sweep = read_lowest_sweep(path)
    assert sweep.site == "KLBB" and sweep.site_source == "table"
    # the table (NCEI HOMR) against the message-31 volume's own location: same antenna
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


def test_message_1_volume_with_an_unknown_site_is_an_error(tmp_path: Path) -> None:
    if not NEXRAD.exists():
        pytest.skip("shared NEXRAD file absent")
    unknown = tmp_path / "XXXX_msg1"
    _message_1_volume(unknown, icao=b"XXXX")
    with pytest.raises(RadarFileError, match=r"XXXX_msg1.*'XXXX' is not in the NEXRAD site"):
        read_lowest_sweep(unknown)
    # the caller may say where the radar is
    site = RadarSite(33.654139, -101.81416, 1029.6, "XXXX")
    sweep = read_lowest_sweep(unknown, site=site)
    assert (sweep.latitude, sweep.longitude, sweep.site_source) == (33.654139, -101.81416, "caller")
    blank = tmp_path / "blank_msg1"
    _message_1_volume(blank, icao=b"\0\0\0\0")
    with pytest.raises(RadarFileError, match=r"blank_msg1.*names no site to look up"):
        read_lowest_sweep(blank)


def test_a_located_volume_keeps_its_own_site(modern: Sweep) -> None:
    assert modern.site_source == "volume"
    other = RadarSite(0.5, 0.5, 0.0, "elsewhere")
    assert read_lowest_sweep(NEXRAD, site=other).latitude == modern.latitude


def test_site_table() -> None:
    sites = nexrad_sites()
    assert len(sites) == 163  # NEXRAD rows of the HOMR file (TDWR sites left out)
    assert nexrad_site("klbb") == sites["KLBB"]
    assert sites["KLBB"].altitude == pytest.approx(3378 * 0.3048)
    assert nexrad_site("NONE") is None
    assert all((s.latitude, s.longitude) != (0.0, 0.0) for s in sites.values())


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
