"""User mistakes that used to end as "internal error ... exit 1" (a bare ValueError/KeyError
from deep inside a stage) now reach the CLI as StratocastErrors: one stderr line naming the
file or option, exit 2. Real ``stratocast`` processes; and the CLI starts without torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import REPO, demo_config, one_error_line, run_cli

from stratocast.shards.layout import Manifest

DATA = REPO / ".." / "shared" / "data"
WMO_STATION_LIST = DATA / "synop_tac" / "gts_data" / "station_list.csv"

_TRAIN: dict[str, object] = {
    "model": {"name": "obs2grid", "hidden": 8, "blocks": 1, "kernel_widths_km": [800.0]},
    "train_start": "2000-01-01T00",
    "train_end": "2000-01-15T18",
    "val_start": "2000-01-16T00",
    "val_end": "2000-01-17T18",
    "steps": 2,
    "batch_size": 4,
    "precision": "fp32",
    "tensorboard": False,
}


def test_a_wmo_station_list_as_the_catalogue_names_the_file(tmp_path: Path) -> None:
    """The real WMO station list (traditional_station_identifier, latitude, longitude) put
    where ingest expects the run's catalogue: was a bare ValueError, exit 1."""
    if not WMO_STATION_LIST.is_file():
        pytest.skip(f"real sample data absent: {WMO_STATION_LIST}")
    work = tmp_path / "w"
    (work / "observations").mkdir(parents=True)
    catalogue = work / "observations" / "stations.csv"
    shutil.copy(WMO_STATION_LIST, catalogue)
    line = one_error_line(
        run_cli("ingest", "--no-progress", "--config", str(demo_config(tmp_path, work))), "ingest"
    )
    assert f"station catalogue {catalogue} lacks columns ['lat', 'lon', 'station_id']" in line


def test_an_unknown_model_name_names_it(tiny_shards: tuple[Path, Manifest], tmp_path: Path) -> None:
    """``train.model.name`` with a typo: was a KeyError (repr-quoted message), exit 1."""
    work = tmp_path / "w"
    shutil.copytree(tiny_shards[0], work / "shards")
    train = {**_TRAIN, "model": {**_TRAIN["model"], "name": "obs2gird"}}  # type: ignore[dict-item]
    cfg = demo_config(tmp_path, work, train=train)
    line = one_error_line(run_cli("train", "--no-progress", "--config", str(cfg)), "train")
    assert "unknown model 'obs2gird'; registered models: ['obs2grid']" in line


def test_a_batch_larger_than_the_period_names_the_fix(
    tiny_shards: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """A training period with fewer samples than one batch: was a bare ValueError, exit 1."""
    work = tmp_path / "w"
    shutil.copytree(tiny_shards[0], work / "shards")
    train = {**_TRAIN, "train_end": "2000-01-03T18", "batch_size": 32}
    cfg = demo_config(tmp_path, work, train=train)
    line = one_error_line(
        run_cli("train", "--no-progress", "--config", str(cfg), "--fresh"), "train"
    )
    assert (
        "cannot fill one batch of 32" in line and "use a longer period or a smaller batch" in line
    )


def test_the_cli_imports_no_torch() -> None:
    """Reading and validating a config costs no torch import (an error run: ~230 MB, not 560)."""
    code = "import stratocast.cli.main, sys; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_config_error_runs_without_torch(tmp_path: Path) -> None:
    """The whole error path of a bad config (parse, validate, report) stays torch-free."""
    cfg = demo_config(tmp_path, tmp_path / "w", train={"batch_size": 0})
    code = (
        "import sys; from stratocast.cli.main import main; rc = main(['ingest', '--config', "
        f"{str(cfg)!r}]); assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "train.batch_size" in done.stderr
