"""Conformance suite every observation source must pass.

Use it by subclassing in a test module and providing three fixtures::

    class TestMetar(SourceTests):
        @pytest.fixture
        def source(self): return MetarSource(reference_time="2024-09-08T14:00")
        @pytest.fixture
        def sample_file(self): return DATA / "metar" / "collective.txt"
        @pytest.fixture
        def catalogue(self): return StationCatalogue.from_airportsdata()  # or None

The checks: the source satisfies the protocol and has a canonical lexicon; every record is a
Report or Rejection with the documented field types; times are timezone-aware UTC; values are
finite SI numbers of canonical variables within their valid range (or flagged); report ids
name the file; rejections carry a check, reason and raw text; a text source (one that yields a
TextTally) yields exactly one, last, and its identity holds (every non-whitespace character is
in a record, the framing or an Unparsed run); ingesting the file balances the accounting
(the text identity included) and a second ingest adds nothing.
"""

from __future__ import annotations

import math
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from stratocast.obs.base import (
    ObsSource,
    Record,
    Rejection,
    Report,
    TextTally,
    Unparsed,
    text_chars,
)
from stratocast.obs.registry import register_source
from stratocast.obs.stations import StationCatalogue
from stratocast.vocab.variables import VARIABLES


class SourceTests:
    """Mixin of pytest tests; subclasses provide ``source``, ``sample_file``, ``catalogue``."""

    @pytest.fixture
    def records(
        self, source: ObsSource, sample_file: Path, catalogue: StationCatalogue | None
    ) -> list[Record]:
        return list(source.read(sample_file, catalogue))

    def test_protocol(self, source: Any) -> None:
        assert isinstance(source, ObsSource)
        assert isinstance(source.name, str) and source.name

    def test_lexicon_targets_canonical(self, source: Any) -> None:
        lexicon = getattr(source, "lexicon", None)
        assert lexicon, "a source declares its lexicon (native field -> canonical variable)"
        for native, entry in lexicon.items():
            assert entry.variable in VARIABLES, f"{native} maps to non-canonical {entry.variable}"
            assert callable(entry.convert)

    def test_yields_records(self, records: list[Record]) -> None:
        assert records, "sample file should produce records"
        assert any(isinstance(r, Report) for r in records), "sample should decode something"
        for r in records:
            assert isinstance(r, Report | Rejection | Unparsed | TextTally), type(r)

    def test_report_fields(self, records: list[Record], sample_file: Path) -> None:
        for r in records:
            if not isinstance(r, Report | Rejection):
                continue
            assert r.report_id.startswith(sample_file.name + ":"), r.report_id
            if not isinstance(r, Report):
                continue
            assert isinstance(r.station_id, str) and r.station_id
            assert -90.0 <= r.lat <= 90.0 and -180.0 <= r.lon <= 180.0, r
            assert isinstance(r.elevation, float)
            assert r.time.tzinfo is not None and r.time.utcoffset() == timedelta(0), r.time
            assert isinstance(r.raw, str)

    def test_values_canonical_si(self, records: list[Record]) -> None:
        for r in records:
            if not isinstance(r, Report):
                continue
            assert r.values, f"{r.report_id}: a Report needs at least one value"
            for name, v in r.values.items():
                var = VARIABLES.get(name)
                assert var is not None, f"{r.report_id}: {name} is not canonical"
                assert isinstance(v, float) and math.isfinite(v), (r.report_id, name, v)
                if name not in r.flags:
                    # a plausibility band wider than QC's: catches unit slips (°C for K, hPa
                    # for Pa) that QC would otherwise silently quarantine
                    span = var.valid_max - var.valid_min
                    lo, hi = var.valid_min - span, var.valid_max + span
                    assert lo <= v <= hi, f"{r.report_id}: {name}={v} {var.units} not SI?"
            for name, (check, reason) in r.flags.items():
                assert name in r.values and check and reason

    def test_rejections_explained(self, records: list[Record]) -> None:
        for r in records:
            if isinstance(r, Rejection):
                assert r.check and r.reason, r
                assert isinstance(r.raw, str)
                assert r.time is None or r.time.tzinfo == UTC

    def test_text_identity(self, records: list[Record], sample_file: Path) -> None:
        tallies = [r for r in records if isinstance(r, TextTally)]
        unparsed = [r for r in records if isinstance(r, Unparsed)]
        if not tallies:  # a binary format: exempt, and it has no text to leave unparsed
            assert not unparsed, "a source yielding Unparsed must close the file with a TextTally"
            return
        assert len(tallies) == 1 and records[-1] is tallies[0], "one TextTally, last"
        tally = tallies[0]
        assert Path(tally.path).name == sample_file.name, tally.path
        assert 0 <= tally.chars_framing <= tally.chars_total
        in_records = sum(text_chars(r.raw) for r in records if isinstance(r, Report | Rejection))
        in_unparsed = sum(text_chars(u.text) for u in unparsed)
        assert tally.chars_total == in_records + tally.chars_framing + in_unparsed, (
            f"text identity: {tally.chars_total} != {in_records} in records + "
            f"{tally.chars_framing} framing + {in_unparsed} unparsed"
        )
        for u in unparsed:
            assert u.location.startswith(sample_file.name + ":"), u.location
            assert text_chars(u.text) > 0, u

    def test_ingest_accounting_and_idempotence(
        self,
        source: ObsSource,
        sample_file: Path,
        catalogue: StationCatalogue | None,
        tmp_path: Path,
    ) -> None:
        from stratocast.obs.ingest import IngestConfig, SourceSpec, ingest
        from stratocast.obs.store import read_observations, read_quarantine

        name = f"conformance_{source.name}"
        register_source(name, lambda **_: source, replace=True)
        cfg = IngestConfig(sources=[SourceSpec(name=name, paths=[str(sample_file)])])
        store = tmp_path / "store"
        acc = ingest(cfg, store, catalogue, progress=False)
        acc.verify()
        a = acc.sources[name]
        assert a.files_ok == 1 and a.reports_read > 0
        assert a.reports_read == a.reports_stored + a.reports_quarantined
        assert a.values_decoded == a.values_stored + a.values_quarantined
        stored = read_observations(store, sources=[name])
        quarantined = read_quarantine(store, sources=[name])
        assert len(stored) == a.values_stored
        records = list(source.read(sample_file, catalogue))
        n_rejected = sum(isinstance(r, Rejection) for r in records)
        n_unparsed = sum(isinstance(r, Unparsed) for r in records)
        # quarantine: one row per quarantined value, per undecodable record, per unparsed run
        assert len(quarantined) == a.values_quarantined + n_rejected + n_unparsed
        assert a.unparsed_spans == n_unparsed
        assert (quarantined["check"] == "unparsed_text").sum() == n_unparsed
        tally = next((r for r in records if isinstance(r, TextTally)), None)
        assert a.text_files == (tally is not None)
        if tally is not None:
            assert a.text_chars == tally.chars_total > 0
            assert a.text_chars_framing == tally.chars_framing
            assert a.text_chars == (
                a.text_chars_in_records + a.text_chars_framing + a.text_chars_unparsed
            )
        assert str(stored["time"].dt.tz) == "UTC"
        again = ingest(cfg, store, catalogue, progress=False)
        assert again.sources[name].files_skipped == 1
        assert again.sources[name].reports_read == 0
        assert len(read_observations(store, sources=[name])) == len(stored)
