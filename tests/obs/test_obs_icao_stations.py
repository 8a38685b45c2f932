"""The ICAO METAR station list (Debian weather-util-data INI, locations in radians).

References are independent of the loader: NOAA's isd-history.csv (degrees, read here with the
csv module) for three airports, and the section/None counts taken with grep on the file.
"""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratocast.obs.base import SourceFileError
from stratocast.obs.icao_stations import load_icao_stations
from stratocast.obs.sources.metar import MetarSource

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
INI = DATA / "stations" / "icao_metar_stations.ini.gz"
ISD = DATA / "stations" / "isd-history.csv"
needs_data = pytest.mark.skipif(not INI.is_file(), reason=f"station list not found at {INI}")


def _isd_degrees(icao: str) -> tuple[float, float]:
    with ISD.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["ICAO"] == icao and row["END"] >= "2020":
                return float(row["LAT"]), float(row["LON"])
    raise LookupError(icao)


@needs_data
def test_locations_are_radians_and_agree_with_the_isd_history() -> None:
    loaded = load_icao_stations(INI)
    # `grep -c '^\[' ` = 5879 sections, `grep -c 'location = None'` = 245 of them unplaced
    assert loaded.sections == 5879
    assert sum(r == "location unknown (None)" for r in loaded.skipped.values()) == 245
    assert len(loaded.catalogue) + len(loaded.skipped) == loaded.sections
    assert loaded.skipped["AGGG"] == "location unknown (None)"
    for icao in ("LFPG", "EGLL", "KLBB"):
        station = loaded.catalogue.by_icao(icao)
        assert station is not None, icao
        lat, lon = _isd_degrees(icao)
        assert abs(station.lat - lat) < 0.02 and abs(station.lon - lon) < 0.02, icao


@needs_data
def test_metar_collectives_are_located_with_the_list() -> None:
    catalogue = load_icao_stations(INI).catalogue
    # the collectives are from 2024-08/09 (see test_obs_metar.py); only location matters here
    src = MetarSource(reference_time=datetime(2024, 9, 8, 14, 0, tzinfo=UTC))
    reports = rejections = 0
    for path in sorted((DATA / "metar").glob("*.txt")):
        for rec in src.read(path, catalogue):
            if hasattr(rec, "values"):
                reports += 1
                located = catalogue.by_icao(rec.station_id)
                assert located is not None and (rec.lat, rec.lon) == (located.lat, located.lon)
            else:
                rejections += 1
    assert reports >= 50  # the sample collectives hold ~55 decodable reports


def test_unplaceable_entries_are_counted_and_bad_files_named(tmp_path: Path) -> None:
    good = tmp_path / "stations.ini.gz"
    with gzip.open(good, "wt") as fh:
        fh.write(
            "[abcd]\nlocation = (0.5, 1.0)\n\n[efgh]\nlocation = (0.5)\n\n"
            "[ijkl]\nlocation = (2.0, 0.1)\n\n[mnop]\ndescription = no location\n"
        )
    loaded = load_icao_stations(good)
    assert len(loaded.catalogue) == 1 and loaded.sections == 4
    assert loaded.catalogue.by_icao("ABCD") is not None
    assert loaded.skipped["EFGH"].startswith("malformed location")
    assert "out of range" in loaded.skipped["IJKL"]  # 2 rad = 114.6° latitude
    assert loaded.skipped["MNOP"] == "no location key"
    bad = tmp_path / "bad.ini"
    bad.write_text("location = (0.1, 0.2)\n")
    with pytest.raises(SourceFileError, match=r"bad\.ini.*line: 1"):
        load_icao_stations(bad)
