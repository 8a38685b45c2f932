"""SYNOP BUFR: stratocast's decoded values against pdbufr's, on every shared SYNOP sample.

pdbufr (ECMWF, on PyPI) is a second decoder of the same files: it also sits on ecCodes'
unpack, but it selects values by its own rules (per-subset ranks in flat mode), where
stratocast decodes most messages with its own NumPy section-4 decoder (bufr_decode) and
picks the first occurrence of each key per subset by array operations. So this checks the
decoder and the key selection, value by value, on every field both decode:

* every lexicon element (t2m, d2m, ws10, wd10, msl, sp) that pdbufr has non-missing as the
  first occurrence in the subset (``#1#key``) equals stratocast's value exactly;
* latitude, longitude (to stratocast's 1e-6 rounding), station height, time to the minute
  and the WMO block/station number of every report.

Disagreements, listed and justified (each is asserted, so a change shows up here):

* ``msl`` that stratocast derives from ``sp`` where the message has none: pdbufr has no value
  to compare (a derived value is not decoded); not compared.
* subsets stratocast rejects: ``no_data`` (DWD sends 467 subsets of stations with no element
  observed, obs_3day 2): pdbufr has no lexicon value there either, asserted, so nothing is
  lost; ``no_station_id`` (synop_invalid_wigos_id: empty WIGOS id, no block/station):
  pdbufr has neither identifier nor any lexicon value, asserted.

pdbufr runs in a child process that leaves with ``os._exit``: in this environment
(pdbufr 0.15.1, ecCodes 2.50) a process that has read these files through pdbufr many times
aborts at interpreter exit ("double free or corruption"), which would fail the test run
after the fact; the values it produced are complete by then.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratocast.obs.base import Rejection, Report
from stratocast.obs.sources.synop_bufr import LEXICON, SynopBufrSource

pytest.importorskip("pdbufr")

BUFR = (Path(__file__).parents[2] / ".." / "shared" / "data" / "bufr").resolve()
FILES = (
    sorted([*BUFR.glob("*synop*.bufr"), BUFR / "obs_3day.bufr", BUFR / "syn_new.bufr"])
    if BUFR.is_dir()
    else []
)

_META = [
    "blockNumber",
    "stationNumber",
    "latitude",
    "longitude",
    "heightOfStationGroundAboveMeanSeaLevel",
    "heightOfStation",
    "year",
    "month",
    "day",
    "hour",
    "minute",
]
_KEYS = [*LEXICON, *_META]

# Child: every message of the file (found by ecCodes, not by stratocast's splitter) through
# pdbufr in flat mode, one row per subset; the wanted #1# values as JSON (None = missing).
_CHILD = r"""
import json, math, os, sys, tempfile, warnings
import eccodes, pdbufr
path, out, keys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
messages = []
with open(path, "rb") as f, tempfile.TemporaryDirectory() as tmp:
    one = os.path.join(tmp, "one.bufr")
    while (h := eccodes.codes_bufr_new_from_file(f)) is not None:
        try:
            data = eccodes.codes_get_message(h)
        finally:
            eccodes.codes_release(h)
        with open(one, "wb") as g:
            g.write(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = pdbufr.read_bufr(one, columns="all", flat=True)
        rows = []
        for row in df.to_dict("records"):
            got = {}
            for k in keys:
                v = row.get("#1#" + k)
                if v is None or isinstance(v, str):
                    got[k] = None
                else:
                    v = float(v)
                    got[k] = None if math.isnan(v) else v
            rows.append(got)
        messages.append(rows)
with open(out, "w") as g:
    json.dump(messages, g)
sys.stdout.flush()
os._exit(0)  # skip finalisation: see the module docstring
"""


def _pdbufr(path: Path, tmp: Path) -> list[list[dict[str, float | None]]]:
    out = tmp / f"{path.name}.json"
    subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(out), json.dumps(_KEYS)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    messages: list[list[dict[str, float | None]]] = json.loads(out.read_text())
    return messages


def _compare(r: Report, ref: dict[str, float | None]) -> list[str]:
    """Every disagreement between a report and pdbufr's row, as text."""
    bad = []
    for key, entry in LEXICON.items():
        v = ref[key]
        if v is None:
            continue
        # the first key spelling present wins in stratocast too (LEXICON order)
        first = next(
            k for k, e in LEXICON.items() if e.variable == entry.variable and ref[k] is not None
        )
        if first == key and r.values.get(entry.variable) != v:
            bad.append(f"{entry.variable} ({key}): {r.values.get(entry.variable)} != {v}")
    for key, ours in (("latitude", r.lat), ("longitude", r.lon)):
        v = ref[key]
        if v is None or round(v, 6) != ours:
            bad.append(f"{key}: {ours} != {v}")
    elev = ref["heightOfStationGroundAboveMeanSeaLevel"]
    elev = ref["heightOfStation"] if elev is None else elev
    if not (elev == r.elevation or (elev is None and math.isnan(r.elevation))):
        bad.append(f"elevation: {r.elevation} != {elev}")
    parts = [ref[k] for k in ("year", "month", "day", "hour")]
    if None in parts:
        bad.append("pdbufr has no time")
    else:
        y, mo, d, h = (int(p) for p in parts)  # type: ignore[arg-type]
        t = datetime(y, mo, d, h, int(ref["minute"] or 0), tzinfo=UTC)
        if t != r.time:
            bad.append(f"time: {r.time} != {t}")
    block, number = ref["blockNumber"], ref["stationNumber"]
    if block is not None and number is not None:
        wmo = f"{int(block):02d}{int(number):03d}"
        if wmo not in r.raw and r.station_id != wmo:
            bad.append(f"station: {r.station_id} != {wmo}")
    return bad


@pytest.mark.skipif(not FILES, reason=f"sample BUFR files not found at {BUFR}")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_synop_bufr_agrees_with_pdbufr(path: Path, tmp_path: Path) -> None:
    reference = _pdbufr(path, tmp_path)
    records = {
        r.report_id: r for r in SynopBufrSource().read(path) if isinstance(r, Report | Rejection)
    }
    compared, rejected, disagreements = 0, 0, []
    assert reference, "pdbufr read no message"
    for m, rows in enumerate(reference, start=1):
        assert rows, f"{path.name}:{m}: pdbufr gave no subset"
        for s, ref in enumerate(rows, start=1):
            rid = f"{path.name}:{m}:{s}"
            assert rid in records, f"{rid}: pdbufr decodes a subset stratocast does not yield"
            r = records[rid]
            if isinstance(r, Rejection):
                rejected += 1
                lost = [k for k in LEXICON if ref[k] is not None]
                # justified only where pdbufr has nothing to store either (module docstring)
                assert r.check in ("no_data", "no_station_id") and not lost, (rid, r, lost)
                if r.check == "no_station_id":
                    assert ref["blockNumber"] is None or ref["stationNumber"] is None, rid
                continue
            compared += sum(ref[k] is not None for k in LEXICON)
            disagreements += [f"{rid}: {d}" for d in _compare(r, ref)]
    assert not disagreements, disagreements[:20]
    # every subset stratocast yields is one pdbufr decodes too
    assert len(records) == sum(len(rows) for rows in reference)
    assert compared > 0 or rejected == len(records)
