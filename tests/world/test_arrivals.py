"""The world's arrival schedule: delays per feed, the late tail, corrections and outages.

Checked on files the world really writes (a small network over two days) and, for the
correction bulletins, with the real METAR reader.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pydantic import ValidationError

from stratocast.obs.registry import get_source
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.table import collect
from stratocast.world.arrivals import (
    ARRIVALS_CSV,
    ARRIVALS_META,
    ArrivalConfig,
    ArrivalError,
    load_schedule,
    metar_bulletins,
    plan_schedule,
)
from stratocast.world.network import NetworkConfig, write_observations

NET = NetworkConfig(
    n_metar=80, n_synop=40, seed=3, gross_error_rate=0.02, duplicate_rate=0.02, gap_rate=0.05
)
MIN = pd.Timedelta(minutes=1)


@pytest.fixture(scope="module")
def world(truth: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("arrivals") / "obs"
    write_observations(truth, NET, out, progress=False)
    return out


def _delay(items: pd.DataFrame) -> pd.Series:
    return items["arrival"] - items["obs_time"]


def test_manifest_written_and_round_trips(world: Path) -> None:
    assert (world / ARRIVALS_CSV).is_file() and (world / ARRIVALS_META).is_file()
    sched = load_schedule(world)
    again = plan_schedule(world, NET.arrivals, NET.seed)
    pd.testing.assert_frame_equal(sched.items, again.items)  # CSV keeps every field
    meta = json.loads((world / ARRIVALS_META).read_text())
    assert meta["counts"]["metar"]["items"] == int((sched.items["kind"] == "metar").sum())
    assert sched.items["item"].is_unique
    assert sched.items["arrival"].is_monotonic_increasing


def test_items_cover_the_written_files_exactly(world: Path) -> None:
    """The METAR bulletins of a day file, end to end, are the file; SYNOP items are whole
    non-empty files; each item's bytes match its sha256."""
    sched = load_schedule(world)
    items = sched.items
    for day in sorted((world / "metar").glob("*.txt")):
        rel = f"metar/{day.name}"
        mine = items[items["path"] == rel].sort_values("offset")
        pieces = b"".join(sched.payload(r) for r in mine.itertuples())
        assert pieces == day.read_bytes()
        assert len(mine) == len(metar_bulletins(day.read_bytes(), rel))
    synop = items[items["kind"] == "synop_bufr"]
    written = [p for p in (world / "synop_bufr").glob("*.bufr") if p.stat().st_size]
    assert sorted(synop["path"]) == sorted(f"synop_bufr/{p.name}" for p in written)
    for r in items.itertuples():
        data = sched.payload(r)
        assert hashlib.sha256(data).hexdigest() == r.sha256 and len(data) == r.length


def test_delays_per_feed(world: Path) -> None:
    items = load_schedule(world).items
    plain = items[~items["late"] & ~items["outage"] & ~items["correction"]]
    metar = _delay(plain[plain["kind"] == "metar"])
    synop = _delay(plain[plain["kind"] == "synop_bufr"])
    assert len(metar) > 50 and len(synop) >= 6
    assert metar.min() >= 1 * MIN and metar.max() <= 10 * MIN
    assert synop.min() >= 10 * MIN and synop.max() <= 60 * MIN
    # spread over the range, not bunched at one end
    assert metar.median() == pytest.approx(5.5 * MIN, abs=2 * MIN)


def test_late_tail(truth: xr.Dataset, world: Path) -> None:
    cfg = ArrivalConfig(late_fraction=0.25, late_hours=(1.0, 6.0))
    items = plan_schedule(world, cfg, seed=3).items
    orig = items[~items["correction"] & ~items["outage"]]
    late = orig[orig["late"]]
    assert 0.12 < len(late) / len(orig) < 0.4
    d = _delay(late)
    assert d.min() >= pd.Timedelta(hours=1, minutes=1) and d.max() <= pd.Timedelta(hours=7)
    # default: a few per cent late
    default = load_schedule(world).items
    assert default["late"].mean() < 0.1


def test_corrections_follow_and_decode_as_cor(world: Path) -> None:
    items = load_schedule(world).items
    cor = items[items["correction"]]
    assert len(cor) > 0 and set(cor["kind"]) == {"metar"}
    orig = items[~items["correction"] & (items["kind"] == "metar")]
    for r in cor.itertuples():
        group = r.item.removesuffix("_CCA.txt").rsplit("_", 2)
        same = orig[
            (orig["obs_time"] == r.obs_time)
            & orig["item"].str.contains(f"_{group[1][:4]}")
            & orig["item"].str.endswith(f"_{group[2]}.txt")
        ]
        assert len(same) and r.arrival > same["arrival"].max()
        assert r.arrival - same["arrival"].max() <= pd.Timedelta(minutes=180)


