"""`configs/era5.yaml` end to end, offline: the shipped real-data config with only its
endpoints, periods and sizes changed, against a local HTTP server on 127.0.0.1 that serves a
Zarr v2 store laid out exactly as ARCO-ERA5 lays out ``full_37-1h-0p25deg-chunk-1.zarr-v3``
(names, attributes, encodings, chunking, coordinate order: ``stratocast.testing.era5_layouts``).
No `stratocast world` command runs.

What the store holds, said plainly: the real ERA5 z500/t850 (the cfgrib GRIB sample, ensemble
member 0, 3° regridded to the store's 2.5°) at the four times the sample has (2017-01-01/02 00
and 12 UTC), and for every other time and field the built-in world's simulated truth relabelled
to January 2017 — the real samples cover four time steps, too few to train on. Observations:
the real NOAA ISD-Lite series of six stations in north-east France (2017), plus
pseudo-observations sampled from the same simulated truth at real airport sites (METAR text and
SYNOP BUFR written by the world's network), since no real report of the samples overlaps a
world-truth period. Most of those airports lie outside the config's European box and are left
out (counted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
import zarr

from stratocast.cli.main import main
from stratocast.gridded import open_gridded
from stratocast.gridded.regrid import regrid
from stratocast.shards.layout import GRID
from stratocast.shards.target import TargetConfig, open_target
from stratocast.testing.era5_layouts import write_arco_era5, write_weatherbench2
from stratocast.testing.http import serve_directory
from stratocast.world.network import NetworkConfig, write_observations
from stratocast.world.truth import TruthConfig, generate_truth, open_truth

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
GRIB = DATA / "grib" / "era5-levels-members.grib"
ISD = DATA / "isd_lite"
HISTORY = DATA / "stations" / "isd-history.csv"
ARCO_PATH = "gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
START = np.datetime64("2017-01-01T00", "ns")
_METADATA = (".zarray", ".zattrs", ".zgroup", ".zmetadata")


def _chunk_gets(requests: list[tuple[str, str]]) -> int:
    return sum(1 for m, p in requests if m == "GET" and not p.endswith(_METADATA))


needs_data = pytest.mark.skipif(not GRIB.exists(), reason="../shared/data (real samples) absent")


def _canonical_2017(tmp_path: Path) -> tuple[xr.Dataset, xr.Dataset]:
    """(the store's canonical fields on a 2.5° grid with poles, the relabelled world truth
    on its own grid for the pseudo-observations)."""
    truth_path = generate_truth(
        TruthConfig(days=14, spinup_days=5), tmp_path / "truth-cache", progress=False
    )
    truth = open_truth(truth_path).load()
    offset = START - truth["time"].values[0]
    truth = truth.assign_coords(time=truth["time"].values + offset)
    lat = np.arange(-90.0, 90.0 + 1e-9, 2.5)
    lon = np.arange(0.0, 360.0, 2.5)
    fields = regrid(truth, lat, lon, method="bilinear")
    real = open_gridded(GRIB, variables=["z500", "t850"]).isel(member=0)
    real = regrid(real, lat, lon, method="bilinear")
    for name in ("z500", "t850"):
        fields[name].loc[{"time": real["time"].values}] = real[name].values
    return fields.astype(np.float32), truth


def _run_config(tmp_path: Path, url: str, obs_dir: Path) -> Path:
    cfg: dict[str, Any] = yaml.safe_load((REPO / "configs" / "era5.yaml").read_text())
    cfg["workdir"] = str(tmp_path / "run")
    cfg["cache_dir"] = str(tmp_path / "cache")
    isd = cfg["ingest"]["sources"][0]
    isd["paths"] = [str(ISD / "07*-2017.gz")]
    isd["options"] = {"stations": str(HISTORY)}
    cfg["ingest"]["sources"] += [
        {"name": "metar", "paths": [str(obs_dir / "metar" / "*.txt")]},
        {"name": "synop_bufr", "paths": [str(obs_dir / "synop_bufr" / "*.bufr")]},
    ]
    target = cfg["shards"]["target"]
    target["source"] = url
    target["start"], target["end"] = "2017-01-01T00", "2017-01-14T18"
    cfg["shards"].update(stats_start="2017-01-01T00", stats_end="2017-01-09T18", shard_steps=8)
    cfg["train"].update(
        model={"name": "obs2grid", "hidden": 8, "blocks": 1},
        train_start="2017-01-01T00",
        train_end="2017-01-09T18",
        val_start="2017-01-10T00",
        val_end="2017-01-10T18",
        steps=6,
        batch_size=2,
        rollout=2,
        warmup_steps=0,
        checkpoint={"every": 3, "keep": 2},
    )
    cfg["forecast"].update(start="2017-01-11T00", end="2017-01-13T00", horizon_hours=24)
    path = tmp_path / "era5.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@needs_data
@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_era5_config_over_http_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fields, truth = _canonical_2017(tmp_path)
    served = tmp_path / "served"
    # hourly like the real store: the 6-hourly fields, NaN in between (step_hours 6 picks them)
    write_arco_era5(fields, served / ARCO_PATH, regular_time=True)
    obs_dir = tmp_path / "pseudo-obs"
    write_observations(truth, NetworkConfig(n_metar=300, n_synop=150), obs_dir, progress=False)

    with serve_directory(served) as srv:
        cfg = _run_config(tmp_path, f"{srv.url}/{ARCO_PATH}", obs_dir)
        assert main(["ingest", "--config", str(cfg), "--no-progress"]) == 0
        assert main(["shards", "--config", str(cfg), "--no-progress"]) == 0
        fetched = _chunk_gets(srv.requests)
        assert fetched > 0
        # a rebuild reads every chunk from the disk cache: no chunk GET reaches the server
        assert main(["shards", "--config", str(cfg), "--no-progress"]) == 0
        assert _chunk_gets(srv.requests) == fetched
    for stage in ("train", "forecast", "verify"):
        assert main([stage, "--config", str(cfg), "--no-progress"]) == 0, stage
    out = capsys.readouterr().out
    run = tmp_path / "run"

    manifest = json.loads((run / "shards" / "manifest.json").read_text())
    # the config's box crosses 0°: 1° cells -15..35, 35..72 (conservative from 2.5°)
    assert manifest["lon"][0] == -15.0 and manifest["lon"][-1] == 35.0
    assert len(manifest["lon"]) == 51 and len(manifest["lat"]) == 38
    assert manifest["n_time"] == 14 * 4 and manifest["time_step_hours"] == 6
    roles = pd.read_csv(run / "shards" / "stations.csv", dtype={"station_id": str})
    counts = roles["role"].value_counts()
    assert counts["outside"] > counts["input"] > counts["verify"] > 0
    assert "outside the domain" in out
    # what reached the shards over HTTP is the target read from a local copy of the store,
    # exactly; at 2017-01-01T00 its t850 is the real ERA5 field (regridded)
    local = open_target(
        TargetConfig.model_validate(
            {
                **yaml.safe_load(cfg.read_text())["shards"]["target"],
                "source": str(served / ARCO_PATH),
            }
        ),
        manifest["channels"],
        world_truth=lambda: Path("-"),
        cache_dir=tmp_path / "unused",
    )
    stored = zarr.open_array(str(run / "shards" / GRID), mode="r")
    for c, name in enumerate(manifest["channels"]):
        np.testing.assert_array_equal(stored[0, c], local[name].isel(time=0).values.astype("f4"))
    # the six real ISD stations are inside the box: inputs or held out, never outside
    isd_ids = {p.name.split("-2017")[0] for p in ISD.glob("07*-2017.gz")}
    isd_roles = roles[roles["station_id"].isin(isd_ids)]
    assert len(isd_roles) == len(isd_ids) and "outside" not in set(isd_roles["role"])

    fc = xr.open_zarr(run / "forecast" / "deterministic.zarr", consolidated=False)
    assert {"t2m", "msl", "z500"} <= set(fc.data_vars)
    assert bool(np.isfinite(fc["t2m"].values).all())
    # scored at the held-out stations only, against their real/pseudo observations, with
    # persistence and a climatology from the stations' own history before the test period
    table = pd.read_parquet(run / "verify" / "scorecard.parquet")
    assert {"stratocast", "persistence", "climatology"} <= set(table["system"])
    assert {"t2m", "ws10", "msl"} <= set(table["variable"])
    assert table["n_stations"].max() <= counts["verify"]
    assert bool(np.isfinite(table.loc[table["system"] == "stratocast", "rmse"]).all())
    assert (run / "verify" / "report.html").is_file()

    # the same forecast against the real ISD-Lite series alone (model inputs here, so this
    # shows the scoring path on real reports, not independent skill): persistence and
    # climatology come from those stations' own history before the first scored init
    real_csv = tmp_path / "isd_verify.csv"
    pd.DataFrame({"station_id": sorted(isd_ids), "role": "verify"}).to_csv(real_csv, index=False)
    argv = ["verify", "--forecast", str(run / "forecast" / "deterministic.zarr"), "--obs"]
    argv += [str(run / "store"), "--stations", str(real_csv), "--out", str(tmp_path / "v-isd")]
    assert main([*argv, "--reference", "climatology"]) == 0
    real = pd.read_parquet(tmp_path / "v-isd" / "scorecard.parquet")
    assert {"deterministic", "climatology"} <= set(real["system"])
    t2m = real[(real["variable"] == "t2m") & (real["system"] == "deterministic")]
    assert 1 <= t2m["n_stations"].max() <= len(isd_ids) and (t2m["n"] > 0).all()


@needs_data
@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_weatherbench2_and_arco_layouts_give_the_same_target(tmp_path: Path) -> None:
    """The same fields in the WeatherBench2 layout open, over HTTP, to the same target."""
    real = open_gridded(GRIB, variables=["z500", "t850"]).isel(member=0)
    # a stand-in orography (the sample has none): a static in both archives, 2-D in WB2's
    # regridded stores and repeated along time in ARCO's
    real["orography"] = (("lat", "lon"), np.abs(real["z500"].isel(time=0).values - 54000) / 10)
    served = tmp_path / "served"
    write_arco_era5(real, served / "arco.zarr")
    write_weatherbench2(real, served / "wb2.zarr", layout="240x121")
    cfg = yaml.safe_load((REPO / "configs" / "era5.yaml").read_text())["shards"]["target"]
    with serve_directory(served) as srv:
        got = {}
        for name in ("arco.zarr", "wb2.zarr"):
            t = TargetConfig.model_validate(
                {**cfg, "source": f"{srv.url}/{name}", "start": None, "end": None, "step_hours": 12}
            )
            got[name] = open_target(
                t, ["z500", "t850"], world_truth=lambda: Path("-"), cache_dir=tmp_path / "c"
            ).load()
    a, b = got["arco.zarr"], got["wb2.zarr"]
    assert a.sizes == b.sizes and a.sizes["lon"] == 51
    for name in ("z500", "t850", "orography"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-6)
        assert np.isfinite(a[name].values).all()
    assert a["orography"].dims == ("lat", "lon") and b["orography"].dims == ("lat", "lon")
