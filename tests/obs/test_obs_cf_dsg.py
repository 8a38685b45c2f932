"""The ``cf_dsg`` source on CF discrete-sampling-geometry NetCDF built from real ISD-Lite data.

The first two months of 2017 at three French ISD-Lite stations are written with netCDF4 (and
xarray, for the WeatherReal layout) in every layout the reader supports: orthogonal and
incomplete multidimensional, contiguous and indexed ragged timeSeries, CF point, a MADIS-style
``recNum`` file (no standard names, ``missing_value`` besides ``_FillValue``) and a WeatherReal
``station × time`` file (short names, no units). Conversions to the files' units use
hand-typed factors; the reader's SI values are checked against the ISD-Lite reader's for the
same station and hour: an independent path (NetCDF + CF decoding + Pint vs fixed-width text).
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratocast.config import parse_config
from stratocast.obs.base import ObsSource, Rejection, Report, SourceFileError, TextTally
from stratocast.obs.ingest import IngestConfig, ingest
from stratocast.obs.isd_history import load_isd_history
from stratocast.obs.registry import get_source
from stratocast.obs.sources.cf_dsg import CfDsgSource
from stratocast.obs.sources.isd_lite import IsdLiteSource
from stratocast.obs.sources.station_table import TableOptionError
from stratocast.obs.stations import StationCatalogue
from stratocast.obs.store import read_observations, read_quarantine
from stratocast.testing.sources import SourceTests

netCDF4 = pytest.importorskip("netCDF4")
xr = pytest.importorskip("xarray")

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
ISD = DATA / "isd_lite"
HISTORY = DATA / "stations" / "isd-history.csv"
needs_data = pytest.mark.skipif(
    not (ISD.is_dir() and HISTORY.is_file()),
    reason=f"real ISD sample data not found under {DATA} (../shared/data)",
)
STATIONS = ("071690-99999", "071790-34051", "071900-99999")
END = datetime(2017, 3, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MISSING = -9999
KT = 1852.0 / 3600.0  # m/s per knot, by the nautical mile
NC_FILL = 9.969209968386869e36  # netCDF's default double fill


@dataclass
class Obs:
    station: str
    lat: float
    lon: float
    elev: float
    time: datetime
    t: int  # ISD-Lite integers: 0.1 °C, 0.1 °C, 0.1 hPa, degree, 0.1 m/s; -9999 missing
    td: int
    slp: int
    wd: int
    ws: int

    @property
    def seconds(self) -> float:
        return (self.time - EPOCH).total_seconds()


def _series(history: StationCatalogue) -> list[Obs]:
    out = []
    for sid in STATIONS:
        s = history.get(sid)
        assert s is not None
        with gzip.open(ISD / f"{sid}-2017.gz", "rt") as fh:
            for line in fh:
                f = [int(x) for x in line.split()]
                t = datetime(f[0], f[1], f[2], f[3], tzinfo=UTC)
                if t < END:
                    out.append(Obs(sid, s.lat, s.lon, s.elevation, t, *f[4:9]))
    return out


def _arr(obs: list[Obs], get: Callable[[Obs], int], conv: Callable[[float], float]) -> Any:
    return np.array([math.nan if get(o) == MISSING else conv(get(o)) for o in obs])


def _ma(values: Any) -> Any:
    """NaN as masked (netCDF4 writes the mask as _FillValue), data zeroed under the mask."""
    return np.ma.masked_array(np.nan_to_num(values), mask=np.isnan(values))


def _c(v: float) -> float:
    return v / 10.0


def _k(v: float) -> float:
    return v / 10.0 + 273.15


def _write_ids(nc: Any, dim: str, ids: list[str], name: str = "station_id") -> None:
    width = max(len(i) for i in ids)
    nc.createDimension("name_strlen", width)
    var = nc.createVariable(name, "S1", (dim, "name_strlen"))
    var[:] = netCDF4.stringtochar(np.array(ids, dtype=f"S{width}"))
    var.cf_role = "timeseries_id"


def _station_vars(nc: Any, dim: str, first: list[Obs]) -> None:
    for name, std, units, get in (
        ("lat", "latitude", "degrees_north", lambda o: o.lat),
        ("lon", "longitude", "degrees_east", lambda o: o.lon),
        ("alt", "altitude", "m", lambda o: o.elev),
    ):
        var = nc.createVariable(name, "f8", (dim,))
        var.standard_name, var.units = std, units
        var[:] = [get(o) for o in first]


def _data_vars(nc: Any, dims: tuple[str, ...], obs: list[Obs], shape: tuple[int, ...]) -> None:
    """t (packed int16, degree_Celsius), td (float32 K), slp (hPa), wind (degree, knots)."""
    t = nc.createVariable("tas", "i2", dims, fill_value=-32768)
    t.standard_name, t.units, t.scale_factor, t.add_offset = "air_temperature", "degC", 0.1, 0.0
    t.coordinates = "time lat lon alt"
    t[:] = _ma(_arr(obs, lambda o: o.t, _c).reshape(shape))
    td = nc.createVariable("tdew", "f4", dims, fill_value=np.float32(-999.0))
    td.standard_name, td.units = "dew_point_temperature", "K"
    td[:] = _ma(_arr(obs, lambda o: o.td, _k).reshape(shape))
    p = nc.createVariable("psl", "f8", dims, fill_value=NC_FILL)
    p.standard_name, p.units = "air_pressure_at_mean_sea_level", "hPa"
    p[:] = _ma(_arr(obs, lambda o: o.slp, _c).reshape(shape))
    wd = nc.createVariable("wdir", "f4", dims, fill_value=np.float32(-1.0))
    wd.standard_name, wd.units = "wind_from_direction", "degree"
    wd[:] = _ma(_arr(obs, lambda o: o.wd, float).reshape(shape))
    ws = nc.createVariable("wspd", "f8", dims, fill_value=NC_FILL)
    ws.standard_name, ws.units = "wind_speed", "knots"
    ws[:] = _ma(_arr(obs, lambda o: o.ws, lambda v: v / 10.0 / KT).reshape(shape))


def _time_var(nc: Any, dims: tuple[str, ...], seconds: Any) -> None:
    var = nc.createVariable("time", "f8", dims, fill_value=NC_FILL)
    var.standard_name, var.units = "time", "seconds since 1970-01-01 00:00:00"
    var[:] = _ma(seconds)


def _by_station(obs: list[Obs]) -> dict[str, list[Obs]]:
    out: dict[str, list[Obs]] = {}
    for o in obs:
        out.setdefault(o.station, []).append(o)
    return out


def write_orthogonal(path: Path, obs: list[Obs]) -> None:
    groups = _by_station(obs)
    times = sorted({o.time for o in obs})
    grid: dict[tuple[str, datetime], Obs] = {(o.station, o.time): o for o in obs}
    filler = Obs("", 0, 0, 0, EPOCH, MISSING, MISSING, MISSING, MISSING, MISSING)
    flat = [grid.get((s, t), filler) for s in groups for t in times]
    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType, nc.Conventions = "timeSeries", "CF-1.8"
        nc.createDimension("station", len(groups))
        nc.createDimension("time", len(times))
        # NetCDF-4 string ids here (char arrays in the other layouts)
        ids = nc.createVariable("station_id", str, ("station",))
        ids.cf_role = "timeseries_id"
        for i, s in enumerate(groups):
            ids[i] = s
        _station_vars(nc, "station", [g[0] for g in groups.values()])
        _time_var(nc, ("time",), np.array([(t - EPOCH).total_seconds() for t in times]))
        _data_vars(nc, ("station", "time"), flat, (len(groups), len(times)))


def write_incomplete(path: Path, obs: list[Obs]) -> None:
    groups = _by_station(obs)
    width = max(len(g) for g in groups.values())
    filler = Obs("", 0, 0, 0, EPOCH, MISSING, MISSING, MISSING, MISSING, MISSING)
    flat = [g[k] if k < len(g) else filler for g in groups.values() for k in range(width)]
    secs = np.array([o.seconds if o.station else math.nan for o in flat])
    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "timeSeries"
        nc.createDimension("station", len(groups))
        nc.createDimension("obs", width)
        _write_ids(nc, "station", list(groups))
        _station_vars(nc, "station", [g[0] for g in groups.values()])
        _time_var(nc, ("station", "obs"), secs.reshape(len(groups), width))
        _data_vars(nc, ("station", "obs"), flat, (len(groups), width))


def write_contiguous(path: Path, obs: list[Obs], extras: bool = False) -> None:
    groups = _by_station(obs)
    flat = [o for g in groups.values() for o in g]
    secs = np.array([o.seconds for o in flat])
    first = [g[0] for g in groups.values()]
    if extras:
        secs[5] = math.nan  # a missing time: bad_time
        first[2] = replace(first[2], lat=95.0)  # latitude 95: bad_position for 071900
    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "timeSeries"
        nc.createDimension("station", len(groups))
        nc.createDimension("obs", len(flat))
        _write_ids(nc, "station", list(groups))
        _station_vars(nc, "station", first)
        rs = nc.createVariable("row_size", "i4", ("station",))
        rs.sample_dimension = "obs"
        rs[:] = [len(g) for g in groups.values()]
        _time_var(nc, ("obs",), secs)
        _data_vars(nc, ("obs",), flat, (len(flat),))
        if extras:
            bad = nc.createVariable("rh", "f4", ("obs",))
            bad.standard_name, bad.units = "relative_humidity", "furlongs"
            bad[:] = 0.5
            tmax = nc.createVariable("tmax", "f4", ("obs",))
            tmax.standard_name, tmax.units = "air_temperature", "K"
            tmax.cell_methods = "time: maximum"
            tmax[:] = 280.0
            again = nc.createVariable("tas2", "f4", ("obs",))
            again.standard_name, again.units = "air_temperature", "K"
            again[:] = 280.0


def write_indexed(path: Path, obs: list[Obs]) -> None:
    groups = _by_station(obs)
    order = sorted(obs, key=lambda o: (o.time, o.station))  # interleaved, as streams arrive
    index = {s: i for i, s in enumerate(groups)}
    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "timeSeries"
        nc.createDimension("station", len(groups))
        nc.createDimension("obs", len(order))
        _write_ids(nc, "station", list(groups))
        _station_vars(nc, "station", [g[0] for g in groups.values()])
        si = nc.createVariable("stationIndex", "i4", ("obs",))
        si.instance_dimension = "station"
        si[:] = [index[o.station] for o in order]
        _time_var(nc, ("obs",), np.array([o.seconds for o in order]))
        _data_vars(nc, ("obs",), order, (len(order),))


def write_point(path: Path, obs: list[Obs]) -> None:
    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "point"
        nc.createDimension("obs", len(obs))
        width = max(len(o.station) for o in obs)
        nc.createDimension("name_strlen", width)
        ids = nc.createVariable("station_id", "S1", ("obs", "name_strlen"))
        ids[:] = netCDF4.stringtochar(np.array([o.station for o in obs], dtype=f"S{width}"))
        _station_vars(nc, "obs", obs)
        _time_var(nc, ("obs",), np.array([o.seconds for o in obs]))
        _data_vars(nc, ("obs",), obs, (len(obs),))


def write_madis(path: Path, obs: list[Obs]) -> None:
    """MADIS metar-file style: recNum, stationName chars, kelvin/pascal/meter/sec, no CF
    standard names or featureType, missing_value -9999 besides a 3.4e38 _FillValue."""
    fill = np.float32(3.4028235e38)
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("recNum", len(obs))
        nc.createDimension("maxStaNamLen", 12)
        names = nc.createVariable("stationName", "S1", ("recNum", "maxStaNamLen"))
        names[:] = netCDF4.stringtochar(np.array([o.station for o in obs], dtype="S12"))
        for name, units, get in (
            ("latitude", "degree_north", lambda o: o.lat),
            ("longitude", "degree_east", lambda o: o.lon),
            ("elevation", "meter", lambda o: o.elev),
        ):
            var = nc.createVariable(name, "f4", ("recNum",))
            var.units = units
            var[:] = [get(o) for o in obs]
        tv = nc.createVariable("timeObs", "f8", ("recNum",), fill_value=NC_FILL)
        tv.units = "seconds since 1970-1-1 00:00:00.0"
        tv[:] = [o.seconds for o in obs]
        madis: tuple[tuple[str, str, Callable[[Obs], int], Callable[[float], float]], ...] = (
            ("temperature", "kelvin", lambda o: o.t, _k),
            ("dewpoint", "kelvin", lambda o: o.td, _k),
            ("seaLevelPress", "pascal", lambda o: o.slp, lambda v: v * 10.0),
            ("windDir", "degree", lambda o: o.wd, float),
            ("windSpeed", "meter/sec", lambda o: o.ws, lambda v: v / 10.0),
        )
        for k, (name, units, get, conv) in enumerate(madis):
            var = nc.createVariable(name, "f4", ("recNum",), fill_value=fill)
            var.units, var.missing_value = units, np.float32(-9999.0)
            values = _arr(obs, get, conv)
            # half the missing as missing_value, half as _FillValue: both must read as missing
            alt = np.where(np.arange(len(obs)) % 2 == k % 2, -9999.0, fill)
            var.set_auto_mask(False)
            var[:] = np.where(np.isnan(values), alt, values).astype(np.float32)


def write_weatherreal(path: Path, obs: list[Obs]) -> None:
    groups = _by_station(obs)
    times = sorted({o.time for o in obs})
    grid = {(o.station, o.time): o for o in obs}

    def field(get: Callable[[Obs], int], conv: Callable[[float], float]) -> Any:
        out = np.full((len(groups), len(times)), np.nan)
        for i, s in enumerate(groups):
            for j, t in enumerate(times):
                o = grid.get((s, t))
                if o is not None and get(o) != MISSING:
                    out[i, j] = conv(get(o))
        return (("station", "time"), out)

    first = [g[0] for g in groups.values()]
    ds = xr.Dataset(
        {
            "t": field(lambda o: o.t, _c),  # no units attribute: WeatherReal's degC
            "td": field(lambda o: o.td, _c),
            "msl": field(lambda o: o.slp, _c),
            "ws": field(lambda o: o.ws, lambda v: v / 10.0),
            "wd": field(lambda o: o.wd, float),
        },
        coords={
            "station": list(groups),
            "time": np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[ns]"),
            "lat": ("station", [o.lat for o in first]),
            "lon": ("station", [o.lon for o in first]),
            "elev": ("station", [o.elev for o in first]),
        },
    )
    ds["msl"].attrs["units"] = "hPa"
    ds.to_netcdf(path)


WRITERS: dict[str, Callable[[Path, list[Obs]], None]] = {
    "orthogonal": write_orthogonal,
    "incomplete": write_incomplete,
    "contiguous": write_contiguous,
    "indexed": write_indexed,
    "point": write_point,
    "madis": write_madis,
    "weatherreal": write_weatherreal,
}


@pytest.fixture(scope="module")
def history() -> StationCatalogue:
    return load_isd_history(HISTORY).catalogue


@pytest.fixture(scope="module")
def series(history: StationCatalogue) -> list[Obs]:
    return _series(history)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, series: list[Obs]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dsg")
    out = {}
    for layout, write in WRITERS.items():
        out[layout] = folder / f"isd_{layout}.nc"
        write(out[layout], series)
    out["extras"] = folder / "isd_contiguous_extras.nc"
    write_contiguous(out["extras"], series, extras=True)
    return out


@pytest.fixture(scope="module")
def isd(history: StationCatalogue) -> dict[tuple[str, datetime], Report | Rejection]:
    out: dict[tuple[str, datetime], Report | Rejection] = {}
    for sid in STATIONS:
        for r in _decode(IsdLiteSource(), ISD / f"{sid}-2017.gz", history):
            assert r.time is not None
            if r.time < END:
                out[(sid, r.time)] = r
    return out


def _decode(
    source: ObsSource, path: Path, catalogue: StationCatalogue | None = None
) -> list[Report | Rejection]:
    out: list[Report | Rejection] = []
    for r in source.read(path, catalogue):
        if isinstance(r, TextTally):  # text readers' accounting record (ISD-Lite, CSV)
            continue
        assert isinstance(r, Report | Rejection), r
        out.append(r)
    return out


@needs_data
@pytest.mark.parametrize("layout", list(WRITERS))
def test_layout_values_agree_with_isd_lite(
    layout: str,
    files: dict[str, Path],
    isd: dict[tuple[str, datetime], Report | Rejection],
    series: list[Obs],
) -> None:
    records = _decode(CfDsgSource(), files[layout])
    reports = [r for r in records if isinstance(r, Report)]
    rejections = [r for r in records if isinstance(r, Rejection)]
    # every ISD-Lite line of the window is a record (padding of the grids is none)
    n_lines = len(series)
    if layout in ("orthogonal", "weatherreal"):
        # a grid has no element for an hour whose every value is missing: such lines only
        assert len(records) <= n_lines
    else:
        assert len(records) == n_lines, (len(records), n_lines)
    assert {r.check for r in rejections} <= {"no_data"}
    assert len({r.report_id for r in records}) == len(records)
    compared = 0
    for r in reports:
        want = isd[(r.station_id, r.time)]
        assert isinstance(want, Report), (r.report_id, want)
        assert (r.lat, r.lon) == pytest.approx((want.lat, want.lon), abs=1e-4)
        assert r.elevation == pytest.approx(want.elevation, abs=1e-3)
        for var, v in r.values.items():
            tol = 0.05 if var == "msl" else 2e-4
            assert v == pytest.approx(want.values[var], abs=tol), (layout, r.report_id, var)
            compared += 1
        # ISD-Lite reads direction 0 with the speed missing as a calm; the file keeps the
        # speed missing, so only the speed and its u/v can be absent here
        extra = set(want.values) - set(r.values)
        assert extra <= {"ws10", "u10", "v10"}, (r.report_id, extra)
        if extra:
            assert (want.values["wd10"], want.values["ws10"]) == (0.0, 0.0)
    assert len(reports) > 0.95 * n_lines and compared > 6 * len(reports)


@needs_data
def test_hand_checked_element(files: dict[str, Path]) -> None:
    # ISD-Lite 071690 line 1: "2017 01 01 00   -35   -42 10296   190    10 ..."
    recs = _decode(CfDsgSource(), files["contiguous"])
    r = recs[0]
    assert isinstance(r, Report) and r.report_id == "isd_contiguous.nc:obs=0"
    assert r.station_id == "071690-99999" and r.time == datetime(2017, 1, 1, tzinfo=UTC)
    assert r.values["t2m"] == pytest.approx(269.65)  # int16 -35 x 0.1 degC
    assert r.values["d2m"] == pytest.approx(268.95, abs=1e-4)  # float32 K
    assert r.values["msl"] == pytest.approx(102960.0)  # 1029.6 hPa
    assert r.values["ws10"] == pytest.approx(1.0)  # 1.943844 knots
    assert r.values["wd10"] == 190.0 and r.values["u10"] == pytest.approx(0.173648, abs=1e-6)
    assert r.raw.startswith("station=071690-99999 time=2017-01-01T00:00:00+00:00 tas=-3.5")


@needs_data
def test_bad_variables_and_elements_are_rejections(files: dict[str, Path]) -> None:
    recs = _decode(CfDsgSource(), files["extras"])
    name = files["extras"].name
    rej = {r.report_id: r for r in recs if isinstance(r, Rejection)}
    units = rej[f"{name}:rh"]
    assert units.check == "unknown_units" and "furlongs" in units.reason
    assert rej[f"{name}:tmax"].check == "skipped_variable"
    assert "time: maximum" in rej[f"{name}:tmax"].reason
    dup = rej[f"{name}:tas2"]
    assert dup.check == "duplicate_variable" and "'tas'" in dup.reason
    assert rej[f"{name}:obs=5"].check == "bad_time"
    positions = [r for r in rej.values() if r.check == "bad_position"]
    assert positions and all(r.station_id == "071900-99999" for r in positions)
    assert all("latitude 95" in r.reason for r in positions)
    # the rest lands: the other two stations' values, without rh from the bad variable
    reports = [r for r in recs if isinstance(r, Report)]
    assert {r.station_id for r in reports} == {"071690-99999", "071790-34051"}
    assert len(reports) > 2500 and not any(
        r.values.get("rh2m") == 0.5 or r.values.get("t2m") == 280.0 for r in reports
    )


@needs_data
class TestCfDsgConformance(SourceTests):
    @pytest.fixture
    def source(self) -> CfDsgSource:
        return CfDsgSource()

    @pytest.fixture(params=["extras", "madis", "orthogonal"])
    def sample_file(self, request: pytest.FixtureRequest, files: dict[str, Path]) -> Path:
        return files[request.param]

    @pytest.fixture
    def catalogue(self) -> None:
        return None


@needs_data
def test_run_config_ingest_accounting(files: dict[str, Path], tmp_path: Path) -> None:
    path = files["extras"]
    cfg = parse_config(
        IngestConfig, {"sources": [{"name": "cf_dsg", "paths": [str(path)]}]}, "run.yaml"
    )
    store = tmp_path / "store"
    acc = ingest(cfg, store, None, progress=False)
    acc.verify()
    a = acc.sources["cf_dsg"]
    recs = _decode(CfDsgSource(), path)
    assert a.files_ok == 1 and a.reports_read == len(recs)
    assert a.reports_read == a.reports_stored + a.reports_quarantined
    assert a.values_decoded == a.values_stored + a.values_quarantined
    for check in ("unknown_units", "skipped_variable", "duplicate_variable", "bad_time"):
        assert a.reports_quarantined_by_check[check] >= 1, check
    obs = read_observations(store, sources=["cf_dsg"])
    assert len(obs) == a.values_stored > 20_000
    q = read_quarantine(store, sources=["cf_dsg"])
    assert "furlongs" in q.loc[q["report_id"] == f"{path.name}:rh", "reason"].iloc[0]
    t = obs[(obs["station_id"] == "071690-99999") & (obs["variable"] == "t2m")]
    assert t[t["time"] == "2017-01-01T00:00Z"]["value"].tolist() == pytest.approx([269.65])


@needs_data
def test_positions_from_catalogue(
    tmp_path: Path, series: list[Obs], history: StationCatalogue
) -> None:
    """A single-station timeSeries without coordinates is placed from the catalogue."""
    obs = [o for o in series if o.station == "071790-34051"][:48]
    path = tmp_path / "toul.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.featureType = "timeSeries"
        nc.createDimension("time", len(obs))
        sid = nc.createVariable("station", str, ())
        sid.cf_role = "timeseries_id"
        sid[...] = "071790-34051"
        _time_var(nc, ("time",), np.array([o.seconds for o in obs]))
        _data_vars(nc, ("time",), obs, (len(obs),))
    s = history.get("071790-34051")
    assert s is not None
    unplaced = _decode(CfDsgSource(), path)
    assert len(unplaced) == 48
    assert all(isinstance(r, Rejection) and r.check == "unknown_station" for r in unplaced)
    placed = [r for r in _decode(CfDsgSource(), path, history) if isinstance(r, Report)]
    assert len(placed) == 48
    first = placed[0]
    assert (first.lat, first.lon, first.elevation) == (s.lat, s.lon, s.elevation)
    via_option = _decode(get_source("cf_dsg", stations=str(HISTORY)), path)
    assert [r.values for r in via_option if isinstance(r, Report)] == [r.values for r in placed]


def test_explicit_variables_option(tmp_path: Path) -> None:
    path = tmp_path / "x.nc"
    ds = xr.Dataset(
        {"tair": (("obs",), [10.0, np.nan]), "wet": (("obs",), [50.0, 60.0])},
        coords={
            "time": ("obs", np.array(["2017-01-01T00", "2017-01-01T01"], dtype="datetime64[ns]")),
            "lat": ("obs", [10.0, 10.0]),
            "lon": ("obs", [370.0, 200.0]),
        },
        attrs={"featureType": "point"},
    )
    ds["wet"].attrs.update(standard_name="relative_humidity", units="percent")
    ds.to_netcdf(path)
    src = CfDsgSource(variables={"tair": {"variable": "t2m", "units": "degF"}})
    first, second = _decode(src, path)
    assert isinstance(first, Rejection) and first.check == "bad_position"  # lon 370
    assert isinstance(second, Report) and second.lon == pytest.approx(-160.0)
    assert second.station_id == "10.0000,200.0000"
    assert second.values == {"rh2m": pytest.approx(0.6)}  # tair missing there
    with pytest.raises(TableOptionError, match=r"options\.variables\.tair\.units"):
        CfDsgSource(variables={"tair": {"variable": "t2m", "units": "knots"}})
    with pytest.raises(TableOptionError, match=r"options\.variables\.tair\.variable"):
        CfDsgSource(variables={"tair": {"variable": "temp"}})


def test_not_netcdf_and_other_features_are_file_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.nc"
    junk.write_bytes(b"not a netcdf file at all")
    with pytest.raises(SourceFileError, match=r"junk\.nc"):
        list(CfDsgSource().read(junk))
    prof = tmp_path / "profile.nc"
    xr.Dataset(
        {"t": (("z",), [1.0])},
        coords={"time": ("z", np.array(["2017-01-01"], dtype="datetime64[ns]"))},
        attrs={"featureType": "profile"},
    ).to_netcdf(prof)
    with pytest.raises(SourceFileError, match=r"profile\.nc.*featureType 'profile'"):
        list(CfDsgSource().read(prof))
    notime = tmp_path / "notime.nc"
    xr.Dataset({"t": (("obs",), [1.0])}).to_netcdf(notime)
    with pytest.raises(SourceFileError, match=r"notime\.nc: no time variable"):
        list(CfDsgSource().read(notime))


@needs_data
def test_weatherreal_file_of_the_verify_writer(
    tmp_path: Path, history: StationCatalogue, isd: dict[tuple[str, datetime], Any]
) -> None:
    """A file from stratocast's own WeatherReal writer (verification) ingests to the values the
    verification reader reads from it, and to the ISD-Lite values it was written from."""
    from stratocast.obs.table import collect
    from stratocast.verify.io_weatherreal import read_weatherreal, write_weatherreal

    records = [
        r
        for sid in STATIONS[:2]
        for r in _decode(IsdLiteSource(), ISD / f"{sid}-2017.gz", history)
        if r.time is not None and r.time < END
    ]
    path = write_weatherreal(collect(records, "isd_lite").values, tmp_path / "wr.nc")
    verify = read_weatherreal(path)
    verify_values = {
        (row.station_id, row.time.to_pydatetime(), row.variable): row.value
        for row in verify.itertuples()
    }
    got = [r for r in _decode(CfDsgSource(), path) if isinstance(r, Report)]
    assert {r.station_id for r in got} == set(STATIONS[:2])
    n = 0
    for r in got:
        want = isd[(r.station_id, r.time)]
        for var in ("t2m", "d2m", "msl", "ws10", "wd10"):
            if var not in r.values:
                continue
            tol = 0.01 if var == "msl" else 1e-4
            assert r.values[var] == pytest.approx(want.values[var], abs=tol), (r.report_id, var)
            key = (r.station_id, r.time, var)
            if key in verify_values:  # the verification reader drops a calm's direction
                assert r.values[var] == pytest.approx(verify_values[key], abs=1e-6)
                n += 1
    assert n > 0.95 * len(verify)


def test_cell_methods_over_time(tmp_path: Path) -> None:
    path = tmp_path / "cm.nc"
    ds = xr.Dataset(
        {"ta": (("obs",), [280.0]), "tmax": (("obs",), [285.0]), "p": (("obs",), [1000.0])},
        coords={
            "time": ("obs", np.array(["2017-01-01T00"], dtype="datetime64[ns]")),
            "lat": ("obs", [10.0]),
            "lon": ("obs", [20.0]),
        },
        attrs={"featureType": "point"},
    )
    ds["ta"].attrs.update(standard_name="air_temperature", units="K", cell_methods="area: point")
    ds["tmax"].attrs.update(
        standard_name="air_temperature", units="K", cell_methods="area: point time: maximum"
    )
    ds["p"].attrs.update(
        standard_name="surface_air_pressure", units="hPa", cell_methods="time: point"
    )
    # the sensor height (CF's scalar "height" coordinate) is not the station's altitude
    ds.coords["height"] = ((), 2.0, {"standard_name": "height", "units": "m", "positive": "up"})
    ds.to_netcdf(path)
    skipped, report = _decode(CfDsgSource(), path)
    assert isinstance(skipped, Rejection) and skipped.report_id == "cm.nc:tmax"
    assert skipped.check == "skipped_variable" and "time: maximum" in skipped.reason
    assert isinstance(report, Report) and report.values["t2m"] == 280.0
    assert math.isnan(report.elevation)
    assert report.values["sp"] == pytest.approx(100000.0)
    # mapped explicitly, the daily maximum is read (the user's call), the other t2m goes
    only_max = CfDsgSource(variables={"tmax": {"variable": "t2m"}})
    recs = {r.report_id: r for r in _decode(only_max, path)}
    dup = recs["cm.nc:ta"]
    assert isinstance(dup, Rejection) and dup.check == "duplicate_variable"
    rep = recs["cm.nc:obs=0"]
    assert isinstance(rep, Report) and rep.values["t2m"] == 285.0


@needs_data
@pytest.mark.parametrize("layout", ["orthogonal", "contiguous"])
def test_one_element_raising_is_its_own_rejection(
    layout: str, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception while decoding one element (issue 12: per-record isolation) is
    that element's ``decode_error`` Rejection naming file, station/time (or obs) index and the
    exception; every other element decodes exactly as in a clean read."""
    from stratocast.obs.sources import cf_dsg

    path = files[layout]
    clean = _decode(CfDsgSource(), path)
    victim = next(r for i, r in enumerate(clean) if isinstance(r, Report) and i >= 100)
    real = cf_dsg.finish_values

    def finish(values: dict[str, float], elevation: float) -> Any:
        if values.get("t2m") == victim.values["t2m"] and values.get("msl") == victim.values.get(
            "msl"
        ):
            raise ZeroDivisionError("injected failure")
        return real(values, elevation)

    monkeypatch.setattr(cf_dsg, "finish_values", finish)
    broken = _decode(CfDsgSource(), path)
    assert len(broken) == len(clean)
    failed = [r for r in broken if isinstance(r, Rejection) and r.check == "decode_error"]
    assert victim.report_id in {r.report_id for r in failed}
    for r in failed:
        assert r.reason == f"{r.report_id}: decoding failed: ZeroDivisionError: injected failure"
        assert r.raw.startswith(f"station={r.station_id} time=") and r.station_id in STATIONS
    assert re.fullmatch(r"isd_\w+\.nc:(station=\d+,time=\d+|obs=\d+)", victim.report_id), (
        victim.report_id
    )
    # failed: the victim and any other element with the same t2m and msl (an exact repeat)
    assert 1 <= len(failed) < 5
    hit = {r.report_id for r in failed}
    same = [(a, b) for a, b in zip(clean, broken, strict=True) if a.report_id not in hit]
    assert len(same) == len(clean) - len(failed) and all(a == b for a, b in same)
    assert [a.report_id for a in clean] == [b.report_id for b in broken]


