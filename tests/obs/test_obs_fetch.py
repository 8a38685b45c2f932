"""Fetchers against a real HTTP server on 127.0.0.1 serving copies of the real sample files.

The served tree mirrors the real remote paths, so the URL builders' output is what gets
requested. Expected URLs are written out by hand from the archives' documented layouts;
downloaded bytes are compared with the originals by sha256.
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from stratocast.obs.fetch import (
    FetchError,
    arco_era5_url,
    ecmwf_open_data_url,
    fetch,
    fetch_ecmwf_open_data,
    fetch_gfs,
    fetch_isd_history,
    fetch_isd_lite,
    fetch_metar,
    gfs_url,
    isd_history_url,
    isd_lite_url,
    metar_api_url,
    metar_cache_url,
    open_arco_era5,
)

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
ISD_FILE = DATA / "isd_lite" / "071690-99999-2017.gz"
HISTORY = DATA / "stations" / "isd-history.csv"
METAR = DATA / "metar" / "collective.txt"
ECMWF_GRIB = DATA / "grib" / "regular_ll_sfc.grib"
GFS_GRIB = DATA / "grib" / "gfs.t12z.pgrbf120.2p5deg.grib2"
SAMPLES = [ISD_FILE, HISTORY, METAR, ECMWF_GRIB, GFS_GRIB]
needs_data = pytest.mark.skipif(
    not all(p.is_file() for p in SAMPLES),
    reason=f"real sample files not found under {DATA} (../shared/data)",
)

RUN = datetime(2024, 1, 1, 0, tzinfo=UTC)
# remote path -> local sample, laid out exactly like the real archives
LAYOUT = {
    "pub/data/noaa/isd-lite/2017/071690-99999-2017.gz": ISD_FILE,
    "pub/data/noaa/isd-history.csv": HISTORY,
    "api/data/metar": METAR,  # query string is ignored by the static handler
    "forecasts/20240101/00z/ifs/0p25/oper/20240101000000-6h-oper-fc.grib2": ECMWF_GRIB,
    "gfs.20240101/12/atmos/gfs.t12z.pgrb2.0p25.f120": GFS_GRIB,
    "flaky/071690-99999-2017.gz": ISD_FILE,
    "truncated/071690-99999-2017.gz": ISD_FILE,
}
FAILS_BEFORE_SUCCESS = 2


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Server:
    """A served directory, a base URL and per-(method, path) request counts."""

    def __init__(self, root: Path, httpd: http.server.ThreadingHTTPServer) -> None:
        self.root = root
        self.httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self.counts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def hits(self, path: str, method: str = "GET") -> int:
        with self.lock:
            return self.counts[(method, path)]


def _handler(server: Server) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(server.root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def end_headers(self) -> None:
            # a strong validator like S3's: changes whenever the file's bytes change
            local = Path(self.translate_path(self.path))
            if local.is_file():
                self.send_header("ETag", f'"{sha256(local)[:16]}"')
            super().end_headers()

        def _count(self) -> int:
            path = self.path.split("?", 1)[0]
            with server.lock:
                server.counts[(self.command, path)] += 1
                return server.counts[(self.command, path)]

        def do_HEAD(self) -> None:
            self._count()
            super().do_HEAD()

        def do_GET(self) -> None:
            n = self._count()
            if self.path.startswith("/flaky/") and n <= FAILS_BEFORE_SUCCESS:
                self.send_error(500, "deliberate failure")
                return
            if self.path.startswith("/truncated/"):
                body = Path(self.translate_path(self.path)).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + 100))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                return  # HTTP/1.0 handler: the connection closes short of Content-Length
            super().do_GET()

    return Handler


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if not all(p.is_file() for p in SAMPLES):
        pytest.skip(f"real sample files not found under {DATA} (../shared/data)")
    root = tmp_path / "www"
    for remote, local in LAYOUT.items():
        (root / remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, root / remote)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    srv = Server(root, httpd)
    httpd.RequestHandlerClass = _handler(srv)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _no_sleep(_: float) -> None:
    pass


# --- URL builders: against the archives' documented paths, written out by hand ------------


def test_isd_urls() -> None:
    assert (
        isd_lite_url("071690", "99999", 2017)
        == "https://www.ncei.noaa.gov/pub/data/noaa/isd-lite/2017/071690-99999-2017.gz"
    )
    assert isd_history_url() == "https://www.ncei.noaa.gov/pub/data/noaa/isd-history.csv"
    with pytest.raises(ValueError, match="USAF"):
        isd_lite_url("7169", "99999", 2017)


def test_metar_urls() -> None:
    assert (
        metar_api_url(["kjfk", "EGLL"], hours=3)
        == "https://aviationweather.gov/api/data/metar?ids=KJFK%2CEGLL&format=raw&hours=3"
    )
    assert metar_cache_url() == "https://aviationweather.gov/data/cache/metars.cache.csv.gz"
    with pytest.raises(ValueError, match="ICAO"):
        metar_api_url(["JFK"])


def test_ecmwf_open_data_urls() -> None:
    assert ecmwf_open_data_url(RUN, 6) == (
        "https://data.ecmwf.int/forecasts/20240101/00z/ifs/0p25/oper/"
        "20240101000000-6h-oper-fc.grib2"
    )
    # 06/18 UTC HRES runs are the short cut-off stream; a non-UTC zone is converted
    run06 = datetime(2024, 1, 1, 8, tzinfo=timezone(timedelta(hours=2)))
    assert ecmwf_open_data_url(run06, 90, suffix="index") == (
        "https://data.ecmwf.int/forecasts/20240101/06z/ifs/0p25/scda/"
        "20240101060000-90h-scda-fc.index"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        ecmwf_open_data_url(datetime(2024, 1, 1), 0)


def test_gfs_urls() -> None:
    run = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert gfs_url(run, 6) == (
        "https://noaa-gfs-bdp-pds.s3.amazonaws.com/gfs.20240101/12/atmos/gfs.t12z.pgrb2.0p25.f006"
    )
    nomads = "https://nomads.ncep.noaa.gov/pub/data/nccf/com/gfs/prod"
    assert gfs_url(run, 120, base_url=nomads) == (
        f"{nomads}/gfs.20240101/12/atmos/gfs.t12z.pgrb2.0p25.f120"
    )
    with pytest.raises(ValueError, match="00/06/12/18"):
        gfs_url(datetime(2024, 1, 1, 3, tzinfo=UTC), 0)


def test_arco_era5_url() -> None:
    assert arco_era5_url() == (
        "https://storage.googleapis.com/gcp-public-data-arco-era5/"
        "ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
    )
    assert arco_era5_url(base_url="gs://gcp-public-data-arco-era5") == (
        "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
    )


# --- the generic downloader -----------------------------------------------------------------


@needs_data
def test_fetch_bytes_and_no_refetch(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl"
    path = "/pub/data/noaa/isd-lite/2017/071690-99999-2017.gz"
    got = fetch(server.url + path, dest, timeout=5, retries=0)
    assert got == dest / "071690-99999-2017.gz"
    assert sha256(got) == sha256(ISD_FILE)
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [got.name]

    again = fetch(server.url + path, dest, timeout=5, retries=0)
    assert again == got
    assert server.hits(path) == 1  # the second call only asked HEAD: same size and ETag
    assert server.hits(path, "HEAD") == 1


@needs_data
def test_fetch_replaces_incomplete_local_file(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "071690-99999-2017.gz").write_bytes(ISD_FILE.read_bytes()[:100])  # a cut copy
    path = "/pub/data/noaa/isd-lite/2017/071690-99999-2017.gz"
    got = fetch(server.url + path, dest, timeout=5, retries=0)
    assert sha256(got) == sha256(ISD_FILE)
    assert server.hits(path) == 1


@needs_data
def test_fetch_refetches_when_server_copy_changes(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl"
    path = "/pub/data/noaa/isd-history.csv"
    fetch(server.url + path, dest, timeout=5, retries=0)
    # same size, different bytes: only the ETag tells them apart
    served = server.root / path.lstrip("/")
    data = bytearray(served.read_bytes())
    data[-2:] = b"X\n"
    served.write_bytes(bytes(data))
    got = fetch(server.url + path, dest, timeout=5, retries=0)
    assert server.hits(path) == 2
    assert got.read_bytes() == bytes(data)


@needs_data
def test_fetch_retries_5xx_with_backoff(server: Server, tmp_path: Path) -> None:
    waits: list[float] = []
    got = fetch(
        f"{server.url}/flaky/071690-99999-2017.gz",
        tmp_path / "dl",
        timeout=5,
        retries=3,
        backoff=0.5,
        sleep=waits.append,
    )
    assert sha256(got) == sha256(ISD_FILE)
    assert server.hits("/flaky/071690-99999-2017.gz") == FAILS_BEFORE_SUCCESS + 1
    assert waits == [0.5, 1.0]


@needs_data
def test_fetch_gives_up_after_retries(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/flaky/071690-99999-2017.gz"
    with pytest.raises(FetchError) as err:
        fetch(url, tmp_path / "dl", timeout=5, retries=1, sleep=_no_sleep)
    assert err.value.status == 500 and err.value.url == url
    assert url in str(err.value) and "HTTP 500" in str(err.value) and "2 attempts" in str(err.value)
    assert list((tmp_path / "dl").iterdir()) == []


@needs_data
def test_fetch_404_is_clear_and_not_retried(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/pub/data/noaa/isd-lite/2017/000000-99999-2017.gz"
    with pytest.raises(FetchError) as err:
        fetch(url, tmp_path / "dl", timeout=5, retries=3, sleep=_no_sleep)
    assert err.value.status == 404
    assert url in str(err.value) and "HTTP 404" in str(err.value)
    assert server.hits("/pub/data/noaa/isd-lite/2017/000000-99999-2017.gz") == 1
    assert list((tmp_path / "dl").iterdir()) == []


@needs_data
def test_fetch_truncated_body_leaves_nothing(server: Server, tmp_path: Path) -> None:
    url = f"{server.url}/truncated/071690-99999-2017.gz"
    with pytest.raises(FetchError, match="truncated") as err:
        fetch(url, tmp_path / "dl", timeout=5, retries=1, sleep=_no_sleep)
    assert url in str(err.value)
    assert server.hits("/truncated/071690-99999-2017.gz") == 2
    assert list((tmp_path / "dl").iterdir()) == []  # no partial file, no temp file


@needs_data
def test_fetch_checksum(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl"
    path = "/pub/data/noaa/isd-lite/2017/071690-99999-2017.gz"
    good = sha256(ISD_FILE)
    fetch(server.url + path, dest, timeout=5, retries=0, checksum=f"sha256:{good}")
    fetch(server.url + path, dest, timeout=5, retries=0, checksum=good)
    # a matching local file needs no request at all
    assert (server.hits(path), server.hits(path, "HEAD")) == (1, 0)

    with pytest.raises(FetchError, match="sha256 mismatch") as err:
        fetch(server.url + path, tmp_path / "bad", timeout=5, retries=0, checksum="0" * 64)
    assert path in str(err.value)
    assert list((tmp_path / "bad").iterdir()) == []


def test_fetch_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.gz"
    with pytest.raises(FetchError, match="connection failed") as err:
        fetch(url, tmp_path, timeout=2, retries=2, sleep=_no_sleep)
    assert err.value.status is None and "3 attempts" in str(err.value)


def test_fetch_needs_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="filename="):
        fetch("http://127.0.0.1:1/", tmp_path, timeout=1, retries=0)


# --- source fetchers end to end -------------------------------------------------------------


@needs_data
def test_isd_lite_fetch_and_decode(server: Server, tmp_path: Path) -> None:
    base = f"{server.url}/pub/data/noaa"
    got = fetch_isd_lite("071690", "99999", 2017, tmp_path, base_url=f"{base}/isd-lite")
    history = fetch_isd_history(tmp_path, base_url=base, timeout=10)
    assert sha256(got) == sha256(ISD_FILE) and sha256(history) == sha256(HISTORY)

    isd_lite = pytest.importorskip("stratocast.obs.sources.isd_lite")
    isd_history = pytest.importorskip("stratocast.obs.isd_history")
    from stratocast.obs.base import Report

    catalogue = isd_history.load_isd_history(history).catalogue
    first = next(iter(isd_lite.IsdLiteSource().read(got, catalogue)))
    # raw line 1: "2017 01 01 00   -35   -42 10296   190    10 ..." -> T -3.5 C, Td -4.2 C
    assert isinstance(first, Report)
    assert first.station_id == "071690-99999"
    assert first.time == datetime(2017, 1, 1, 0, tzinfo=UTC)
    assert first.values["t2m"] == pytest.approx(273.15 - 3.5)
    assert first.values["d2m"] == pytest.approx(273.15 - 4.2)


@needs_data
def test_metar_fetch(server: Server, tmp_path: Path) -> None:
    now = datetime(2026, 11, 25, 14, 0, 5, tzinfo=UTC)
    kwargs: dict[str, Any] = {"base_url": f"{server.url}/api/data", "now": now, "timeout": 5}
    got = fetch_metar(["KSPS", "KMIA"], tmp_path, **kwargs)
    assert got.name == "metar_KSPS-KMIA_20261125T140005Z.txt"
    assert sha256(got) == sha256(METAR)
    fetch_metar(["KSPS", "KMIA"], tmp_path, **kwargs)
    assert server.hits("/api/data/metar") == 2  # current data: always asked again


@needs_data
def test_model_grib_fetch(server: Server, tmp_path: Path) -> None:
    ec = fetch_ecmwf_open_data(RUN, 6, tmp_path, base_url=f"{server.url}/forecasts")
    assert ec.name == "20240101000000-6h-oper-fc.grib2"
    assert sha256(ec) == sha256(ECMWF_GRIB)
    gfs = fetch_gfs(datetime(2024, 1, 1, 12, tzinfo=UTC), 120, tmp_path, base_url=server.url)
    assert gfs.name == "gfs.t12z.pgrb2.0p25.f120"
    assert sha256(gfs) == sha256(GFS_GRIB)
    assert gfs.read_bytes()[:4] == b"GRIB"


@needs_data
@pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part")
def test_zarr_over_http(server: Server) -> None:
    pytest.importorskip("aiohttp", reason="fsspec's HTTP filesystem needs aiohttp")
    pytest.importorskip("fsspec")
    np = pytest.importorskip("numpy")
    xr = pytest.importorskip("xarray")
    t = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4) + 250.0
    ds = xr.Dataset(
        {"2m_temperature": (("time", "latitude", "longitude"), t)},
        coords={
            "time": np.array(["2020-01-01T00", "2020-01-01T01"], dtype="datetime64[ns]"),
            "latitude": [90.0, 89.75, 89.5],
            "longitude": [0.0, 0.25, 0.5, 0.75],
        },
    )
    ds.to_zarr(server.root / "ar" / "tiny.zarr-v3", zarr_format=3, consolidated=True)

    lazy = open_arco_era5(arco_era5_url(base_url=server.url, store="ar/tiny.zarr-v3"))
    assert lazy["2m_temperature"].shape == (2, 3, 4)
    value = lazy["2m_temperature"].sel(time="2020-01-01T01", latitude=89.75, longitude=0.5)
    # index (1, 1, 2) of arange + 250 -> 1*12 + 1*4 + 2 + 250
    assert float(value) == 268.0