@pytest.fixture(scope="module")
def corrected(truth: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every gross error of the METAR feed re-sent corrected."""
    cfg = NET.model_copy(
        update={"gross_error_rate": 0.05, "arrivals": ArrivalConfig(correction_fraction=1.0)}
    )
    out = tmp_path_factory.mktemp("corrected") / "obs"
    write_observations(truth, cfg, out, progress=False)
    return out


def test_every_corrected_report_undoes_its_gross_error(corrected: Path) -> None:
    """The real reader: each report of a correction bulletin is a ``:CCA`` report of a
    station and time with an injected gross error, and its value is the original one."""
    catalogue = StationCatalogue.from_csv(corrected / "stations.csv")
    injected = pd.read_csv(corrected / "injected.csv", dtype={"station_id": str})
    gross = injected[(injected["kind"] != "duplicate") & (injected["network"] == "metar")]
    gross = gross.assign(time=pd.to_datetime(gross["time"], utc=True))
    parts = []
    for path in sorted((corrected / "corrections" / "metar").glob("*.txt")):
        d = collect(get_source("metar").read(path, catalogue), "metar")
        assert len(d.rejected) == 0, d.rejected
        parts.append(d.values)
    values = pd.concat(parts, ignore_index=True)
    assert values["report_id"].str.endswith(":CCA").all()
    reports = values.drop_duplicates(["station_id", "time"])
    assert len(reports) == len(gross.drop_duplicates(["station_id", "time"]))
    var = {"t2m": "t2m", "msl": "qnh", "wind_speed": "ws10"}  # what the report states
    n_checked = 0
    for r in gross.itertuples():
        got = values[
            (values["station_id"] == r.station_id)
            & (values["time"] == r.time)
            & (values["variable"] == var[r.variable])
        ]
        assert len(got) == 1
        if r.variable == "t2m":  # whole degrees C (0.1 C in a US T-group)
            assert got["value"].iloc[0] == pytest.approx(r.original_value, abs=0.51)
            assert abs(got["value"].iloc[0] - r.written_value) > 5.0
            n_checked += 1
        elif r.variable == "wind_speed":  # whole knots
            assert got["value"].iloc[0] == pytest.approx(r.original_value, abs=0.26)
            n_checked += 1
    assert n_checked > 0


def test_outage_silences_a_feed_then_flushes(world: Path) -> None:
    # 7-9 h: longer than the 6-hourly spacing, so every outage holds something back
    cfg = ArrivalConfig(outage_rate=1.0, outage_hours=(7.0, 9.0))
    sched = plan_schedule(world, cfg, seed=0)
    items, outages = sched.items, sched.outages
    assert set(outages["feed"]) == {"metar", "synop"}
    kind_of = {"metar": "metar", "synop": "synop_bufr"}
    for o in outages.itertuples():
        assert pd.Timedelta(hours=7) <= o.end - o.start <= pd.Timedelta(hours=9)
        feed = items[items["kind"] == kind_of[o.feed]]
        # nothing of the silent feed arrives while it is down
        assert not ((feed["arrival"] >= o.start) & (feed["arrival"] < o.end)).any()
    flagged = items[items["outage"]]
    assert len(flagged) > 0
    for r in flagged.itertuples():
        ends = outages.loc[outages["feed"].map(kind_of) == r.kind, "end"]
        lag = (r.arrival - ends[ends <= r.arrival]).min()
        assert pd.Timedelta(0) <= lag <= pd.Timedelta(minutes=10)


def test_deterministic_and_seeded(world: Path) -> None:
    a = plan_schedule(world, ArrivalConfig(), seed=3).items
    b = plan_schedule(world, ArrivalConfig(), seed=3).items
    c = plan_schedule(world, ArrivalConfig(seed=4), seed=3).items
    pd.testing.assert_frame_equal(a, b)
    other = c.set_index("item").loc[a["item"], "arrival"].to_numpy()
    assert not np.array_equal(a["arrival"].to_numpy(), other)


def _hashes(root: Path) -> dict[str, str]:
    keep = ("metar", "synop_bufr")
    files = [p for d in keep for p in (root / d).iterdir()]
    files += [root / "stations.csv", root / "injected.csv"]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_arrivals_do_not_change_the_report_files(
    truth: xr.Dataset, world: Path, tmp_path: Path
) -> None:
    other = NET.model_copy(
        update={"arrivals": ArrivalConfig(correction_fraction=0.0, late_fraction=0.5)}
    )
    write_observations(truth, other, tmp_path / "obs", progress=False)
    assert _hashes(tmp_path / "obs") == _hashes(world)
    assert not (tmp_path / "obs" / "corrections").exists()  # no corrections asked for
    assert load_schedule(tmp_path / "obs").items["correction"].sum() == 0


def test_bad_config_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="metar_delay_min"):
        ArrivalConfig(metar_delay_min=(10.0, 1.0))
    with pytest.raises(ValidationError):
        ArrivalConfig(late_fraction=1.5)
    (tmp_path / "metar").mkdir()
    (tmp_path / "metar" / "20210101.txt").write_bytes(b"KXYZ 010000Z 00000KT=\r\r\n")
    with pytest.raises(ArrivalError, match="does not start with a bulletin"):
        plan_schedule(tmp_path, ArrivalConfig())
    with pytest.raises(ArrivalError, match="not found"):
        load_schedule(tmp_path)