def test_value_that_converts_to_infinity_is_rejected(tmp_path: Path) -> None:
    """1e308 hPa is finite in the file but inf in Pa: ``non_finite``, not a stored inf."""
    path = tmp_path / "huge.nc"
    ds = xr.Dataset(
        {"p": (("obs",), [1e308, 1013.0])},
        coords={
            "time": ("obs", np.array(["2017-01-01T00", "2017-01-01T01"], dtype="datetime64[ns]")),
            "lat": ("obs", [10.0, 10.0]),
            "lon": ("obs", [20.0, 20.0]),
        },
        attrs={"featureType": "point"},
    )
    ds["p"].attrs.update(standard_name="air_pressure_at_mean_sea_level", units="hPa")
    ds.to_netcdf(path)
    bad, good = _decode(CfDsgSource(), path)
    assert isinstance(bad, Rejection) and bad.check == "non_finite", bad
    assert bad.report_id == "huge.nc:obs=0" and "msl" in bad.reason
    assert isinstance(good, Report) and good.values["msl"] == pytest.approx(101300.0)


@needs_data
def test_one_variable_raising_is_its_own_rejection(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception while looking at one data variable is that variable's
    ``file:<variable>`` decode_error; the elements keep every other variable's values."""
    path = files["orthogonal"]
    clean = [r for r in _decode(CfDsgSource(), path) if isinstance(r, Report)]
    real = CfDsgSource._target
    td = "tdew"  # the dewpoint variable of _data_vars

    def target(self: CfDsgSource, name: str, attrs: Any) -> Any:
        if name == td:
            raise KeyError("injected failure")
        return real(self, name, attrs)

    monkeypatch.setattr(CfDsgSource, "_target", target)
    broken = _decode(CfDsgSource(), path)
    rej = broken[0]
    assert isinstance(rej, Rejection) and rej.report_id == f"{path.name}:{td}"
    assert rej.check == "decode_error" and "KeyError: 'injected failure'" in rej.reason
    reports = {r.report_id: r for r in broken if isinstance(r, Report)}
    assert sum("d2m" in r.values for r in clean) > 0.9 * len(clean)
    assert not any("d2m" in r.values for r in reports.values())
    kept = ("t2m", "msl", "ws10", "wd10")
    with_others = [r for r in clean if any(k in r.values for k in kept)]
    assert len(reports) == len(with_others) > 0
    for a in with_others:
        b = reports[a.report_id]
        assert {k: a.values.get(k) for k in kept} == {k: b.values.get(k) for k in kept}
