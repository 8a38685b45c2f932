"""WeatherReal-style NetCDF built from real ISD-Lite station data, read back and scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stratocast.verify import VerifyInputError
from stratocast.verify.io_weatherreal import read_weatherreal, write_weatherreal
from stratocast.verify.run import verify_paths

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ISD = DATA / "isd_lite"
HISTORY = DATA / "stations" / "isd-history.csv"
FRANCE = sorted(ISD.glob("07*-2017.gz"))

needs_data = pytest.mark.skipif(
    not FRANCE or not HISTORY.is_file(), reason=f"real ISD-Lite sample data absent ({ISD})"
)


def _isd_table(files: list[Path]) -> pd.DataFrame:
    """Station reports decoded by the ISD-Lite reader, plus sky cover and precipitation taken
    from the raw line (the reader keeps them only in ``raw``): code 0..8 → oktas → fraction,
    1-h and 6-h precipitation in 0.1 mm (-1 = trace → 0)."""
    from stratocast.obs.base import Report
    from stratocast.obs.sources.isd_lite import IsdLiteSource

    source = IsdLiteSource(stations=HISTORY)
    rows = []
    for path in files:
        for rec in source.read(path):
            if not isinstance(rec, Report):
                continue
            fields = [int(x) for x in rec.raw.split()]
            values = dict(rec.values)
            if 0 <= fields[9] <= 8:
                values["tcc"] = fields[9] / 8.0
            for col, var in ((10, "tp1h"), (11, "tp6h")):
                if fields[col] != -9999:
                    values[var] = max(fields[col], 0) / 10.0
            for var, value in values.items():
                rows.append((rec.station_id, rec.lat, rec.lon, rec.elevation, rec.time, var, value))
    cols = ["station_id", "lat", "lon", "elevation", "time", "variable", "value"]
    df = pd.DataFrame(rows, columns=cols)
    df["time"] = pd.to_datetime(df["time"], utc=True)
    return df


@pytest.fixture(scope="module")
def weatherreal_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = _isd_table(FRANCE)
    january = table[table["time"] < pd.Timestamp("2017-02-01", tz="UTC")]
    return write_weatherreal(january, tmp_path_factory.mktemp("wr") / "weatherreal-isd.nc")


@needs_data
def test_file_follows_weatherreal_conventions(weatherreal_file: Path) -> None:
    with xr.open_dataset(weatherreal_file) as ds:
        assert set(ds.dims) == {"station", "time"}
        assert {"t", "td", "msl", "ws", "wd", "c", "ra1", "ra6"} <= set(ds.data_vars)
        assert {"lat", "lon", "elev"} <= set(ds.coords)
        assert ds["t"].attrs["units"] == "degC" and ds["msl"].attrs["units"] == "hPa"
        # 071900-99999-2017, line 1: "2017 01 01 00   -20   -23 10300   180    21     9 -9999     0"
        at = {"station": "071900-99999", "time": np.datetime64("2017-01-01T00:00")}
        assert float(ds["t"].sel(at)) == pytest.approx(-2.0)
        assert float(ds["td"].sel(at)) == pytest.approx(-2.3, abs=1e-5)
        assert float(ds["msl"].sel(at)) == pytest.approx(1030.0)
        assert float(ds["wd"].sel(at)) == 180.0 and float(ds["ws"].sel(at)) == pytest.approx(2.1)
        assert np.isnan(float(ds["c"].sel(at)))  # sky code 9 (obscured) is not an okta count
        assert np.isnan(float(ds["ra1"].sel(at))) and float(ds["ra6"].sel(at)) == 0.0
        st = ds.sel(station="071900-99999")
        # isd-history: "071900","99999","ENTZHEIM",..,"+48.538","+007.628","+0153.9"
        assert float(st["lat"]) == pytest.approx(48.538, abs=1e-4)
        assert float(st["lon"]) == pytest.approx(7.628, abs=1e-4)
        assert float(st["elev"]) == pytest.approx(153.9, abs=1e-3)


@needs_data
def test_read_gives_store_table_in_si(weatherreal_file: Path) -> None:
    obs = read_weatherreal(
        weatherreal_file,
        start=pd.Timestamp("2017-01-01T00:00", tz="UTC"),
        end=pd.Timestamp("2017-01-02T00:00", tz="UTC"),
        stations=["071900-99999"],
    )
    assert list(obs.columns) == [
        "source",
        "station_id",
        "lat",
        "lon",
        "elevation",
        "time",
        "variable",
        "value",
        "report_id",
    ]
    value = obs.set_index(["time", "variable"])["value"]
    t0 = pd.Timestamp("2017-01-01T00:00", tz="UTC")
    t1 = pd.Timestamp("2017-01-01T01:00", tz="UTC")
    t24 = pd.Timestamp("2017-01-02T00:00", tz="UTC")
    # line 2: "2017 01 01 01   -17   -20 10293   170    15     9     0 -9999"
    assert value[(t0, "t2m")] == pytest.approx(271.15, abs=1e-5)
    assert value[(t1, "t2m")] == pytest.approx(271.45, abs=1e-5)
    assert value[(t1, "d2m")] == pytest.approx(271.15, abs=1e-5)
    assert value[(t1, "msl")] == pytest.approx(102930.0, abs=0.01)
    assert value[(t1, "wd10")] == 170.0 and value[(t1, "tp1h")] == 0.0
    # line 25: "2017 01 02 00   -12   -15 10235   250    10     9 -9999     0"
    assert value[(t24, "t2m")] == pytest.approx(271.95, abs=1e-5)
    assert value[(t24, "ws10")] == pytest.approx(1.0)
    assert obs["time"].min() == t0 and obs["time"].max() == t24
    assert (obs["source"] == "weatherreal").all()
    assert obs["report_id"].iloc[0].startswith("weatherreal-isd.nc:071900-99999:")


def _constant_forecast(path: Path) -> Path:
    """A forecast that says 275 K, 101500 Pa and a 3 m/s westerly everywhere, every time,
    on a 0.5° regional grid over north-east France with sea-level orography."""
    lat = np.arange(47.0, 50.01, 0.5)
    lon = np.arange(3.5, 9.01, 0.5)
    inits = pd.date_range("2017-01-10", periods=20, freq="12h")
    leads = np.arange(0, 25, 6)
    shape = (inits.size, leads.size, lat.size, lon.size)
    dims = ("init_time", "lead_time", "lat", "lon")
    ds = xr.Dataset(
        {
            "t2m": (dims, np.full(shape, 275.0, dtype=np.float32)),
            "msl": (dims, np.full(shape, 101500.0, dtype=np.float32)),
            "u10": (dims, np.full(shape, 3.0, dtype=np.float32)),
            "v10": (dims, np.zeros(shape, dtype=np.float32)),
            "orography": (("lat", "lon"), np.zeros((lat.size, lon.size))),
        },
        coords={"init_time": inits, "lead_time": leads, "lat": lat, "lon": lon},
    )
    ds.to_zarr(path, zarr_format=3, consolidated=False)
    return path


@needs_data
def test_weatherreal_file_scored_against_persistence(
    weatherreal_file: Path, tmp_path: Path
) -> None:
    fc = _constant_forecast(tmp_path / "const.zarr")
    result = verify_paths(fc, weatherreal_file, "persistence", tmp_path / "out")
    card = result.scorecard.set_index(["system", "variable", "lead_hours"])
    # Scored: what both carry. Skipped, with the reason: what the forecast lacks.
    assert set(result.scorecard["variable"]) == {"t2m", "msl", "ws10", "wd10"}
    skipped = result.attrs["skipped"]
    assert isinstance(skipped, dict)
    assert set(skipped) == {"d2m", "sp", "tcc", "tp1h", "tp3h", "tp6h", "tp12h", "tp24h"}
    assert "lacks variable 'd2m'" in skipped["d2m"]
    html = result.report_path.read_text()
    assert "Variables not scored" in html and "tp24h" in html

    # Independent expectation for t2m at +24 h, straight from the decoded ISD-Lite table:
    # forecast at a station = 275 K − 6.5 K/km × elevation (model orography 0).
    table = _isd_table(FRANCE)
    t2m = table[table["variable"] == "t2m"].set_index(["station_id", "time"])["value"]
    elev = table.groupby("station_id")["elevation"].first()
    inits = pd.date_range("2017-01-10", periods=20, freq="12h", tz="UTC")
    errs_model, errs_pers = [], []
    for st in elev.index:
        for init in inits:
            valid = init + pd.Timedelta(hours=24)
            if (st, valid) not in t2m.index or (st, init) not in t2m.index:
                continue
            obs = t2m[(st, valid)]
            errs_model.append(275.0 - 0.0065 * elev[st] - obs)
            errs_pers.append(t2m[(st, init)] - obs)
    expected = np.sqrt(np.mean(np.square(errs_model)))
    # float32 storage of °C in the file: agreement to 1e-4 K
    assert card.loc[(fc.stem, "t2m", 24), "rmse"] == pytest.approx(expected, abs=1e-4)
    assert card.loc[("persistence", "t2m", 24), "rmse"] == pytest.approx(
        np.sqrt(np.mean(np.square(errs_pers))), abs=1e-4
    )
    assert card.loc[(fc.stem, "t2m", 24), "n"] == len(errs_model)
    # a westerly (270°) forecast; direction errors lie within ±180°
    assert card.loc[(fc.stem, "wd10", 24), "mae"] <= 180.0


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(VerifyInputError, match="not found"):
        read_weatherreal(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    xr.Dataset({"t": (("x",), np.zeros(3))}).to_netcdf(bad)
    with pytest.raises(VerifyInputError, match=r"bad.nc: a WeatherReal file has dimensions"):
        read_weatherreal(bad)
    odd = tmp_path / "odd.nc"
    xr.Dataset(
        {"t": (("station", "time"), np.zeros((1, 2)), {"units": "degF"})},
        coords={
            "station": ["A"],
            "time": pd.date_range("2020-01-01", periods=2, freq="h"),
            "lat": ("station", [1.0]),
            "lon": ("station", [2.0]),
            "elev": ("station", [3.0]),
        },
    ).to_netcdf(odd)
    with pytest.raises(VerifyInputError, match=r"odd.nc: variable 't' has units 'degF'"):
        read_weatherreal(odd)


def test_kelvin_file_and_valid_time_dimension(tmp_path: Path) -> None:
    path = tmp_path / "k.nc"
    xr.Dataset(
        {
            "t": (("station", "valid_time"), [[280.0, np.nan]], {"units": "K"}),
            "c": (("station", "valid_time"), [[4.0, 8.0]]),
        },
        coords={
            "station": ["A"],
            "valid_time": pd.date_range("2020-01-01", periods=2, freq="h"),
            "latitude": ("station", [1.0]),
            "longitude": ("station", [-2.0]),
            "elevation": ("station", [3.0]),
        },
    ).to_netcdf(path)
    obs = read_weatherreal(path)
    assert obs.loc[obs["variable"] == "t2m", "value"].tolist() == [280.0]
    assert obs.loc[obs["variable"] == "tcc", "value"].tolist() == [0.5, 1.0]
    assert set(obs["lon"]) == {358.0}
