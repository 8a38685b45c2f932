"""Stations → AR6 regions, continents and custom polygons; scores by region.

Station coordinates come from NOAA's isd-history.csv in shared data (Le Bourget, Robinson,
Sydney Intl, Vladivostok); the expected regions are known geography, written here by hand.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stratocast.verify.metrics import ScoreAccumulator
from stratocast.verify.regions import (
    AR6_ENV,
    RegionError,
    _ar6_cached,
    ar6_land_regions,
    custom_regions,
    region_scores,
    resolve_ar6_file,
    station_regions,
)

HISTORY = Path(__file__).resolve().parents[3] / "shared" / "data" / "stations" / "isd-history.csv"
#: USAF id → (name, expected AR6 region, expected continent)
EXPECTED = {
    "071500": ("LE BOURGET", "WCE", "Europe"),
    "071690": ("ROBINSON", "WCE", "Europe"),
    "947670": ("SYDNEY INTL", "EAU", "Oceania"),
    "319600": ("VLADIVOSTOK", "EAS", "Asia"),
}


@pytest.fixture(scope="module")
def stations() -> pd.DataFrame:
    if not HISTORY.is_file():
        pytest.skip(f"{HISTORY} absent")
    hist = pd.read_csv(HISTORY, dtype={"USAF": str, "WBAN": str})
    rows = hist[hist["USAF"].isin(list(EXPECTED)) & (hist["WBAN"] == "99999")]
    rows = rows.drop_duplicates("USAF").set_index("USAF").loc[list(EXPECTED)]
    return pd.DataFrame(
        {"station_id": rows.index, "lon": rows["LON"].to_numpy(), "lat": rows["LAT"].to_numpy()}
    )


def _regions_of(table: pd.DataFrame, sid: str, kind: str) -> set[str]:
    return set(table[(table["station_id"] == sid) & (table["kind"] == kind)]["region"])


def test_ar6_regions_load_without_network(ar6_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture may have fetched the file; loading it must not touch the network.
    _ar6_cached.cache_clear()

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    regions = ar6_land_regions(ar6_file)
    assert len(regions) == 46
    assert {"WCE", "EAU", "MED", "NZ"} <= set(regions.abbrevs)


def test_real_stations_fall_in_their_ar6_region_and_continent(
    stations: pd.DataFrame, ar6_file: Path
) -> None:
    table = station_regions(
        stations["station_id"], stations["lon"], stations["lat"], ar6_path=ar6_file
    )
    for sid, (_, region, continent) in EXPECTED.items():
        assert _regions_of(table, sid, "ar6") == {region}
        assert _regions_of(table, sid, "continent") == {continent}


def test_mediterranean_station_is_in_europe_and_africa(ar6_file: Path) -> None:
    # Valletta, Malta (35.85 N, 14.48 E) lies in the AR6 Mediterranean region.
    table = station_regions(["MT"], [14.48], [35.85], ar6_path=ar6_file)
    assert _regions_of(table, "MT", "ar6") == {"MED"}
    assert _regions_of(table, "MT", "continent") == {"Europe", "Africa"}


def test_custom_polygon_and_longitudes_0_360(stations: pd.DataFrame, ar6_file: Path) -> None:
    # A box around Paris and one straddling the dateline given in 0..360 longitudes.
    custom = {
        "paris_box": [(1.5, 48.3), (3.5, 48.3), (3.5, 49.5), (1.5, 49.5)],
        "tasman": [(140.0, -45.0), (179.0, -45.0), (179.0, -25.0), (140.0, -25.0)],
    }
    lon = stations["lon"].to_numpy() % 360.0  # 0..360 input must work too
    table = station_regions(
        stations["station_id"], lon, stations["lat"], custom=custom, ar6_path=ar6_file
    )
    assert _regions_of(table, "071500", "custom") == {"paris_box"}
    assert _regions_of(table, "071690", "custom") == set()  # Robinson is 2.4° east of the box
    assert _regions_of(table, "947670", "custom") == {"tasman"}
    assert _regions_of(table, "947670", "ar6") == {"EAU"}


def test_bad_polygon_is_a_clear_error() -> None:
    with pytest.raises(RegionError, match="'tri'"):
        custom_regions({"tri": [(0.0, 0.0), (1.0, 1.0)]})
    with pytest.raises(RegionError, match="invalid coordinates"):
        station_regions(["X"], [0.0], [95.0], ar6=False, continents=False)


def test_region_scores_sum_station_sums() -> None:
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((5, 2, 4))
    systems = {"A": obs + rng.standard_normal(obs.shape), "B": obs + 2.0}
    valid = np.full((5, 2), np.datetime64("2024-01-01", "ns"))
    acc = ScoreAccumulator(
        ["A", "B"], ["t2m"], np.array([0, 6]), np.array(["s0", "s1", "s2", "s3"])
    )
    acc.update("t2m", obs, systems, valid)
    membership = pd.DataFrame(
        {"station_id": ["s0", "s2", "s3", "s9"], "kind": "custom", "region": ["r", "r", "q", "r"]}
    )
    table = region_scores(acc, membership, reference="B").set_index(["region", "system"])
    row = table.loc[("r", "A")].iloc[0]  # lead 0
    err = (systems["A"] - obs)[:, 0, [0, 2]]
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert row["bias"] == pytest.approx(np.mean(err))
    assert row["n"] == 10 and row["n_stations"] == 2
    assert row["mse_skill"] == pytest.approx(1 - np.mean(err**2) / 4.0)


def test_explicit_ar6_path_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "IPCC-WGI-reference-regions-v4.zip"
    bad.write_bytes(b"not the AR6 file")
    monkeypatch.setenv(AR6_ENV, str(bad))
    with pytest.raises(RegionError, match="SHA-256"):
        resolve_ar6_file()
    monkeypatch.setenv(AR6_ENV, str(tmp_path / "absent.zip"))
    with pytest.raises(RegionError, match="missing"):
        resolve_ar6_file()


def test_offline_without_any_copy_names_every_route(tmp_path: Path, monkeypatch) -> None:
    import regionmask

    monkeypatch.delenv(AR6_ENV, raising=False)
    with (
        regionmask.set_options(cache_dir=str(tmp_path / "rm")),
        pytest.raises(RegionError, match="no copy at") as info,
    ):
        resolve_ar6_file(cache_dir=tmp_path / "sc", download=False)
    assert str(tmp_path / "sc") in str(info.value) and AR6_ENV in str(info.value)


def test_no_data_file_is_vendored() -> None:
    package = Path(__file__).resolve().parents[2] / "src" / "stratocast" / "verify"
    assert not list(package.rglob("*.zip")), "third-party data must not live in the package"
