"""The world's observing network: real stations, the observation operator, and the files.

Files are checked with independent decoders (a regex / hand decoding for METAR, ecCodes
directly for BUFR, and the ``metar`` package when installed), never a stratocast reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import airportsdata
import eccodes
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stratocast.world.metar_writer import KT_PER_MS, PA_PER_INHG, whole_celsius
from stratocast.world.network import (
    NetworkConfig,
    ObservationSummary,
    bilinear_weights,
    build_stations,
    iter_reports,
    qnh_pa,
    station_pressure_pa,
    write_observations,
)

SMALL = NetworkConfig(
    n_metar=80,
    n_synop=40,
    seed=3,
    gross_error_rate=0.02,
    duplicate_rate=0.02,
    gap_rate=0.05,
    outage_rate=0.05,
)

METAR_RE = re.compile(
    r"^(?P<id>[A-Z]{4}) (?P<day>\d{2})(?P<hh>\d{2})(?P<mm>\d{2})Z "
    r"(?P<wind>00000KT|(?P<dir>\d{3})(?P<spd>\d{2,3})(?:G(?P<gust>\d{2,3}))?KT) "
    r"(?:CAVOK|(?P<vis>\d{4}|(?:\d{1,2}|M1/4|1/4|1/2|3/4|1 1/2)SM) "
    r"(?P<cloud>CLR|NSC|(?:FEW|SCT|BKN|OVC)\d{3})) "
    r"(?P<t>M?\d{2})/(?P<td>M?\d{2}) "
    r"(?:Q(?P<q>\d{4})|A(?P<a>\d{4}) RMK AO2 SLP(?P<slp>\d{3}) "
    r"T(?P<ts>[01])(?P<tt>\d{3})(?P<ds>[01])(?P<dd>\d{3}))$"
)
HEADING_RE = re.compile(r"^SA[A-Z]{2}\d{2} [A-Z]{4} \d{6}$")


@pytest.fixture(scope="module")
def stations() -> pd.DataFrame:
    return build_stations(NetworkConfig())


@pytest.fixture(scope="module")
def written(
    truth: xr.Dataset, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ObservationSummary]:
    out = tmp_path_factory.mktemp("world") / "obs"
    return out, write_observations(truth, SMALL, out, progress=False)


@pytest.fixture(scope="module")
def reports(truth: xr.Dataset) -> pd.DataFrame:
    """The operator's values, exactly as handed to the writers."""
    st = build_stations(SMALL)
    parts = [rep.reports.assign(network=rep.network) for rep in iter_reports(truth, st, SMALL)]
    return pd.concat(parts, ignore_index=True)


def parse_collective(path: Path) -> list[tuple[str, str]]:
    """(heading, report) pairs; checks the bulletin framing on the way."""
    text = path.read_bytes().decode("ascii")
    out = []
    for bulletin in text.split("\x03\r\r\n"):
        if not bulletin:
            continue
        lines = bulletin.split("\r\r\n")
        assert lines[0] == "\x01" and re.fullmatch(r"\d{3} ", lines[1]), lines[:2]
        assert HEADING_RE.match(lines[2]) and lines[3] == "METAR", lines[2:4]
        body = " ".join(line.strip() for line in lines[4:] if line)
        for rep in body.split("="):
            if rep.strip():
                out.append((lines[2], rep.strip()))
    return out


# -------------------------------------------------------------------------- stations


def test_stations_are_real_airports(stations: pd.DataFrame) -> None:
    ap = airportsdata.load("ICAO")
    for row in stations.itertuples():
        ref = ap[row.icao]
        assert row.lat == pytest.approx(ref["lat"]) and row.lon == pytest.approx(ref["lon"])
        assert row.elevation_m == pytest.approx(ref["elevation"] * 0.3048)
    # a known site through the same path: KJFK is 13 ft = 3.96 m
    # with no thinning, every airport with an IATA code is taken first
    n_big = sum(1 for a in ap.values() if a["iata"] and len(a["icao"]) == 4 and a["icao"].isalpha())
    cfg = NetworkConfig(n_metar=n_big, n_synop=0, min_distance_km=0.0, verify_fraction=0.0)
    jfk = build_stations(cfg).set_index("icao").loc["KJFK"]
    assert jfk.lat == pytest.approx(40.639928) and jfk.lon == pytest.approx(-73.778692)
    assert jfk.elevation_m == pytest.approx(3.9624)


