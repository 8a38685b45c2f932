"""One product cycle end to end on a real observation store, real shards and a trained model:
online windows equal the shards', the cycle equals the re-forecast, publication is atomic and
idempotent, and a missing model publishes the flagged fallback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pydantic import ValidationError

from stratocast.infer import cycle as cycle_mod
from stratocast.infer.cycle import (
    CycleSources,
    cycle_inputs,
    cycle_observations,
    run_cycle,
)
from stratocast.infer.forecast import ForecastConfig, run_forecast
from stratocast.infer.products import ProductConfig, ProductError
from stratocast.infer.publish import LATEST
from stratocast.infer.warm import WarmModel
from stratocast.obs.store import OBS_SCHEMA, write_observations
from stratocast.shards.layout import OBS, Manifest, load_manifest
from stratocast.shards.reader import ShardArrayReader

PRODUCT = ProductConfig(
    kind="deterministic",
    cycle="0 0,12 * * *",
    cutoff_minutes=60,
    deadline_minutes=120,
    horizon_hours=24,
)
T0 = datetime(2000, 1, 17, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def setup(
    tiny_shards: tuple[Path, Manifest],
    tiny_store_and_model: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> CycleSources:
    store, model = tiny_store_and_model
    return CycleSources(store, tiny_shards[0], model, tmp_path_factory.mktemp("cycle") / "pub")


def _sources(setup: CycleSources, tmp_path: Path, **kw: Path) -> CycleSources:
    fields = {"store": setup.store, "shards": setup.shards, "checkpoint": setup.checkpoint}
    return CycleSources(**{**fields, "products": tmp_path / "pub", **kw})


def test_online_windows_equal_the_shards_bit_for_bit(setup: CycleSources) -> None:
    m = load_manifest(setup.shards)
    with ShardArrayReader(setup.shards, OBS) as reader:
        raw = np.empty(reader.shape, dtype=reader.dtype)
        reader.read_block(0, reader.shape[0], raw)
    times = m.times()
    checked = 0
    for i in (1, 17, 40, 63, len(times) - 1):
        t = pd.Timestamp(times[i]).tz_localize("UTC").to_pydatetime()
        obs, late = cycle_observations(setup.store, list(m.obs_variables), t, 2, 6, None)
        assert late == 0
        online = cycle_inputs(obs, m, t, 2, 6)
        want = raw[i - 1 : i + 1]
        assert online.dtype == want.dtype and online.shape == want.shape
        np.testing.assert_array_equal(np.isnan(online), np.isnan(want))
        assert online.tobytes() == want.tobytes()
        checked += int(np.isfinite(want).sum())
    assert checked > 100  # the windows held observations, not just NaN


def test_a_cycle_equals_the_reforecast_and_publishes_once(
    setup: CycleSources, tmp_path: Path
) -> None:
    src = _sources(setup, tmp_path)
    r = run_cycle("det", PRODUCT, src, T0)
    assert r.status == "published" and r.path is not None and r.obs_used > 0
    assert {"load", "ingest", "compute", "export"} <= set(r.phases)
    got = xr.open_zarr(r.path / "forecast.zarr", consolidated=False)
    fcfg = ForecastConfig(
        start="2000-01-17T00", end="2000-01-17T00", horizon_hours=24, batch_size=1
    )
    ref_path = run_forecast(fcfg, setup.checkpoint, setup.shards, tmp_path / "ref.zarr", False)
    ref = xr.open_zarr(ref_path, consolidated=False)
    assert list(got["lead_time"].values) == [0, 6, 12, 18, 24]
    for c in ("t2m", "msl"):
        np.testing.assert_array_equal(got[c].values, ref[c].values)
    record = json.loads((r.path / "COMPLETE").read_text())
    assert record["fallback"] is False and record["cycle_time"] == T0.isoformat()
    assert set(record["phases"]) == {"load", "ingest", "compute", "export"}
    assert record["phases"]["export"] == r.phases["export"] > 0
    assert (src.products / "det" / LATEST).read_text().strip() == "20000117T0000"

    # idempotent: a second run publishes nothing new; forced, it recomputes the same values
    again = run_cycle("det", PRODUCT, src, T0)
    assert again.status == "already"
    warm = WarmModel(setup.checkpoint)
    forced = run_cycle("det", PRODUCT, src, T0, warm=warm, force=True)
    assert forced.status == "published" and "load" not in forced.phases
    redo = xr.open_zarr(forced.path / "forecast.zarr", consolidated=False)  # type: ignore[operator]
    np.testing.assert_array_equal(redo["t2m"].values, ref["t2m"].values)


def test_a_crash_mid_export_leaves_the_previous_publication(
    setup: CycleSources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _sources(setup, tmp_path)
    first = run_cycle("det", PRODUCT, src, T0)
    before = (first.path / "forecast.zarr" / "t2m" / "zarr.json").read_bytes()  # type: ignore[operator]
    real = cycle_mod._export

    def dies(ds: xr.Dataset, tmp: Path, outputs: list[str], sites: str | None) -> list[str]:
        real(ds, tmp, outputs, sites)  # the files are written ...
        raise KeyboardInterrupt("killed mid-export")  # ... and the worker dies before COMPLETE

    monkeypatch.setattr(cycle_mod, "_export", dies)
    t1 = T0 + timedelta(hours=12)
    with pytest.raises(KeyboardInterrupt):
        run_cycle("det", PRODUCT, src, t1)
    base = src.products / "det"
    assert not (base / "20000117T1200").exists()  # nothing half-published
    assert (base / ".20000117T1200.partial").exists()
    assert (base / LATEST).read_text().strip() == "20000117T0000"
    assert (first.path / "forecast.zarr" / "t2m" / "zarr.json").read_bytes() == before  # type: ignore[operator]
    monkeypatch.setattr(cycle_mod, "_export", real)
    redo = run_cycle("det", PRODUCT, src, t1)  # the re-run completes and cleans up
    assert redo.status == "published" and not (base / ".20000117T1200.partial").exists()
    assert (base / LATEST).read_text().strip() == "20000117T1200"


def test_a_missing_model_publishes_the_flagged_fallback(
    setup: CycleSources, tmp_path: Path
) -> None:
    src = _sources(setup, tmp_path)
    run_cycle("det", PRODUCT, src, T0)
    gone = _sources(setup, tmp_path, checkpoint=tmp_path / "no-such-model.pt")
    t1 = T0 + timedelta(hours=12)
    r = run_cycle("det", PRODUCT, gone, t1)
    assert r.status == "fallback" and r.missed and "no checkpoint" in r.reason
    ds = xr.open_zarr(r.path / "forecast.zarr", consolidated=False)  # type: ignore[operator]
    assert ds.attrs["fallback"] == "true" and ds.attrs["fallback_from"] == T0.isoformat()
    assert list(ds["lead_time"].values) == [0, 6, 12]  # the previous run's 12..24 h
    prev = xr.open_zarr(
        src.products / "det" / "20000117T0000" / "forecast.zarr", consolidated=False
    )
    np.testing.assert_array_equal(ds["t2m"].values, prev["t2m"].sel(lead_time=[12, 18, 24]).values)
    assert pd.Timestamp(ds["init_time"].values[0]) == pd.Timestamp("2000-01-17T12")
    assert json.loads((r.path / "COMPLETE").read_text())["fallback"] is True  # type: ignore[operator]

    # without an earlier publication there is nothing to fall back on: a clear error
    with pytest.raises(ProductError, match="no earlier publication"):
        run_cycle(
            "det", PRODUCT, _sources(setup, tmp_path / "empty", checkpoint=gone.checkpoint), T0
        )


def test_product_mistakes_are_named(setup: CycleSources, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a crontab line"):
        ProductConfig(cycle="every six hours")
    with pytest.raises(ValidationError, match="not before deadline_minutes"):
        ProductConfig(cutoff_minutes=90, deadline_minutes=60)
    with pytest.raises(ValidationError, match="at least 2 members"):
        ProductConfig(kind="ensemble", members=1)
    with pytest.raises(ProductError, match="not on its cycle"):
        run_cycle("det", PRODUCT, _sources(setup, tmp_path), T0 + timedelta(hours=6))
    with pytest.raises(ValidationError, match=r"outputs \['geotiff'\] have no writer"):
        ProductConfig(outputs=["zarr", "geotiff"])
    with pytest.raises(ValidationError, match="point outputs need `sites`"):
        ProductConfig(outputs=["points_csv"])


def _workdir(setup: CycleSources, tmp_path: Path, products: str) -> Path:
    """A run workdir laid out as the stages write it, over the fixture's store/shards/model."""
    work = tmp_path / "run"
    (work / "train").mkdir(parents=True)
    (work / "store").symlink_to(setup.store)
    (work / "shards").symlink_to(setup.shards)
    (work / "train" / "model.pt").symlink_to(setup.checkpoint)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"workdir: {work}\n"
        "ingest: {sources: [{name: metar, paths: ['observations/*.txt']}]}\n"
        f"products:\n{products}"
    )
    return cfg


