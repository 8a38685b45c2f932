"""Records -> columnar frames: the long (report, variable) layout the store and QC use.

Built column-by-column from plain lists (no per-row dicts) because this runs once per decoded
value. Internal columns (``report_key``, ``raw``, ``check``, ``reason``) ride along until the
store splits rows into observations and quarantine.

Text readers also yield :class:`~stratocast.obs.base.Unparsed` (text in no report) and one
:class:`~stratocast.obs.base.TextTally` per file: unparsed runs become quarantine rows of their
own (check ``unparsed_text``, the location as ``report_id``), counted apart from reports, and
the tally comes back on :class:`Decoded` with the characters the file's records and unparsed
runs hold, for the accounting's text identity. A source yielding no tally (binary formats) is
exempt from that identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from stratocast.obs.base import Record, Rejection, Report, TextTally, Unparsed, text_chars

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

VALUE_COLUMNS = [
    "source",
    "station_id",
    "lat",
    "lon",
    "elevation",
    "time",
    "variable",
    "value",
    "report_id",
    "report_key",  # int, unique per report within one ingest run
    "raw",
    "check",  # None while the value is good
    "reason",
]


@dataclass
class Decoded:
    """One file's decode: per-value rows and per-record rejections."""

    values: pd.DataFrame  # VALUE_COLUMNS
    rejected: pd.DataFrame  # quarantine layout, variable/value null
    n_reports: int  # decoded Reports (not rejections)
    # text in no report (check ``unparsed_text``), quarantine layout; counted apart from reports
    unparsed: pd.DataFrame | None = None
    text: TextCount | None = None  # None: the source yielded no TextTally (binary format)

    @property
    def n_unparsed(self) -> int:
        return 0 if self.unparsed is None else len(self.unparsed)


@dataclass(frozen=True)
class TextCount:
    """One file's text identity terms (characters without whitespace, :func:`text_chars`)."""

    chars_total: int  # the reader's TextTally: the whole file
    chars_framing: int  # the reader's TextTally: headings, section markers, "=", ...
    chars_in_records: int  # in the raw of every Report and Rejection
    chars_unparsed: int  # in every Unparsed

    @property
    def balanced(self) -> bool:
        return self.chars_total == self.chars_in_records + self.chars_framing + self.chars_unparsed


UNPARSED = "unparsed_text"  # the quarantine check of Unparsed text


def _times(us: list[int | None]) -> pd.Series:
    arr = np.array([-(2**63) if u is None else u for u in us], dtype="int64")
    return pd.Series(arr.view("datetime64[us]")).dt.tz_localize("UTC")


def collect(records: Iterable[Record], source: str, key_offset: int = 0) -> Decoded:
    """Flatten Reports into long rows, Rejections and Unparsed text into quarantine rows."""
    st: list[str] = []
    lat: list[float] = []
    lon: list[float] = []
    elev: list[float] = []
    tus: list[int | None] = []
    var: list[str] = []
    val: list[float] = []
    rid: list[str] = []
    rkey: list[int] = []
    raw: list[str] = []
    chk: list[str | None] = []
    rsn: list[str | None] = []
    rej: list[Rejection] = []
    unparsed: list[Rejection] = []
    report_raws: list[str] = []  # one per Report: its characters count only for text sources
    tallies: list[TextTally] = []
    key = key_offset
    n_reports = 0
    for rec in records:
        if type(rec) is not Report:
            if isinstance(rec, Rejection):
                rej.append(rec)
                continue
            if isinstance(rec, Unparsed):
                why = f"{rec.location}: text in no report ({text_chars(rec.text)} characters)"
                unparsed.append(Rejection(rec.location, UNPARSED, why, rec.text))
                continue
            if isinstance(rec, TextTally):
                tallies.append(rec)
                continue
            if not isinstance(rec, Report):
                raise TypeError(f"source {source!r} yielded {type(rec).__name__}, not a record")
        if not rec.values:
            rej.append(Rejection(rec.report_id, "no_data", "report without values", rec.raw))
            continue
        n_reports += 1
        report_raws.append(rec.raw)
        t = (rec.time - _EPOCH) // _US
        for name, v in rec.values.items():
            st.append(rec.station_id)
            lat.append(rec.lat)
            lon.append(rec.lon)
            elev.append(rec.elevation)
            tus.append(t)
            var.append(name)
            val.append(v)
            rid.append(rec.report_id)
            rkey.append(key)
            raw.append(rec.raw)
            flag = rec.flags.get(name) if rec.flags else None
            chk.append(flag[0] if flag else None)
            rsn.append(flag[1] if flag else None)
        key += 1
    values = pd.DataFrame(
        {
            "source": pd.Series([source] * len(st), dtype=object),
            "station_id": pd.Series(st, dtype=object),
            "lat": np.asarray(lat, dtype="float64"),
            "lon": np.asarray(lon, dtype="float64"),
            "elevation": np.asarray(elev, dtype="float32"),
            "time": _times(tus) if tus else pd.Series([], dtype="datetime64[us, UTC]"),
            "variable": pd.Series(var, dtype=object),
            "value": np.asarray(val, dtype="float64"),
            "report_id": pd.Series(rid, dtype=object),
            "report_key": np.asarray(rkey, dtype="int64"),
            "raw": pd.Series(raw, dtype=object),
            "check": pd.Series(chk, dtype=object),
            "reason": pd.Series(rsn, dtype=object),
        }
    )
    rejected = rejections_frame(rej, source)
    text = None
    if tallies:  # counted only now: binary sources pay nothing for the text identity
        text = TextCount(
            chars_total=sum(t.chars_total for t in tallies),
            chars_framing=sum(t.chars_framing for t in tallies),
            # one count over the joined text: a call per raw would cost more than the join
            chars_in_records=text_chars("".join(report_raws))
            + text_chars("".join(r.raw for r in rej)),
            chars_unparsed=text_chars("".join(u.raw for u in unparsed)),
        )
    frame = rejections_frame(unparsed, source) if unparsed else None
    return Decoded(values, rejected, n_reports, frame, text)


def rejections_frame(rej: list[Rejection], source: str) -> pd.DataFrame:
    n = len(rej)
    tus = [None if r.time is None else (r.time - _EPOCH) // _US for r in rej]
    times = _times(tus) if n else pd.Series([], dtype="datetime64[us, UTC]")
    return pd.DataFrame(
        {
            "source": pd.Series([source] * n, dtype=object),
            "station_id": pd.Series([r.station_id for r in rej], dtype=object),
            "lat": np.full(n, np.nan),
            "lon": np.full(n, np.nan),
            "elevation": np.full(n, np.nan, dtype="float32"),
            "time": times,
            "variable": pd.Series([None] * n, dtype=object),
            "value": np.full(n, np.nan),
            "report_id": pd.Series([r.report_id for r in rej], dtype=object),
            "reason": pd.Series([r.reason for r in rej], dtype=object),
            "check": pd.Series([r.check for r in rej], dtype=object),
            "raw": pd.Series([r.raw for r in rej], dtype=object),
        }
    )