def test_stations_roles_disjoint_and_spread(stations: pd.DataFrame) -> None:
    counts = stations.groupby("network").size()
    assert counts["metar"] == 500 and counts["synop"] == 250
    assert stations["station_id"].is_unique and stations["icao"].is_unique
    synop = stations[stations["network"] == "synop"]
    assert synop["station_id"].str.fullmatch(r"\d{5}").all()
    assert (synop["wmo_block"] > 0).all() and (synop["wmo_station"] > 0).all()
    metar = stations[stations["network"] == "metar"]
    assert (metar["station_id"] == metar["icao"]).all() and (metar["wmo_block"] == -1).all()
    for _, df in stations.groupby("network"):
        verify = df[df["role"] == "verify"]
        assert len(verify) == round(0.15 * len(df))
        assert (verify["lat"] < 0).any() and (verify["lat"] > 0).any()
    assert (stations["lat"] < -10).sum() > 50  # southern hemisphere well covered
    assert stations["lon"].between(-180, 180).all()
    xyz = np.stack(
        [
            np.cos(np.radians(stations.lat)) * np.cos(np.radians(stations.lon)),
            np.cos(np.radians(stations.lat)) * np.sin(np.radians(stations.lon)),
            np.sin(np.radians(stations.lat)),
        ],
        axis=1,
    )
    ang = np.arccos(np.clip(xyz @ xyz.T, -1, 1)) + np.eye(len(xyz)) * 10
    assert ang.min() * 6371.0 >= 150.0 - 1e-6


def test_stations_deterministic_by_seed(stations: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(stations, build_stations(NetworkConfig()))
    other = build_stations(NetworkConfig(seed=1))
    assert set(other["icao"]) != set(stations["icao"])


def test_too_many_stations_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="min_distance_km"):
        build_stations(NetworkConfig(n_metar=5000, n_synop=0, min_distance_km=500.0))


# ----------------------------------------------------------------- operator pieces


def test_bilinear_is_exact_for_linear_fields_and_periodic() -> None:
    lat = np.linspace(-80, 80, 17)
    lon = np.arange(0, 360, 10.0)
    field = np.broadcast_to(2.0 * lat[:, None], (17, 36)) + np.cos(np.radians(lon))[None, :]
    w = bilinear_weights(lat, lon, np.array([12.5, -33.0]), np.array([-5.0, 355.0]))
    got = w.apply(field)
    assert got[0] == pytest.approx(25.0 + 0.5 * (np.cos(np.radians(350)) + 1.0))
    assert got[1] == pytest.approx(-66.0 + 0.5 * (np.cos(np.radians(350)) + 1.0))


def test_pressure_reductions() -> None:
    # ISA at 1000 m: station pressure 898.76 hPa reduces to QNH 1013.25 hPa
    assert qnh_pa(np.array([89876.0]), np.array([1000.0]))[0] == pytest.approx(101325, abs=15)
    assert qnh_pa(np.array([100000.0]), np.array([0.0]))[0] == pytest.approx(100000.0)
    p = station_pressure_pa(np.array([101325.0]), np.array([281.65]), np.array([1000.0]))
    assert p[0] == pytest.approx(89876.0, rel=2e-3)


# -------------------------------------------------------------------------- files


