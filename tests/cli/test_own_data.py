"""The chain on a user's own data, without `stratocast world`: a real ERA5 GRIB sample as the
gridded target and real NOAA ISD-Lite observations (six stations in north-east France, 2017)
as the model's input, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr
import yaml
from cli_run import one_error_line, run_cli

from stratocast.cli.main import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GRIB = DATA / "grib" / "era5-levels-members.grib"
ISD = DATA / "isd_lite"
HISTORY = DATA / "stations" / "isd-history.csv"

needs_data = pytest.mark.skipif(not GRIB.exists(), reason="../shared/data (real samples) absent")


def _config(tmp_path: Path, **shards: object) -> Path:
    cfg = {
        "workdir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "ingest": {
            "sources": [
                {
                    "name": "isd_lite",
                    "paths": [str(ISD / "07*-2017.gz")],
                    "options": {"stations": str(HISTORY)},
                }
            ]
        },
        "shards": {
            # ERA5 ensemble member 0: z and t at 500 and 850 hPa, 2017-01-01/02 00 and 12 UTC
            "target": {"source": str(GRIB), "member": 0},
            "channels": ["z500", "t850", "z850", "t500"],
            "obs_variables": ["t2m", "msl", "u10", "v10"],
            "stats_start": "2017-01-01T00",
            "stats_end": "2017-01-02T12",
            "shard_steps": 4,
            "held_out": {"fraction": 0.2},
            **shards,
        },
        "train": {
            "model": {"name": "obs2grid", "hidden": 8, "blocks": 1},
            "train_start": "2017-01-01T00",
            "train_end": "2017-01-02T00",
            "val_start": "2017-01-02T00",
            "val_end": "2017-01-02T12",
            "steps": 3,
            "batch_size": 1,
            "history": 1,
            "rollout": 1,
            "warmup_steps": 0,
        },
        "forecast": {"start": "2017-01-01T12", "end": "2017-01-02T00", "horizon_hours": 12},
        "verify": {"variables": ["t2m"]},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@needs_data
def test_era5_grib_target_and_isd_observations_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    for stage in ("ingest", "shards", "train", "forecast"):
        assert main([stage, "--config", str(cfg), "--no-progress"]) == 0, stage
    out = capsys.readouterr().out
    run = tmp_path / "run"
    assert "4 steps, 4 channels on 61x120, 5 input stations, 1 held out, 0 outside" in out
    manifest = json.loads((run / "shards" / "manifest.json").read_text())
    assert manifest["channels"] == ["z500", "t850", "z850", "t500"]
    assert manifest["time_start"].startswith("2017-01-01T00") and manifest["n_time"] == 4
    roles = pd.read_csv(run / "shards" / "stations.csv", dtype={"station_id": str})
    assert sorted(roles["role"]) == ["input"] * 5 + ["verify"]
    held = roles.loc[roles["role"] == "verify", "station_id"].item()
    assert held not in manifest["station_ids"]  # the held-out station never reaches the model
    fc = xr.open_zarr(run / "forecast" / "deterministic.zarr", consolidated=False)
    assert {"z500", "t850"} <= set(fc.data_vars)
    assert bool(fc["z500"].notnull().all())
    # the target has no surface field: verification at stations says what is missing
    assert main(["verify", "--config", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "forecast 'stratocast' lacks variable 't2m'" in err


@needs_data
def test_bad_target_fails_before_any_work(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert main(["ingest", "--config", str(cfg), "--no-progress"]) == 0
    bad = _config(tmp_path, channels=["z500", "t2m"])
    line = one_error_line(run_cli("shards", "--config", str(bad), "--no-progress"), "shards")
    assert str(GRIB) in line and "t2m not in this grib file; it gives t500, t850" in line
    assert not (tmp_path / "run" / "shards").exists()


def test_station_series_without_a_gridded_target_is_refused(tmp_path: Path) -> None:
    """No `stratocast world` and no target source: the error points at the target config."""
    obs = tmp_path / "obs.csv"
    obs.write_text("station,valid,lat,lon,t\nA,2020-01-01T00:00,45,5,1.5\n")
    cfg = {
        "workdir": str(tmp_path / "run"),
        "cache_dir": str(tmp_path / "cache"),
        "ingest": {
            "sources": [
                {
                    "name": "table",
                    "paths": [str(obs)],
                    "options": {
                        "lat": "lat",
                        "lon": "lon",
                        "columns": {"t": {"variable": "t2m", "units": "degC"}},
                    },
                }
            ]
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_cli("ingest", "--config", str(path), "--no-progress")
    if proc.returncode != 0:
        pytest.fail(proc.stderr[-2000:])
    line = one_error_line(run_cli("shards", "--config", str(path), "--no-progress"), "shards")
    assert "shards.target.source is 'world' but `stratocast world` has not run" in line
    assert "configs/era5.yaml" in line and "station series alone" in line


BAD_TARGETS: dict[str, tuple[dict[str, object], str]] = {
    "no member": ({"member": None}, "is an ensemble of 10 members: choose one"),
    "gaps": ({"step_hours": 6}, "the time axis has gaps: 3 of the 7 times"),
    "period": ({"start": "2016-06-01T00"}, "the time range 2016-06-01T00:00..2017-01-02T12:00"),
    "region": (
        {"region": {"lat_min": -89.5, "lat_max": -89.0, "lon_min": 1.0, "lon_max": 2.0}},
        "the region (lat -89.5..-89.0, lon 1.0..2.0) holds no point of the source's grid "
        "(lat -90..90, lon 0..357, spacing 3°×3°)",
    ),
}


@needs_data
@pytest.mark.parametrize("case", sorted(BAD_TARGETS))
def test_bad_target_is_one_line_naming_file_and_what_was_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    change, expected = BAD_TARGETS[case]
    cfg = _config(tmp_path)
    assert main(["ingest", "--config", str(cfg), "--no-progress"]) == 0
    capsys.readouterr()
    target = {"source": str(GRIB), "member": 0, **change}
    bad = _config(tmp_path, target={k: v for k, v in target.items() if v is not None})
    assert main(["shards", "--config", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stratocast shards: error: {GRIB}"), err
    assert expected in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "shards").exists()  # refused before anything was written
