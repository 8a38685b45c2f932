"""The ingest accounting identities on the shared SYNOP BUFR files ``obs_3day.bufr`` (50
single-subset messages over three days) and ``syn_new.bufr`` (3 messages).

As the text sources' tests do for METAR and SYNOP TAC: the run's accounting verifies (reports
read = stored + quarantined, values decoded = stored + quarantined, per-check counts), the
reports read are every subset of the files as counted here with ecCodes directly (not through
the reader), and the store holds exactly the rows the accounting says. BUFR is binary: the text
identity's counts stay 0.
"""

from __future__ import annotations

from pathlib import Path

import eccodes
import pytest

from stratocast.obs.accounting import Accounting, store_totals
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.store import read_observations, read_quarantine

BUFR = (Path(__file__).parents[2] / ".." / "shared" / "data" / "bufr").resolve()
FILES = ("obs_3day.bufr", "syn_new.bufr")
pytestmark = pytest.mark.skipif(
    not all((BUFR / f).is_file() for f in FILES), reason=f"shared BUFR files not at {BUFR}"
)


def _subsets(path: Path) -> int:
    """Subsets of every message of ``path``, as ecCodes' header keys give them."""
    total = 0
    with path.open("rb") as fh:
        while (h := eccodes.codes_bufr_new_from_file(fh)) is not None:
            try:
                total += int(eccodes.codes_get(h, "numberOfSubsets"))
            finally:
                eccodes.codes_release(h)
    return total


@pytest.mark.parametrize("name", FILES)
def test_shared_synop_bufr_file_adds_up_through_ingest(name: str, tmp_path: Path) -> None:
    path = BUFR / name
    store = tmp_path / "store"
    spec = {"name": "synop_bufr", "paths": [str(path)]}
    acc = ingest(IngestConfig.model_validate({"sources": [spec]}), store, None, False)
    acc.verify()
    assert not acc.file_errors
    a = acc.sources["synop_bufr"]
    assert a.files_ok == 1 and a.files_failed == a.files_skipped == 0
    assert a.reports_read == _subsets(path) > 0
    assert a.reports_read == a.reports_stored + a.reports_quarantined
    assert a.reports_stored > 0 and a.values_stored > 0
    assert a.values_decoded == a.values_stored + a.values_quarantined
    # the store: every stored value is a row of obs, every quarantined one a quarantine row
    assert len(read_observations(store)) == a.values_stored
    q = read_quarantine(store)
    assert int(q["variable"].notna().sum()) == a.values_quarantined
    # rejected reports (no value at all) are quarantine rows without a variable
    rejected = int(q["variable"].isna().sum())
    assert rejected == a.reports_quarantined - len(
        set(q.loc[q["variable"].notna(), "report_id"]) - set(read_observations(store)["report_id"])
    )
    assert a.text_files == a.text_chars == a.text_chars_in_records == 0
    t = store_totals(store)["synop_bufr"]
    assert t == a
    Accounting("x", {"synop_bufr": t}).verify()


def test_obs_3day_counts_its_rejections(tmp_path: Path) -> None:
    """obs_3day.bufr has two subsets with no usable element: reports, not lost."""
    spec = {"name": "synop_bufr", "paths": [str(BUFR / "obs_3day.bufr")]}
    acc = ingest(IngestConfig.model_validate({"sources": [spec]}), tmp_path / "s", None, False)
    acc.verify()
    a = acc.sources["synop_bufr"]
    assert a.reports_read == 50
    assert a.reports_quarantined_by_check.get("no_data", 0) == 2