def test_layout_and_summary(written: tuple[Path, ObservationSummary], truth: xr.Dataset) -> None:
    out, summary = written
    assert sorted(p.name for p in (out / "metar").iterdir()) == ["20210101.txt", "20210102.txt"]
    bufr = sorted(p.name for p in (out / "synop_bufr").iterdir())
    assert bufr == [f"{pd.Timestamp(t):%Y%m%d%H}.bufr" for t in truth.time.values]
    st = pd.read_csv(out / "stations.csv", dtype={"station_id": str})
    assert list(st.columns[:10]) == [
        "station_id", "icao", "wmo_block", "wmo_station", "name",
        "lat", "lon", "elevation_m", "network", "role",
    ]  # fmt: skip
    assert summary.stations == {"metar": 80, "synop": 40}
    assert summary.gaps["metar"] > 0 and summary.duplicates["metar"] > 0
    n_slots = {"metar": 80 * 8, "synop": 40 * 8}
    for net in ("metar", "synop"):
        expected = n_slots[net] - summary.gaps[net] + summary.duplicates[net]
        assert summary.reports[net] == expected


def test_metar_text_decodes_to_operator_values(
    written: tuple[Path, ObservationSummary], reports: pd.DataFrame
) -> None:
    out, summary = written
    ops = reports[reports["network"] == "metar"].drop_duplicates(["station_id", "time"])
    ops = ops.set_index(["station_id", "time"])
    st = pd.read_csv(out / "stations.csv").set_index("station_id")
    n = 0
    for path in sorted((out / "metar").iterdir()):
        for heading, rep in parse_collective(path):
            m = METAR_RE.match(rep)
            assert m, f"invalid METAR in {path.name}: {rep!r}"
            assert heading.endswith(f"{m['day']}{m['hh']}{m['mm']}")
            when = pd.Timestamp(f"2021-01-{m['day']} {m['hh']}:{m['mm']}")
            op = ops.loc[(m["id"], when)]
            check_metar_values(m, op, us=st.loc[m["id"], "country"] == "US")
            n += 1
    assert n == summary.reports["metar"]


def check_metar_values(m: re.Match[str], op: pd.Series, us: bool) -> None:
    t_c, td_c = op["t2m"] - 273.15, op["dewpoint"] - 273.15
    assert m["t"] == whole_celsius(t_c) and m["td"] == whole_celsius(td_c)
    decoded_t = int(m["t"].replace("M", "-"))
    assert abs(decoded_t - t_c) <= 0.5 + 1e-9
    spd_kt = op["wind_speed"] * KT_PER_MS
    if m["wind"] == "00000KT":
        assert spd_kt < 0.5
    else:
        assert abs(int(m["spd"]) - spd_kt) <= 0.5 + 1e-9
        diff = (int(m["dir"]) - op["wind_direction"] + 180) % 360 - 180
        assert abs(diff) <= 5 + 1e-9
    if us:
        assert m["a"] is not None, "US stations report the altimeter in inHg"
        assert 0 <= op["qnh"] / PA_PER_INHG * 100 - int(m["a"]) < 1
        assert (
            abs(int(m["slp"]) - (op["msl"] / 10) % 1000) <= 0.5 + 1e-6 or op["msl"] % 10000 > 9990
        )
        t_tenths = (-1 if m["ts"] == "1" else 1) * int(m["tt"]) / 10
        assert abs(t_tenths - t_c) <= 0.05 + 1e-9
    else:
        assert 0 <= op["qnh"] / 100 - int(m["q"]) < 1  # QNH rounded down to whole hPa


def test_metar_decodes_with_reference_package(written: tuple[Path, ObservationSummary]) -> None:
    metar_pkg = pytest.importorskip("metar.Metar")
    out, _ = written
    pairs = parse_collective(out / "metar" / "20210101.txt")
    us = next(r for _, r in pairs if " A" in r and "RMK" in r)
    intl = next(r for _, r in pairs if " Q" in r)
    for rep in (us, intl):
        m = metar_pkg.Metar("METAR " + rep, month=1, year=2021)
        assert m.station_id == rep[:4] and m.temp is not None and m.press is not None
    m = metar_pkg.Metar("METAR " + us, month=1, year=2021)
    groups = METAR_RE.match(us)
    assert groups is not None
    sign = -1 if groups["ts"] == "1" else 1
    assert m.temp.value("C") == pytest.approx(sign * int(groups["tt"]) / 10)
    assert m.press.value("IN") == pytest.approx(int(groups["a"]) / 100)