PRODUCTS_YAML = """\
  det: {kind: deterministic, cycle: "0 0,12 * * *", cutoff_minutes: 60, deadline_minutes: 120,
        horizon_hours: 24}
  rr: {kind: rapid_refresh, cycle: "0 */3 * * *", cutoff_minutes: 10, deadline_minutes: 30,
       horizon_hours: 12}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stratocast.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_cycle_and_operate_replay(setup: CycleSources, tmp_path: Path) -> None:
    cfg = _workdir(setup, tmp_path, PRODUCTS_YAML)
    one = _cli("cycle", "--config", str(cfg), "--product", "det", "--time", "2000-01-17T00")
    assert one.returncode == 0, one.stderr
    assert "det 2000-01-17T00:00:00+00:00: published" in one.stdout
    again = _cli("cycle", "--config", str(cfg), "--product", "det", "--time", "2000-01-17T00")
    assert again.returncode == 0 and ": already" in again.stdout

    run = _cli(
        "operate", "--config", str(cfg), "--replay", "2000-01-17T00", "--until", "2000-01-17T23"
    )
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.strip()}
    # det: 00 (already published: counted, not recomputed) and 12 UTC; rr: every 3 h = 8 cycles
    assert rows["det"][1:5] == ["2", "1", "0", "0"]
    assert rows["rr"][1:5] == ["8", "8", "0", "0"]
    pub = tmp_path / "run" / "products"
    assert len([p for p in (pub / "rr").iterdir() if (p / "COMPLETE").is_file()]) == 8
    assert (pub / "rr" / "LATEST").read_text().strip() == "20000117T2100"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cycle", "--product", "nope", "--time", "2000-01-17T00"], "unknown products ['nope']"),
        (["cycle", "--product", "det", "--time", "yesterday"], "is not an ISO time"),
        (["cycle", "--product", "det", "--time", "2000-01-17T06"], "not on its cycle"),
        (["operate", "--replay", "2000-01-18", "--until", "2000-01-17"], "is before --replay"),
    ],
)
def test_cli_product_mistakes_are_one_line(
    setup: CycleSources, tmp_path: Path, args: list[str], message: str
) -> None:
    cfg = _workdir(setup, tmp_path, PRODUCTS_YAML)
    out = _cli(args[0], "--config", str(cfg), *args[1:])
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_cycle_without_observations_is_not_a_forecast(
    setup: CycleSources, tmp_path: Path
) -> None:
    src = _sources(setup, tmp_path)
    late = datetime(2001, 6, 1, 0, tzinfo=UTC)  # after the store's last report
    strict = PRODUCT.model_copy(update={"fallback": "none"})
    with pytest.raises(ProductError, match="no observations of the model's 30 input stations"):
        run_cycle("det", strict, src, late)
    run_cycle("det", PRODUCT, src, T0)
    one_step = T0 + timedelta(hours=12)
    outage = tmp_path / "empty-store"
    (outage / "obs").mkdir(parents=True, exist_ok=True)
    r = run_cycle("det", PRODUCT, _sources(setup, tmp_path, store=outage), one_step)
    assert r.status == "fallback" and "no observations" in r.reason  # the previous, flagged
    with pytest.raises(ProductError, match="ends before"):  # a fallback too old to use
        run_cycle("det", PRODUCT, src, late)


def test_ensemble_members_are_reproducible_and_independent(
    setup: CycleSources, tmp_path: Path
) -> None:
    ens = PRODUCT.model_copy(update={"kind": "ensemble", "members": 3})
    big = PRODUCT.model_copy(update={"kind": "ensemble", "members": 5})
    warm = WarmModel(setup.checkpoint)
    a = run_cycle("ens", ens, _sources(setup, tmp_path / "a"), T0, warm=warm)
    b = run_cycle("ens", big, _sources(setup, tmp_path / "b"), T0, warm=warm)
    det = run_cycle("det", PRODUCT, _sources(setup, tmp_path / "d"), T0, warm=warm)
    da = xr.open_zarr(a.path / "forecast.zarr", consolidated=False)  # type: ignore[operator]
    db = xr.open_zarr(b.path / "forecast.zarr", consolidated=False)  # type: ignore[operator]
    dd = xr.open_zarr(det.path / "forecast.zarr", consolidated=False)  # type: ignore[operator]
    assert da["t2m"].dims == ("init_time", "member", "lead_time", "lat", "lon")
    assert list(da["member"].values) == [0, 1, 2] and da["member"].attrs["standard_name"]
    # member k does not depend on how many members were asked for
    np.testing.assert_array_equal(da["t2m"].values, db["t2m"].isel(member=[0, 1, 2]).values)
    # the control is the deterministic forecast; the perturbed members differ from it
    np.testing.assert_array_equal(da["t2m"].isel(member=0).values, dd["t2m"].values)
    # (a 4-step model barely listens to its observations: the spread is small but not zero)
    spread = da["t2m"].std("member").isel(lead_time=-1).values
    assert float(spread.min()) > 0


def test_every_output_format_is_published_together(
    setup: CycleSources, tmp_path: Path, tiny_obs: pd.DataFrame
) -> None:
    sites = tmp_path / "sites.csv"
    st = tiny_obs.drop_duplicates("station_id").head(3)
    st = st.rename(columns={"station_id": "site_id"})
    st[["site_id", "lat", "lon", "elevation"]].to_csv(sites, index=False)
    product = PRODUCT.model_copy(
        update={"outputs": ["netcdf", "grib2", "points_csv"], "sites": str(sites)}
    )
    r = run_cycle("all", product, _sources(setup, tmp_path), T0)
    files = json.loads((r.path / "COMPLETE").read_text())["files"]  # type: ignore[operator]
    assert files == ["forecast.zarr", "forecast.nc", "forecast.grib2", "forecast.csv"]
    zarr = xr.open_zarr(r.path / "forecast.zarr", consolidated=False)  # type: ignore[operator]
    nc = xr.open_dataset(r.path / "forecast.nc")  # type: ignore[operator]
    assert nc["t2m"].shape[-2:] == zarr["t2m"].shape[-2:]
    points = pd.read_csv(r.path / "forecast.csv")  # type: ignore[operator]
    assert set(points["site_id"]) == set(st["site_id"])


def test_operate_in_real_time_publishes_at_the_cut_off(
    setup: CycleSources, tiny_obs: pd.DataFrame, tmp_path: Path
) -> None:
    """The APScheduler path on the real clock: a product every minute with no cut-off; the
    store's reports are moved to the present so the next minute's windows hold some."""
    from stratocast.infer.operate import serve

    now = datetime.now(UTC)
    shift = pd.Timestamp(now).floor("6h") - pd.Timestamp("2000-01-17T00", tz="UTC")
    obs = tiny_obs.copy()
    obs["time"] = obs["time"] + shift
    if "received" in OBS_SCHEMA.names and "received" not in obs:
        obs["received"] = pd.NaT
    write_observations(tmp_path / "store", "synthetic", "1" * 16, obs)
    src = _sources(setup, tmp_path, store=tmp_path / "store")
    product = ProductConfig(
        cycle="* * * * *", cutoff_minutes=0, deadline_minutes=2, horizon_hours=12
    )
    stop = threading.Event()
    base = src.products / "minutely"

    def watch() -> None:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not stop.is_set():
            if base.is_dir() and any((p / "COMPLETE").is_file() for p in base.iterdir()):
                stop.set()
            time.sleep(0.5)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    tallies = serve({"minutely": product}, src, stop)
    t = tallies["minutely"]
    assert t.published >= 1, vars(t)
    done = [p for p in base.iterdir() if (p / "COMPLETE").is_file()]
    record = json.loads((done[0] / "COMPLETE").read_text())
    cycle_time = datetime.fromisoformat(record["cycle_time"])
    assert cycle_time.second == 0 and now - timedelta(minutes=1) <= cycle_time <= datetime.now(UTC)
    assert record["observations_used"] > 0 and t.margin_s[0] > 0


def test_the_archive_holds_the_published_cycles_without_fallbacks(
    setup: CycleSources, tmp_path: Path
) -> None:
    from stratocast.infer.archive import assemble

    src = _sources(setup, tmp_path)
    warm = WarmModel(setup.checkpoint)
    for k in range(3):
        run_cycle("det", PRODUCT, src, T0 + timedelta(hours=12 * k), warm=warm)
    gone = _sources(setup, tmp_path, checkpoint=tmp_path / "missing.pt")
    assert run_cycle("det", PRODUCT, gone, T0 + timedelta(hours=36)).status == "fallback"
    out, used, fallbacks = assemble(src.products, "det", tmp_path / "det.zarr")
    assert (used, fallbacks) == (3, 1)
    ds = xr.open_zarr(out, consolidated=False)
    want = [
        np.datetime64("2000-01-17T00"),
        np.datetime64("2000-01-17T12"),
        np.datetime64("2000-01-18T00"),
    ]
    assert list(ds["init_time"].values.astype("datetime64[h]")) == want
    one = xr.open_zarr(src.products / "det" / "20000117T1200" / "forecast.zarr", consolidated=False)
    np.testing.assert_array_equal(
        ds["t2m"].isel(init_time=1).values, one["t2m"].isel(init_time=0).values
    )
    with pytest.raises(ProductError, match="no published cycles of product nope"):
        assemble(src.products, "nope", tmp_path / "x.zarr")


def test_operate_metrics_are_served_on_loopback(setup: CycleSources, tmp_path: Path) -> None:
    import urllib.request

    from stratocast.infer.metrics import OperateMetrics
    from stratocast.infer.operate import replay

    metrics = OperateMetrics()
    server, _thread = metrics.serve(0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        src = _sources(setup, tmp_path)
        day = (T0, T0 + timedelta(hours=23))
        tallies = replay({"det": PRODUCT}, src, *day, metrics=metrics)
        assert tallies["det"].published == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
    assert 'stratocast_cycles_total{product="det",status="published"} 2.0' in text
    assert 'stratocast_cycle_phase_seconds_count{phase="compute",product="det"} 2.0' in text
    assert "stratocast_model_load_seconds{checkpoint=" in text
    assert 'stratocast_observations_used{product="det"}' in text


def _store_with_receipts(tiny_obs: pd.DataFrame, root: Path, delay: pd.Series) -> Path:
    obs = tiny_obs.copy()
    obs["received"] = obs["time"] + delay
    write_observations(root, "synthetic", "2" * 16, obs)
    return root


def test_a_late_bulletin_is_left_to_later_cycles_and_counted(
    setup: CycleSources, tiny_obs: pd.DataFrame, tmp_path: Path
) -> None:
    """Reports of one window arrive 3 h after the 00 UTC cut-off: the 00 UTC cycle leaves them
    out and counts them late; the 03 UTC rapid refresh, whose windows still hold that time,
    uses them."""
    on_time = pd.Series(pd.Timedelta(minutes=20), index=tiny_obs.index)
    late_rows = (tiny_obs["time"] == pd.Timestamp(T0)) & tiny_obs["station_id"].isin(
        sorted(set(tiny_obs["station_id"]))[:10]
    )
    assert late_rows.sum() > 10
    delay = on_time.where(~late_rows, pd.Timedelta(hours=4))
    store = _store_with_receipts(tiny_obs, tmp_path / "store", delay)
    src = _sources(setup, tmp_path, store=store)
    det = run_cycle("det", PRODUCT, src, T0)  # cut-off 01:00
    assert det.obs_late == late_rows.sum()
    rr = ProductConfig(
        kind="rapid_refresh",
        cycle="0 * * * *",
        cutoff_minutes=10,
        deadline_minutes=30,
        horizon_hours=12,
    )
    later = run_cycle("rr", rr, src, T0 + timedelta(hours=4, minutes=0))
    assert later.obs_late == 0
    # the 04 UTC windows (16..22 and 22..04 UTC) hold the late 00 UTC reports
    all_on_time = _store_with_receipts(tiny_obs, tmp_path / "store2", on_time)
    ref = run_cycle(
        "rr", rr, _sources(setup, tmp_path / "b", store=all_on_time), T0 + timedelta(hours=4)
    )
    assert later.obs_used == ref.obs_used
    det_ref = run_cycle("det", PRODUCT, _sources(setup, tmp_path / "c", store=all_on_time), T0)
    assert det_ref.obs_used - det.obs_used == late_rows.sum()  # exactly the late reports


def test_a_feed_outage_thins_the_cycles_it_spans(
    setup: CycleSources, tiny_obs: pd.DataFrame, tmp_path: Path
) -> None:
    """Nothing arrives for 2 hours around the 12 UTC cut-off (the feed's backlog comes when it
    returns): that cycle runs on what it has, counts the rest late, and the next cycle is whole."""
    t12 = T0 + timedelta(hours=12)
    arrive = tiny_obs["time"] + pd.Timedelta(minutes=20)
    outage = (arrive > pd.Timestamp(t12)) & (arrive < pd.Timestamp(t12 + timedelta(hours=2)))
    returns = pd.Timestamp(t12 + timedelta(hours=2, minutes=5))
    delay = (arrive.where(~outage, returns)) - tiny_obs["time"]
    src = _sources(setup, tmp_path, store=_store_with_receipts(tiny_obs, tmp_path / "s", delay))
    hit = run_cycle("det", PRODUCT, src, t12)
    assert hit.status == "published" and hit.obs_late == int(outage.sum()) > 0
    nxt = run_cycle("det", PRODUCT, src, t12 + timedelta(hours=12))
    assert nxt.obs_late == 0 and nxt.obs_used > hit.obs_used
