"""One bad BUFR message (or subset) is that message's Rejection; the rest of the file lands.

Each test corrupts one message in a copy of a real file (same file name, so report ids
match) and checks that every other message decodes exactly as in the original, record for
record, and that the bad one is a Rejection naming it with the reason.

The corruption used is one seen in mutation runs: section 3's last descriptor turned into a
replication of 27 descriptors that do not follow. ecCodes 2.50 dies of SIGSEGV unpacking
such a message (it took the whole ingest process with it); the readers now refuse it before
ecCodes sees it (``preflight``), which each test asserts first, so that a regression fails
here instead of killing the test run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stratocast.obs import bufr_file
from stratocast.obs.base import Record, Rejection, Report
from stratocast.obs.bufr_decode import CorruptBufr, UnsupportedBufr, parse_header, preflight
from stratocast.obs.bufr_file import split_messages
from stratocast.obs.bufr_tables import check_structure, expand_one
from stratocast.obs.sources import synop_bufr
from stratocast.obs.sources.aircraft_bufr import AircraftBufrSource
from stratocast.obs.sources.hirs_bufr import HirsBufrSource
from stratocast.obs.sources.synop_bufr import SynopBufrSource
from stratocast.obs.sources.temp_bufr import TempBufrSource

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
SYNOP = DATA / "bufr" / "dwd_synop_20210516T12.bufr"
TEMP = DATA / "bufr" / "temp_small.bufr"
AIRCRAFT = DATA / "bufr" / "aircraft_small.bufr"
HIRS = DATA / "satellite" / "metop_hirs_l1b_20181122.bufr"

CASES = [
    pytest.param(SynopBufrSource, SYNOP, 7, id="synop"),
    pytest.param(TempBufrSource, TEMP, 2, id="temp"),
    pytest.param(AircraftBufrSource, AIRCRAFT, 4, id="aircraft"),
    pytest.param(HirsBufrSource, HIRS, 30, id="hirs"),
]


def _corrupt_section3(data: bytes, number: int) -> tuple[bytes, bytes]:
    """The file with message ``number`` (1-based) given an impossible section 3; and that
    message as corrupted."""
    offset, msg, _ = [m for m in split_messages(data)][number - 1]
    assert msg is not None
    header = parse_header(msg)
    s3 = header.section2[1] or 8 + int.from_bytes(msg[8:11], "big")
    last = s3 + 7 + 2 * (len(header.descriptors) - 1)
    bad = bytearray(msg)
    bad[last : last + 2] = bytes([(1 << 6) | 27, 7])  # 1-27-007: replicate 27 descriptors
    out = bytearray(data)
    out[offset : offset + len(msg)] = bad
    return bytes(out), bytes(bad)


def _by_id(records: Iterator[Record]) -> dict[str, str]:
    # repr: NaN elevations compare equal as text, not as floats
    return {r.report_id: repr(r) for r in records if isinstance(r, Report | Rejection)}


@pytest.mark.parametrize(("source", "path", "number"), CASES)
def test_one_corrupt_message_leaves_the_others_identical(
    source: type, path: Path, number: int, tmp_path: Path
) -> None:
    if not path.exists():
        pytest.skip(f"shared sample {path} absent")
    data = path.read_bytes()
    bad_file, bad_msg = _corrupt_section3(data, number)
    with pytest.raises(CorruptBufr, match="runs past the end of section 3"):
        preflight(bad_msg)  # else ecCodes would be handed it (and crash): stop here
    copy = tmp_path / path.name
    copy.write_bytes(bad_file)
    before = _by_id(source().read(path))
    after = _by_id(source().read(copy))
    where = f"{path.name}:{number}"
    assert after[where].startswith("Rejection(") and "corrupt_message" in after[where]
    assert "runs past the end of section 3" in after[where]
    kept = {k: v for k, v in before.items() if not k.startswith(f"{where}:") and k != where}
    assert len(kept) < len(before)  # the corrupted message did hold records
    assert {k: v for k, v in after.items() if k != where} == kept


@pytest.mark.skipif(not SYNOP.exists(), reason="shared SYNOP sample absent")
def test_an_exception_in_one_subset_is_its_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a subset decoder raises (here a stand-in RuntimeError for the third subset
    of the first multi-subset message) is that subset's Rejection with the exception text;
    the fast path had no guard at all before, and the ecCodes path caught only ecCodes
    errors."""
    before = _by_id(SynopBufrSource().read(SYNOP))
    rid = next(k for k in before if k.endswith(":3"))
    real = SynopBufrSource._subset

    def flaky(self: SynopBufrSource, *args: object) -> Record:
        if args[3] == rid:
            raise RuntimeError("decoder slipped")
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SynopBufrSource, "_subset", flaky)
    after = _by_id(SynopBufrSource().read(SYNOP))
    assert "corrupt_message" in after[rid] and "RuntimeError: decoder slipped" in after[rid]
    assert {k: v for k, v in after.items() if k != rid} == {
        k: v for k, v in before.items() if k != rid
    }


