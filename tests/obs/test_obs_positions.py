"""Issue 11 item 5: every report position and elevation is range- and consistency-checked in
QC; a report with a bad one is quarantined whole (check ``position``, the reason names the
value). Real DWD SYNOP BUFR reports, mutated; before the check a longitude of -790.2 was
stored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stratocast.obs.base import Report
from stratocast.obs.qc import QCConfig, check_position, run_qc
from stratocast.obs.stations import Station, StationCatalogue
from stratocast.obs.table import collect

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
BUFR = DATA / "bufr" / "dwd_synop_20210516T12.bufr"
pytestmark = pytest.mark.skipif(
    not BUFR.is_file(), reason=f"real sample data not found at {BUFR} (../shared/data)"
)


@pytest.fixture(scope="module")
def reports() -> list[Report]:
    from stratocast.obs.sources.synop_bufr import SynopBufrSource

    return [r for r in SynopBufrSource().read(BUFR) if isinstance(r, Report)][:40]


def _qc(reports: list[Report], catalogue: StationCatalogue | None = None) -> pd.DataFrame:
    return run_qc(collect(reports, "synop_bufr").values, QCConfig(), catalogue=catalogue)


def _catalogue(reports: list[Report]) -> StationCatalogue:
    return StationCatalogue(Station(r.station_id, r.lat, r.lon, r.elevation) for r in reports)


def test_real_positions_pass(reports: list[Report]) -> None:
    out = _qc(reports, _catalogue(reports))
    assert not out["check"].eq("position").any()


@pytest.mark.parametrize(
    ("field", "bad", "words"),
    [
        ("lon", -790.2, "longitude -790.2 outside [-180, 180]"),
        ("lon", 190.0, "longitude 190 outside [-180, 180]"),
        ("lat", 95.0, "latitude 95 outside [-90, 90]"),
        ("lat", float("nan"), "latitude nan outside [-90, 90]"),
        ("elevation", 9500.0, "elevation 9500 m outside [-500, 9000] m"),
        ("elevation", -999.0, "elevation -999 m outside [-500, 9000] m"),
    ],
)
def test_bad_position_quarantines_the_whole_report(
    reports: list[Report], field: str, bad: float, words: str
) -> None:
    victim = reports[3]
    changed = victim._replace(**{field: bad})  # type: ignore[arg-type]
    mutated = [*reports[:3], changed, *reports[4:]]
    out = _qc(mutated)
    rows = out["report_id"] == victim.report_id
    assert rows.sum() == len(victim.values) > 1
    assert out.loc[rows, "check"].eq("position").all()
    assert out.loc[rows, "reason"].eq(words).all()
    assert not out.loc[~rows, "check"].eq("position").any()  # the rest of the batch lands


def test_position_far_from_catalogue(reports: list[Report]) -> None:
    cat = _catalogue(reports)
    victim = reports[5]
    # 0.5 degrees of latitude north: ~55.6 km, beyond the 25 km default
    moved = victim._replace(lat=victim.lat + 0.5)
    out = _qc([*reports[:5], moved, *reports[6:]], cat)
    rows = out["report_id"] == victim.report_id
    assert out.loc[rows, "check"].eq("position").all()
    reason = out.loc[rows, "reason"].iloc[0]
    assert "55.6 km from the catalogue position of station " + victim.station_id in reason
    assert "more than 25 km" in reason
    assert out["check"].eq("position").sum() == rows.sum()
    # a looser tolerance, from config, lets it pass
    loose = run_qc(
        collect([moved], "synop_bufr").values, QCConfig(position_max_km=60.0), catalogue=cat
    )
    assert not loose["check"].eq("position").any()


def test_unknown_elevation_is_not_wrong(reports: list[Report]) -> None:
    out = _qc([reports[0]._replace(elevation=float("nan"))])
    assert not out["check"].eq("position").any()


def test_tables_without_positions_are_left_alone() -> None:
    df = pd.DataFrame({"station_id": ["A"], "variable": ["t2m"], "value": [280.0], "check": [None]})
    check_position(df)
    assert df["check"].isna().all()


def test_flight_altitude_is_not_a_station_height(reports: list[Report]) -> None:
    """Aircraft reports carry the flight altitude as elevation: 11 km is fine there (up to the
    per-source bound, 20 km), but not for a station."""
    high = next(r for r in reports if not r.flags)._replace(elevation=11000.0)
    aircraft = run_qc(collect([high], "aircraft_bufr").values, QCConfig())
    assert not aircraft["check"].eq("position").any()
    station = run_qc(collect([high], "synop_bufr").values, QCConfig())
    assert station["check"].eq("position").all()
    too_high = run_qc(
        collect([high._replace(elevation=25000.0)], "aircraft_bufr").values, QCConfig()
    )
    assert too_high["reason"].eq("elevation 25000 m outside [-500, 20000] m").all()
