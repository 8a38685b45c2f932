"""MetarSource agrees with the ``metar`` PyPI package on every real report both decode.

The throughput benchmark (benchmarks/ingest.py) compares the two decoders; its figures mean
something only if they decode the same values, which this pins down on the real collectives.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratocast.obs.base import Report
from stratocast.obs.sources.metar import MetarSource
from stratocast.obs.stations import StationCatalogue
from stratocast.testing.metar_reference import metar_package_values

pytest.importorskip("metar.Metar", reason="the metar package is not installed")

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not (DATA / "metar").is_dir(), reason=f"real sample data not found at {DATA / 'metar'}"
)
REF = datetime(2024, 9, 8, 14, 0, tzinfo=UTC)
# exact definitions, not the package's rounded 0.514444 m/s per knot
# the package converts inHg with 33.8639 hPa, stratocast with 3386.389 Pa (3 ppm); the
# report's own resolution is 0.01 inHg = 34 Pa
TOL = {"t2m": 1e-9, "d2m": 1e-9, "ws10": 1e-9, "wd10": 0.0, "msl": 1.0, "qnh": 1.0}


def _differences(ref: dict[str, float], ours: dict[str, float]) -> list[str]:
    bad = []
    for var, tol in TOL.items():
        a, b = ref.get(var), ours.get(var)
        if var == "msl" and a is None and b is not None and "qnh" in ours:
            continue  # no SLP: ours is reduced from the QNH's station pressure; the package: none
        if (a is None) != (b is None) or (
            a is not None and b is not None and not math.isclose(a, b, rel_tol=0, abs_tol=tol)
        ):
            bad.append(f"{var}: metar package {a}, MetarSource {b}")
    return bad


@needs_data
def test_metar_source_agrees_with_metar_package(airports: StationCatalogue) -> None:
    src = MetarSource(reference_time=REF)
    compared = 0
    problems: list[str] = []
    for path in sorted((DATA / "metar").glob("*.txt")):
        for rec in src.read(path, airports):
            if not isinstance(rec, Report):
                continue
            ref = metar_package_values(rec.raw, rec.time.month, rec.time.year)
            if ref is None:
                problems.append(f"{rec.report_id}: the metar package rejects {rec.raw!r}")
                continue
            compared += 1
            problems += [f"{rec.report_id}: {d}" for d in _differences(ref, dict(rec.values))]
    assert not problems, "\n".join(problems)
    # the collectives hold ~50 decodable reports: guard against comparing next to nothing
    assert compared >= 50


@needs_data
def test_hand_checked_pair_from_the_collective(airports: StationCatalogue) -> None:
    """One report read by hand, to show both sides decode what the text says.

    KALO 081354Z AUTO 02049G53KT ... M04/M07 A2984 RMK AO2 SLP119 T10441072
    -> T-group -4.4/-7.2 degC, 49 kt from 020, SLP 1011.9 hPa.
    """
    recs = {
        r.report_id: r
        for r in MetarSource(reference_time=REF).read(DATA / "metar" / "collective.txt", airports)
        if isinstance(r, Report)
    }
    kalo = recs["collective.txt:15"]
    assert isinstance(kalo, Report)
    ref = metar_package_values(kalo.raw, kalo.time.month, kalo.time.year)
    assert ref is not None
    expected = {
        "t2m": -4.4 + 273.15,
        "d2m": -7.2 + 273.15,
        "ws10": 49 * 1852.0 / 3600.0,
        "wd10": 20.0,
        "msl": 101190.0,
    }
    for var, want in expected.items():
        assert ref[var] == pytest.approx(want, abs=1e-6)
        assert kalo.values[var] == pytest.approx(want, abs=1e-6)
