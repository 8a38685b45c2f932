"""bufr_decode against ecCodes' own unpack, value by value, on every sample BUFR file.

The reference is ecCodes' ``numericValues`` (every element of every subset in data order,
including the value 0 it gives the 222000 marker) and, for CCITT IA5 elements, its
``codes_get_string_array`` of the key. A message the decoder does not support must raise
UnsupportedBufr (and so go to ecCodes), never decode to something else.
"""

from __future__ import annotations

from pathlib import Path

import eccodes
import numpy as np
import pytest

from stratocast.obs.bufr_decode import Decoded, UnsupportedBufr, decode, parse_header
from stratocast.obs.bufr_file import split_messages

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
BUFR = DATA / "bufr"
FILES = sorted(BUFR.glob("*.bufr")) if BUFR.is_dir() else []
needs_data = pytest.mark.skipif(not FILES, reason=f"sample BUFR files not found at {BUFR}")

# what the decoder is expected to handle (it must fall back on the rest, see below)
SUPPORTED = {
    "aircraft_small.bufr": 10,  # BUFR3, 222000 quality section
    "dwd_synop_20210516T12.bufr": 44,  # DWD local tables v8, 201/202, nested delayed rep.
    "obs_3day.bufr": 50,  # BUFR3, ECMWF local section, 222000
    "syn_new.bufr": 3,
    "synop_multi_subset_uncompressed.bufr": 1,
    "synop_radiation.bufr": 1,  # the other message uses associated fields (204YYY)
    "temp_small.bufr": 6,  # one message has 223000 (substituted values)
}


def _strip(v: str | None) -> str:
    return (v or "").strip()


def _check_against_eccodes(msg: bytes, dec: Decoded) -> int:
    h = eccodes.codes_new_from_message(msg)
    try:
        eccodes.codes_set(h, "unpack", 1)
        ref = np.asarray(eccodes.codes_get_array(h, "numericValues"), dtype=float)
        names = np.asarray(dec.layout.name)[dec.ids]
        string = dec.layout.string[dec.ids]
        ref_strings = {
            n: [_strip(v) for v in eccodes.codes_get_string_array(h, n)] for n in set(names[string])
        }
    finally:
        eccodes.codes_release(h)
    ref[ref <= -1e99] = np.nan
    assert len(ref) == len(dec.values)
    # ecCodes puts a string-table index in numericValues where the element is a string
    same = (ref == dec.values) | (np.isnan(ref) & np.isnan(dec.values)) | string
    bad = np.flatnonzero(~same)
    assert not len(bad), [(names[k], ref[k], dec.values[k]) for k in bad[:5]]
    for name, expect in ref_strings.items():
        ours = [_strip(dec.strings[int(k)]) for k in np.flatnonzero(names == name)]
        if dec.header.compressed and len(expect) == 1 and len(set(ours)) == 1:
            ours = ours[:1]  # ecCodes gives one value when all subsets agree
        assert ours == expect, name
    return int((~np.isnan(dec.values)).sum())


@needs_data
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_message_matches_eccodes_or_falls_back(path: Path) -> None:
    decoded = 0
    for _, msg, _ in split_messages(path.read_bytes()):
        if msg is None:
            continue
        try:
            dec = decode(msg)
        except UnsupportedBufr:
            continue
        assert _check_against_eccodes(msg, dec) > 0
        decoded += 1
    assert decoded == SUPPORTED.get(path.name, 0)


@needs_data
def test_unsupported_operators_raise() -> None:
    msgs = [m for _, m, _ in split_messages((BUFR / "temp_small.bufr").read_bytes())]
    with pytest.raises(UnsupportedBufr, match="223000"):
        decode(msgs[5])  # type: ignore[arg-type]
    (wigos, *_) = [m for _, m, _ in split_messages((BUFR / "synop_wigos.bufr").read_bytes())]
    with pytest.raises(UnsupportedBufr, match="associated fields"):
        decode(wigos)  # type: ignore[arg-type]


@needs_data
def test_wrong_length_falls_back_instead_of_misdecoding() -> None:
    msg = next(m for _, m, _ in split_messages((BUFR / "syn_new.bufr").read_bytes()))
    assert msg is not None
    header = parse_header(msg)
    # claim one more subset than the data holds: the walk runs past section 4
    s3 = header.section2[1] or 8 + int.from_bytes(msg[8:11], "big")
    forged = bytearray(msg)
    forged[s3 + 4 : s3 + 6] = (header.subsets + 1).to_bytes(2, "big")
    assert parse_header(bytes(forged)).subsets == header.subsets + 1
    with pytest.raises(UnsupportedBufr):
        decode(bytes(forged))


def _compressed(subsets: int) -> bytes:
    h = eccodes.codes_bufr_new_from_samples("BUFR4")
    try:
        eccodes.codes_set(h, "numberOfSubsets", subsets)
        eccodes.codes_set(h, "compressedData", 1)
        eccodes.codes_set_array(h, "unexpandedDescriptors", [301090, 302031, 302035])
        eccodes.codes_set_array(h, "stationNumber", list(range(1, subsets + 1)))
        eccodes.codes_set_array(h, "blockNumber", [10] * subsets)
        eccodes.codes_set_array(h, "stationOrSiteName", [f"ST{i}" for i in range(subsets)])
        eccodes.codes_set_array(h, "airTemperature", [280.0 + i / 4 for i in range(subsets)])
        eccodes.codes_set(h, "pack", 1)
        return bytes(eccodes.codes_get_message(h))
    finally:
        eccodes.codes_release(h)


def test_compressed_matches_eccodes() -> None:
    msg = _compressed(4)
    dec = decode(msg)
    assert dec.header.compressed and len(dec.starts) == 5
    assert _check_against_eccodes(msg, dec) > 0


@needs_data
def test_a_template_that_decodes_differently_from_eccodes_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first message of every template is checked against ecCodes; a mismatch (e.g. an
    operator hidden inside a Table D sequence) makes the template unsupported, never wrong."""
    from stratocast.obs import bufr_decode

    msg = next(m for _, m, _ in split_messages((BUFR / "syn_new.bufr").read_bytes()) if m)
    checked = bufr_decode.compile_layout(parse_header(msg)).derived
    checked.pop(bufr_decode._CHECK, None)
    real = bufr_decode._uncompressed

    def off_by_one_scale(*args: object) -> Decoded:
        dec = real(*args)  # type: ignore[arg-type]
        dec.values[:] = dec.values * 10.0  # what a missed 202 operator would do
        return dec

    monkeypatch.setattr(bufr_decode, "_uncompressed", off_by_one_scale)
    with pytest.raises(UnsupportedBufr, match="differ from ecCodes"):
        decode(msg)
    with pytest.raises(UnsupportedBufr, match="differently from ecCodes before"):
        decode(msg)  # remembered: no second ecCodes unpack for the same template
    monkeypatch.setattr(bufr_decode, "_uncompressed", real)
    checked.pop(bufr_decode._CHECK, None)
    assert _check_against_eccodes(msg, decode(msg)) > 0
