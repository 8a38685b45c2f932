"""Decoder agreement: stratocast's SYNOP TAC values against the independent ``pymetdecoder``
(PyPI) on every report of every shared SYNOP TAC sample, field by field wherever both decode.

Fields: station, day/hour, air temperature, dewpoint, station pressure, MSL pressure, wind
speed and direction. Reports are cut from the files here (independently of the reader) and
given to pymetdecoder as ``AAXX YYGGi <report>``. Disagreements, each justified:

* **calm wind** (``dd ff = 00 00``): pymetdecoder gives no direction (``calm: True``);
  stratocast stores ``wd10 = 0`` with ``ws10 = 0`` (u = v = 0), the convention of all its
  readers for a calm. Checked: every such case is a pymetdecoder calm with speed 0.
* **NIL reports and a doubled station number** (``78370 78370 ...``): both refuse them
  (pymetdecoder raises or decodes no value, stratocast rejects with ``nil``/``malformed_group``).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.synop_tac import SynopTacSource, catalogue_from_wmo_csv
from stratocast.obs.stations import StationCatalogue

pms = pytest.importorskip("pymetdecoder.synop", reason="pymetdecoder (dev extra) not installed")

TAC = (Path(__file__).parents[2] / ".." / "shared" / "data" / "synop_tac").resolve()
pytestmark = pytest.mark.skipif(not TAC.is_dir(), reason=f"real SYNOP TAC data not at {TAC}")
KNOT = 1852 / 3600
_HEADING = re.compile(r"[A-Z]{4}\d\d")


def _reports(text: str) -> Iterator[tuple[str, str]]:
    """(``AAXX YYGGi``, report text) of every report of a bulletin file."""
    aaxx, parts = "", []
    for line in text.split("\n"):
        tokens = line.split()
        if not tokens or tokens[0].upper() in ("ZCZC", "NNNN") or _HEADING.fullmatch(tokens[0]):
            continue
        if tokens[0] == "AAXX":
            aaxx, tokens = " ".join(tokens[:2]), tokens[2:]
        for token in tokens:
            while "=" in token:
                head, _, token = token.partition("=")
                if head:
                    parts.append(head)
                if parts:
                    yield aaxx, " ".join(parts)
                    parts = []
            if token:
                parts.append(token)


def _samples() -> list[tuple[Path, StationCatalogue, SynopTacSource]]:
    cuba = catalogue_from_wmo_csv(TAC / "gts_data" / "station_list.csv", west_positive=True)
    out = [(TAC / "gts_data" / "WX.00", cuba, SynopTacSource("2023-01-31T06:00"))]
    for folder in ("example_with_bufr", "wis2box_data"):
        catalogue = catalogue_from_wmo_csv(TAC / folder / "station_list.csv")
        out += [(p, catalogue, SynopTacSource()) for p in sorted((TAC / folder).glob("*.txt"))]
    return out


def _value(d: dict[str, Any], key: str) -> float | None:
    item = d.get(key)
    return item.get("value") if isinstance(item, dict) else None


def _theirs(d: dict[str, Any]) -> dict[str, float | None]:
    """pymetdecoder's output in stratocast's variables and SI units."""
    t, td = _value(d, "air_temperature"), _value(d, "dewpoint_temperature")
    p, slp = _value(d, "station_pressure"), _value(d, "sea_level_pressure")
    wind = d.get("surface_wind") or {}
    speed = (wind.get("speed") or {}).get("value")
    if speed is not None and (wind.get("speed") or {}).get("unit") == "KT":
        speed *= KNOT
    return {
        "t2m": None if t is None else t + 273.15,
        "d2m": None if td is None else td + 273.15,
        "sp": None if p is None else p * 100.0,
        "msl": None if slp is None else slp * 100.0,
        "ws10": None if speed is None else float(speed),
        "wd10": (wind.get("direction") or {}).get("value"),
    }


def _decode(text: str) -> dict[str, Any] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymetdecoder warns on odd cloud/precip groups
        try:
            return dict(pms.SYNOP().decode(text))
        except Exception:  # pymetdecoder.DecodeError and what it lets escape: "refused"
            return None


def _compare(r: Report, d: dict[str, Any], compared: Counter[str], calms: list[str]) -> None:
    assert _value(d, "station_id") == r.station_id, r.report_id
    obs_time = d["obs_time"]
    assert (obs_time["day"]["value"], obs_time["hour"]["value"]) == (r.time.day, r.time.hour)
    compared["station"] += 1
    compared["time"] += 1
    theirs = _theirs(d)
    calm = bool(((d.get("surface_wind") or {}).get("direction") or {}).get("calm"))
    for var, want in theirs.items():
        got = r.values.get(var)
        if var == "wd10" and calm and want is None:
            # calm: our convention is a direction of 0 with speed 0 (see module docstring)
            assert got == 0.0 and r.values["ws10"] == 0.0 == theirs["ws10"], r.report_id
            calms.append(r.report_id)
            continue
        if var == "msl" and want is None and got is not None:
            # ours reduced from station pressure (no 4PPPP sent): not a decoded value
            assert "sp" in r.values, r.report_id
            continue
        assert (got is None) == (want is None), (r.report_id, var, got, want)
        if got is not None and want is not None:
            assert got == pytest.approx(want, abs=1e-6), (r.report_id, var)
            compared[var] += 1


def test_values_agree_with_pymetdecoder() -> None:
    compared: Counter[str] = Counter()
    calms: list[str] = []
    both_refuse: list[str] = []
    for path, catalogue, source in _samples():
        ours = {r.raw: r for r in source.read(path, catalogue) if isinstance(r, Report | Rejection)}
        for aaxx, text in _reports(path.read_text("latin-1")):
            r = ours[text]  # every report the cut finds, the reader yields with the same text
            d = _decode(f"{aaxx} {text}")
            if isinstance(r, Rejection):
                # refused by pymetdecoder too, or decoded to no value at all (a NIL report)
                assert r.check in ("nil", "malformed_group"), r
                assert d is None or not any(v is not None for v in _theirs(d).values()), r
                both_refuse.append(r.report_id)
                continue
            assert isinstance(r, Report) and d is not None, (r, d)  # it decodes ours too
            _compare(r, d, compared, calms)
    # the disagreements of the module docstring, and no other
    assert len(both_refuse) == 3 and 20 <= len(calms) <= 40
    for var in ("station", "time", "t2m", "d2m", "sp", "ws10", "wd10"):
        assert compared[var] >= 200, (var, compared)
    assert compared["msl"] >= 150, compared