def read_bufr(path: Path) -> pd.DataFrame:
    """Decode with ecCodes directly (no stratocast code) into one row per subset."""
    keys = {
        "blockNumber": "wmo_block", "stationNumber": "wmo_station", "latitude": "lat",
        "longitude": "lon", "heightOfStationGroundAboveMeanSeaLevel": "elevation_m",
        "nonCoordinatePressure": "station_pressure", "pressureReducedToMeanSeaLevel": "msl",
        "airTemperature": "t2m", "dewpointTemperature": "dewpoint",
        "windDirection": "wind_direction", "windSpeed": "wind_speed",
    }  # fmt: skip
    rows = []
    with path.open("rb") as f:
        while (h := eccodes.codes_bufr_new_from_file(f)) is not None:
            try:
                eccodes.codes_set(h, "unpack", 1)
                n = eccodes.codes_get(h, "numberOfSubsets")
                assert eccodes.codes_get_array(h, "unexpandedDescriptors")[0] == 307080
                assert (
                    eccodes.codes_get(h, "#1#heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform")
                    == 2
                )
                assert (
                    eccodes.codes_get(h, "#7#heightOfSensorAboveLocalGroundOrDeckOfMarinePlatform")
                    == 10
                )
                data = {
                    c: np.broadcast_to(eccodes.codes_get_array(h, k), n) for k, c in keys.items()
                }
                data["hour"] = np.broadcast_to(eccodes.codes_get_array(h, "hour"), n)
                rows.append(pd.DataFrame(data))
            finally:
                eccodes.codes_release(h)
    return pd.concat(rows, ignore_index=True)


def test_synop_bufr_round_trip(
    written: tuple[Path, ObservationSummary], reports: pd.DataFrame
) -> None:
    out, summary = written
    st = pd.read_csv(out / "stations.csv", dtype={"station_id": str}).set_index("station_id")
    syn = reports[reports["network"] == "synop"]
    total = 0
    for when, ops in syn.groupby("time"):
        dec = read_bufr(out / "synop_bufr" / f"{pd.Timestamp(when):%Y%m%d%H}.bufr")
        ops = ops.reset_index(drop=True)
        total += len(dec)
        assert len(dec) == len(ops) and (dec["hour"] == pd.Timestamp(when).hour).all()
        ids = [f"{b:02d}{s:03d}" for b, s in zip(dec["wmo_block"], dec["wmo_station"], strict=True)]
        assert ids == ops["station_id"].tolist()
        np.testing.assert_allclose(dec["lat"], st.loc[ids, "lat"], atol=1e-5)
        np.testing.assert_allclose(dec["lon"], st.loc[ids, "lon"], atol=1e-5)
        np.testing.assert_allclose(dec["elevation_m"], st.loc[ids, "elevation_m"], atol=0.5)
        for col, tol in (
            ("t2m", 0.006),
            ("dewpoint", 0.006),
            ("msl", 5.01),
            ("station_pressure", 5.01),
            ("wind_speed", 0.051),
        ):
            np.testing.assert_allclose(dec[col], ops[col], atol=tol, err_msg=col)
        ddiff = (dec["wind_direction"] - ops["wind_direction"] + 180) % 360 - 180
        assert np.abs(ddiff).max() <= 0.5 + 1e-6
    assert total == summary.reports["synop"]


