"""Decoder agreement: MetarSource against the independent ``metar`` PyPI package (python-metar)
on every shared METAR sample, field by field, and on the issue-11/12 mutations of real reports.

Every field both decode is compared: temperature, dewpoint (the package reads the remark
T-group too), wind speed and direction, the altimeter setting (``qnh``) and the SLP remark
(``msl``). Where the two differ, the difference is listed below with its justification; the
test fails on any difference not listed and on any listed one that no longer occurs.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.metar import MetarSource
from stratocast.obs.stations import StationCatalogue
from stratocast.testing.metar_reference import metar_package_values

pytest.importorskip("metar.Metar", reason="the metar package is not installed")

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
METAR = DATA / "metar"
pytestmark = pytest.mark.skipif(
    not METAR.is_dir(), reason=f"real sample data not found at {METAR} (../shared/data)"
)
REF = datetime(2024, 9, 8, 14, 0, tzinfo=UTC)
# temperatures and wind are exact arithmetic on the same digits; the package converts inHg
# with 33.8639 hPa and stratocast with Pint's 3386.389 Pa (3 ppm: 0.3 Pa at 1000 hPa, far
# below the 0.01 inHg = 34 Pa resolution of the group)
TOL = {"t2m": 1e-9, "d2m": 1e-9, "ws10": 1e-9, "wd10": 0.0, "qnh": 1.0, "msl": 1e-6}

# Reports one decoder decodes and the other refuses, with why stratocast's answer is right.
# (QQQQ 081354Z= of collective.txt and the Canadian SA lines of sa.txt, which stratocast
# rejects, are not listed: the package finds nothing in them either.)
JUSTIFIED_REJECTIONS = {
    "collective.txt:32": "day/time 'O81354Z' has a letter O for a zero: without a time the "
    "report cannot be stored; the package (strict=False) skips the group and keeps the wind",
    "collective.txt:33": "'1QQQ' is no ICAO station identifier; the package does not check it",
    "collective2.txt:5": "KDMH is not in the airportsdata catalogue (unknown_station)",
    "collective2.txt:7": "KNAK is not in the airportsdata catalogue (unknown_station)",
    "kmwn.txt:4": "KMWN (Mount Washington observatory) is not in the airportsdata catalogue",
    "nullbyte.txt:5": "a NUL byte inside the report: the transmission is corrupt and nothing "
    "after it can be trusted; the package decodes around it",
}
# Fields the package decodes that stratocast has on purpose not (or the reverse), per report.
# (none on the shared samples: every field both decode agrees)
JUSTIFIED_FIELDS: dict[tuple[str, str], str] = {}


def field_differences(ref: dict[str, float], rec: Report) -> dict[str, str]:
    out = {}
    for var, tol in TOL.items():
        a, b = ref.get(var), rec.values.get(var)
        if var == "msl" and a is None and b is not None and "SLP" not in rec.raw:
            continue  # stratocast's msl without SLP is derived (reduced), the package has none
        if (a is None) != (b is None) or (
            a is not None and b is not None and not math.isclose(a, b, rel_tol=0, abs_tol=tol)
        ):
            out[var] = f"metar package {a}, stratocast {b}"
    return out


@pytest.fixture(scope="module")
def compared(airports: StationCatalogue) -> dict[str, object]:
    src = MetarSource(reference_time=REF)
    rejections: dict[str, str] = {}
    fields: dict[tuple[str, str], str] = {}
    n_compared = n_values = 0
    for path in sorted(METAR.glob("*.txt")):
        for rec in src.read(path, airports):
            if not isinstance(rec, Report | Rejection):
                continue
            ref = package_values(rec.raw, rec.time or REF)
            if isinstance(rec, Rejection):
                if ref:  # the package decoded something we refused
                    rejections[rec.report_id] = f"stratocast {rec.check}: {rec.reason}"
                continue
            if ref is None:
                rejections[rec.report_id] = "the metar package refuses it"
                continue
            n_compared += 1
            n_values += sum(v in ref for v in TOL)
            for var, d in field_differences(ref, rec).items():
                fields[(rec.report_id, var)] = d
    return {"rejections": rejections, "fields": fields, "n": n_compared, "values": n_values}


def test_every_field_both_decode_agrees(compared: dict) -> None:
    assert compared["n"] >= 50 and compared["values"] >= 250
    unexplained = {k: v for k, v in compared["fields"].items() if k not in JUSTIFIED_FIELDS}
    assert not unexplained, "\n".join(f"{k}: {v}" for k, v in unexplained.items())
    stale = set(JUSTIFIED_FIELDS) - set(compared["fields"])
    assert not stale, f"justified differences that no longer occur: {stale}"


def test_rejections_differ_only_where_justified(compared: dict) -> None:
    got = compared["rejections"]
    unexplained = {k: v for k, v in got.items() if k not in JUSTIFIED_REJECTIONS}
    assert not unexplained, "\n".join(f"{k}: {v}" for k, v in unexplained.items())
    stale = set(JUSTIFIED_REJECTIONS) - set(got)
    assert not stale, f"justified rejections that no longer occur: {stale}"


KALO = "KALO 081354Z AUTO 02049G53KT 6SM HZ FEW015 OVC060 M04/M07 A2984 RMK AO2 SLP119 T10441072"


def _ours(tmp_path: Path, airports: StationCatalogue, text: str) -> Report | Rejection:
    f = tmp_path / "20240908.txt"
    f.write_text(text + "=\n")
    (rec,) = [
        r for r in MetarSource(reference_time=REF).read(f, airports) if not hasattr(r, "path")
    ]
    assert isinstance(rec, Report | Rejection)
    return rec


def test_mutations_of_a_real_report(tmp_path: Path, airports: StationCatalogue) -> None:
    """The issue's cases, on KALO of collective.txt, each with how the two decoders differ."""
    assert KALO in (METAR / "collective.txt").read_bytes().decode("latin-1").replace(
        " \r\r\n     ", " "
    )
    # COR before the station: both decode it, to the same values
    cor = _ours(tmp_path, airports, f"METAR COR {KALO}")
    ref = package_values(f"METAR COR {KALO}", REF)
    assert isinstance(cor, Report) and ref is not None
    assert field_differences(ref, cor) == {}
    # SLP in the body: both decode it as sea-level pressure
    body = KALO.replace(" SLP119", "").replace(" A2984 ", " A2984 SLP119 ")
    rec, ref = _ours(tmp_path, airports, body), package_values(body, REF)
    assert isinstance(rec, Report) and ref is not None and ref["msl"] == 101190.0
    assert field_differences(ref, rec) == {}
    # direction 900: the package (strict=False) stops at the bad group and loses every later
    # one (temperature, pressure); stratocast keeps them and quarantines the wind group whole
    bad = KALO.replace("02049G53KT", "90049G53KT")
    rec, ref = _ours(tmp_path, airports, bad), package_values(bad, REF)
    assert ref == {}
    assert isinstance(rec, Report) and rec.values["t2m"] == pytest.approx(268.75)
    assert rec.flags["ws10"][0] == rec.flags["wd10"][0] == "wind_group"
    # A0000: the package reports an altimeter setting of 0 hPa; stratocast rejects the report
    # (no station pressure exists for it: issue 12's complex-number crash)
    zero = KALO.replace("A2984", "A0000")
    rec, ref = _ours(tmp_path, airports, zero), package_values(zero, REF)
    assert ref is not None and ref["qnh"] == 0.0
    assert isinstance(rec, Rejection) and rec.check == "decode_error"


def package_values(text: str, when: datetime) -> dict[str, float] | None:
    return metar_package_values(text, when.month, when.year)
