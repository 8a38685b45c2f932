from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stratocast.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, cfg: dict[str, object]) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_demo_config_is_valid() -> None:
    from stratocast.cli.run_config import load_run

    cfg, paths = load_run(REPO / "configs" / "demo.yaml")
    assert cfg.train.rollout >= 2
    assert paths.forecast.name == "deterministic.zarr"
    assert all(
        Path(p).is_absolute() or p.startswith("runs") for s in cfg.ingest.sources for p in s.paths
    )


def test_unknown_key_is_named_with_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["train"]["learning_rate"] = 0.1
    rc = main(["train", "--config", str(_write(tmp_path, cfg))])
    err = capsys.readouterr().err
    assert rc == 2
    assert "train.learning_rate: unknown key" in err
    assert "run.yaml" in err


def test_bad_value_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["train"]["batch_size"] = "eight"
    assert main(["train", "--config", str(_write(tmp_path, cfg))]) == 2
    assert "train.batch_size" in capsys.readouterr().err


def test_missing_and_malformed_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    assert main(["ingest", "--config", str(bad)]) == 2
    assert "cannot parse YAML" in capsys.readouterr().err


def test_stage_before_its_input_exists_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["workdir"] = str(tmp_path / "w")
    assert main(["train", "--config", str(_write(tmp_path, cfg))]) == 2
    assert "run `stratocast shards` first" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end_on_a_small_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole chain through the CLI, real components, a short world and a short training."""
    cfg: dict[str, object] = {
        "workdir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "world": {
            "truth": {"days": 24, "spinup_days": 10},
            "network": {"n_metar": 60, "n_synop": 30},
        },
        "ingest": {
            "sources": [
                {"name": "metar", "paths": ["observations/metar/*.txt"]},
                {"name": "synop_bufr", "paths": ["observations/synop_bufr/*.bufr"]},
            ]
        },
        "shards": {"stats_start": "2000-01-01T00", "stats_end": "2000-01-14T18", "shard_steps": 16},
        "train": {
            "model": {"hidden": 8, "blocks": 1},
            "train_start": "2000-01-01T00",
            "train_end": "2000-01-14T18",
            "val_start": "2000-01-15T00",
            "val_end": "2000-01-17T18",
            "steps": 10,
            "batch_size": 4,
            "rollout": 2,
        },
        "forecast": {"start": "2000-01-18T00", "end": "2000-01-21T12", "horizon_hours": 48},
        "verify": {"variables": ["t2m", "ws10"]},
    }
    rc = main(["demo", "--config", str(_write(tmp_path, cfg)), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    run = tmp_path / "run"
    report = run / "verify" / "report.html"
    assert report.is_file() and f"Report: {report.resolve()}" in out
    assert "data:image/png;base64" in report.read_text()
    timings = json.loads((run / "timings.json").read_text())
    assert set(timings) >= {"world", "ingest", "shards", "train", "forecast", "verify", "total"}
    # the accounting identity is stored, holds per source, and every source delivered
    acc = json.loads(next((run / "store" / "accounting").glob("*.json")).read_text())
    assert set(acc["sources"]) == {"metar", "synop_bufr"}
    for src in acc["sources"].values():
        assert src["reports_read"] > 0
        assert src["reports_read"] == src["reports_stored"] + src["reports_quarantined"]
    assert "reports" in out and "quarant" in out  # the accounting table was printed