@pytest.mark.skipif(not SYNOP.exists(), reason="shared SYNOP sample absent")
def test_a_decoder_crash_on_one_message_is_its_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    """An IndexError (what a damaged layout raised in the section-4 decoder) in message 5:
    that message is one Rejection with the text; the decoder's own fallback only catches
    UnsupportedBufr, so before this the file's remaining messages were lost."""
    real = synop_bufr.decode
    target = [m for _, m, _ in split_messages(SYNOP.read_bytes())][4]

    def broken(msg: bytes, header: object = None) -> object:
        if msg == target:
            raise IndexError("index 9999 is out of bounds for axis 0 with size 812")
        return real(msg, header)  # type: ignore[arg-type]

    before = _by_id(SynopBufrSource().read(SYNOP))
    monkeypatch.setattr(synop_bufr, "decode", broken)
    after = _by_id(SynopBufrSource().read(SYNOP))
    where = f"{SYNOP.name}:5"
    assert "IndexError: index 9999" in after[where]
    kept = {k: v for k, v in before.items() if not k.startswith(f"{where}:")}
    assert {k: v for k, v in after.items() if k != where} == kept


def test_non_finite_values_are_rejections(monkeypatch: pytest.MonkeyPatch) -> None:
    if not SYNOP.exists():
        pytest.skip("shared SYNOP sample absent")

    def overflowing(values: dict[str, float], *args: object, **kwargs: object) -> None:
        values["q2m"] = float("inf")  # e.g. a division by ~0 in a derivation

    monkeypatch.setattr(synop_bufr, "derive", overflowing)
    out = [r for r in SynopBufrSource().read(SYNOP) if isinstance(r, Report | Rejection)]
    assert not [r for r in out if isinstance(r, Report)]
    bad = [r for r in out if isinstance(r, Rejection) and r.check == "non_finite"]
    assert bad and all("non-finite value of q2m" in r.reason for r in bad)
    assert bufr_file.non_finite({"t2m": 280.0}) is None
    assert bufr_file.non_finite({"t2m": np.nan, "sp": 1e5}) == "non-finite value of t2m"


def test_an_element_without_width_is_not_a_replication() -> None:
    """DWD-local 020237 under a sub-centre whose tables lack it (a flipped section-1 byte
    seen in mutation runs): ecCodes' expansion has no width for it. It was taken for a
    replication with a negative span, which looped the layout compiler without end."""
    with pytest.raises(UnsupportedBufr, match="020237 has no width"):
        expand_one((0, 18, 8, 78, 10240), 20237)


def test_nested_fixed_replications_are_refused_before_ecCodes() -> None:
    # 1-01-255 three deep around one element: 16.6 million elements, no real template
    with pytest.raises(CorruptBufr, match="unrolls to more than"):
        check_structure((101255, 101255, 101255, 12101))
