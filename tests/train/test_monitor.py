from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stratocast.train.monitor import Monitor, StepTimer, device_stats, flatten_scalars


def _events(out: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _records(out: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_rank0_scalars_land_in_tensorboard_and_jsonl(tmp_path: Path) -> None:
    with Monitor(tmp_path, rank=0) as mon:
        mon.scalars(10, {"loss": 0.5, "loss_per_step": [0.25, 0.75], "lr": torch.tensor(1e-3)})
        mon.scalars(20, {"loss": 0.375, "val_rmse": {"t2m": [1.5, 2.5]}})
    ev = _events(tmp_path)
    assert ev["loss"] == [(10, 0.5), (20, 0.375)]  # exact in float32
    assert ev["loss_per_step/step_1"] == [(10, 0.25)]
    assert ev["loss_per_step/step_2"] == [(10, 0.75)]
    assert ev["val_rmse/t2m/step_2"] == [(20, 2.5)]
    assert ev["lr"][0][1] == pytest.approx(1e-3)
    recs = _records(tmp_path)
    assert recs[0] == {"step": 10, "loss": 0.5, "loss_per_step": [0.25, 0.75], "lr": recs[0]["lr"]}
    assert recs[1] == {"step": 20, "loss": 0.375, "val_rmse": {"t2m": [1.5, 2.5]}}


def test_other_ranks_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "rank1"
    mon = Monitor(out, rank=1)
    mon.scalars(1, {"loss": 1.0})
    mon.close()
    assert not out.exists()


def test_resume_drops_records_the_interrupted_run_will_redo(tmp_path: Path) -> None:
    with Monitor(tmp_path, rank=0) as mon:
        for step in (10, 20, 30):
            mon.scalars(step, {"loss": float(step)})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 40, "lo')  # torn line of a killed writer
    with Monitor(tmp_path, rank=0, start_step=20) as mon:
        mon.scalars(20, {"loss": -20.0})
    assert [(r["step"], r["loss"]) for r in _records(tmp_path)] == [(10, 10.0), (20, -20.0)]
    assert _events(tmp_path)["loss"] == [(10, 10.0), (20, -20.0)]


def test_non_numeric_value_is_named_and_nothing_written(tmp_path: Path) -> None:
    with (
        Monitor(tmp_path, rank=0, tensorboard=False) as mon,
        pytest.raises(TypeError, match="'loss_per_step'\\[1\\]"),
    ):
        mon.scalars(1, {"loss": 1.0, "loss_per_step": [1.0, "x"]})  # type: ignore[list-item]
    assert (tmp_path / "metrics.jsonl").read_text() == ""
    assert not (tmp_path / "tensorboard").exists()


def test_without_tensorboard_warns_once_and_still_writes_jsonl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.warns(RuntimeWarning, match="tensorboard is not installed"):
        mon = Monitor(tmp_path, rank=0)
    mon.scalars(3, {"loss": 2.0})
    mon.close()
    assert _records(tmp_path) == [{"step": 3, "loss": 2.0}]


def test_flatten_expands_lists_one_based() -> None:
    assert flatten_scalars({"a": [1, 2], "b": {"c": 3}}) == {
        "a/step_1": 1.0,
        "a/step_2": 2.0,
        "b/c": 3.0,
    }


def test_device_stats_on_cpu_reports_host_only() -> None:
    # The CPU figure is "since the previous call": start the interval here, or it spans
    # whatever this pytest process did (or waited for) since an earlier test called it.
    device_stats()
    x = 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.2:  # busy: this process should show ~100 % of a core
        x += 1.0
    stats = device_stats()
    if not torch.cuda.is_available():
        assert not any(k.startswith("gpu/") for k in stats)
    assert 0.01 < stats["host/rss_gib"] < 64
    assert 20.0 < stats["host/cpu_pct"] < 400.0


def test_step_timer_phases_sum_to_the_measured_step() -> None:
    timer = StepTimer()
    plan = {"data": 0.004, "forward": 0.008, "backward": 0.012, "optimizer": 0.002}
    steps = 5
    t0 = time.perf_counter()
    timer.reset()
    for _ in range(steps):
        for name, secs in plan.items():
            with timer.phase(name):
                time.sleep(secs)
        timer.step()
    total_ms = 1e3 * (time.perf_counter() - t0) / steps
    snap = timer.snapshot()
    phases_ms = sum(snap[f"time/{p}_ms"] for p in plan)
    # the only time outside a phase is the loop's own bookkeeping (microseconds)
    assert phases_ms == pytest.approx(total_ms, rel=0.05)
    assert snap["time/step_ms"] == pytest.approx(total_ms, rel=0.01)
    for name, secs in plan.items():  # sleep never returns early; scheduling adds a little
        assert 1e3 * secs <= snap[f"time/{name}_ms"] < 1e3 * secs + 20
    assert snap["time/communication_ms"] == 0.0
    assert timer.snapshot()["time/step_ms"] == 0.0  # reset after the snapshot


def test_step_timer_rejects_unknown_phase() -> None:
    timer = StepTimer()
    with pytest.raises(ValueError, match="forwrd"), timer.phase("forwrd"):
        pass