def test_injected_errors_are_logged(
    written: tuple[Path, ObservationSummary], reports: pd.DataFrame
) -> None:
    out, summary = written
    log = pd.read_csv(out / "injected.csv", dtype={"station_id": str})
    gross = log[log["kind"] != "duplicate"]
    assert set(gross["kind"]) <= {"temperature_sign", "pressure_offset", "wind_spike"}
    for net in ("metar", "synop"):
        assert (gross["network"] == net).sum() == summary.gross_errors[net]
        assert ((log["kind"] == "duplicate") & (log["network"] == net)).sum() == summary.duplicates[
            net
        ]
    assert len(gross) > 0
    flagged = reports[(reports["gross_error"] != "") & ~reports["is_duplicate"]]
    assert len(flagged) == len(gross)
    log_t = pd.to_datetime(gross["time"]).dt.tz_localize(None)
    for row, t in zip(gross.itertuples(), log_t, strict=True):
        op = flagged[(flagged["station_id"] == row.station_id) & (flagged["time"] == t)]
        assert len(op) == 1 and op[row.variable].iloc[0] == pytest.approx(
            row.written_value, abs=1e-3
        )
        if row.kind == "pressure_offset":  # off by a multiple of 10 hPa
            assert abs(row.written_value - row.original_value) == pytest.approx(
                1000.0 * round(abs(row.written_value - row.original_value) / 1000.0), abs=1e-2
            )
    # duplicates are verbatim copies in the METAR text
    texts = [rep for p in sorted((out / "metar").iterdir()) for _, rep in parse_collective(p)]
    dup = log[(log["kind"] == "duplicate") & (log["network"] == "metar")].iloc[0]
    stamp = pd.Timestamp(dup["time"]).strftime("%d%H%MZ")
    same = [r for r in texts if r.startswith(f"{dup['station_id']} {stamp}")]
    assert len(same) == 2 and same[0] == same[1]
    spikes = gross[(gross["kind"] == "wind_spike") & (gross["network"] == "metar")]
    for row in spikes.itertuples():
        stamp = pd.Timestamp(row.time).strftime("%d%H%MZ")
        assert any(r.startswith(f"{row.station_id} {stamp}") and "99KT" in r for r in texts)


def test_outages_span_consecutive_reports(truth: xr.Dataset) -> None:
    cfg = NetworkConfig(n_metar=30, n_synop=10, outage_rate=0.5, gap_rate=0.0, seed=5)
    st = build_stations(cfg)
    reps = pd.concat([r.reports for r in iter_reports(truth, st, cfg) if r.network == "metar"])
    per_station = reps.groupby("station_id").size().reindex(st["station_id"][:30], fill_value=0)
    assert (per_station < 8).sum() > 5  # many stations lose reports ...
    assert (per_station <= 4).any()  # ... and some for a day or more


def test_hourly_metar_option(truth: xr.Dataset) -> None:
    cfg = NetworkConfig(
        n_metar=20, n_synop=5, metar_hourly=True, gap_rate=0.0, outage_rate=0.0, duplicate_rate=0.0
    )
    st = build_stations(cfg)
    chunks = list(iter_reports(truth, st, cfg))
    metar = pd.concat([c.reports for c in chunks if c.network == "metar"])
    synop = pd.concat([c.reports for c in chunks if c.network == "synop"])
    assert metar["time"].nunique() == 43 and synop["time"].nunique() == 8  # 00Z..18Z+24h


def test_rerun_is_idempotent(written: tuple[Path, ObservationSummary], truth: xr.Dataset) -> None:
    out, first = written
    mtime = (out / "injected.csv").stat().st_mtime_ns
    again = write_observations(truth, SMALL, out, progress=False)
    assert again.reused and again.reports == first.reports
    assert (out / "injected.csv").stat().st_mtime_ns == mtime


def test_refuses_to_overwrite_foreign_directory(truth: xr.Dataset, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        write_observations(truth, SMALL, tmp_path, progress=False)
    assert (tmp_path / "precious.txt").exists()


def test_changed_config_rewrites(truth: xr.Dataset, tmp_path: Path) -> None:
    out = tmp_path / "obs"
    cfg = NetworkConfig(n_metar=10, n_synop=5)
    first = write_observations(truth, cfg, out, progress=False)
    second = write_observations(truth, cfg.model_copy(update={"seed": 9}), out, progress=False)
    assert not second.reused and first.stations == second.stations
    assert not list(tmp_path.glob(".obs.tmp-*"))
