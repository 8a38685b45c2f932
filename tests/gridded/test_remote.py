"""open_gridded by URL against a real HTTP server on 127.0.0.1 (stratocast.testing.http).

The store is the real ERA5 NetCDF sample rewritten as ARCO-ERA5 publishes it (Zarr v2,
consolidated ``.zmetadata``, ``2m_temperature`` ... on ``time``/``latitude``/``longitude``,
chunked so that a read takes several objects per variable). What is read by URL must equal
what the same store opens to from disk, value for value; the server's request log shows what
the disk cache saved.
"""

from __future__ import annotations

import gc
import pickle
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from stratocast.errors import StratocastError
from stratocast.gridded import GriddedFileError, open_gridded
from stratocast.shards.tiers import DiskCache
from stratocast.testing.http import ServedDirectory, serve_directory

pytest.importorskip("aiohttp", reason="fsspec's HTTP filesystem needs aiohttp (dev extra)")

DATA = Path("/work/shared/data")
NC = DATA / "netcdf" / "era5_1995-07-14T12.nc"
GRIB = DATA / "grib" / "era5-single-level-scalar-time.grib"
pytestmark = [
    pytest.mark.skipif(
        not (NC.is_file() and GRIB.is_file()), reason=f"real samples not found under {DATA}"
    ),
    pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part"),
]

# ERA5 CDS short name -> ARCO-ERA5 variable name
ARCO = {
    "t2m": "2m_temperature",
    "d2m": "2m_dewpoint_temperature",
    "u10": "10m_u_component_of_wind",
    "v10": "10m_v_component_of_wind",
    "sp": "surface_pressure",
}
CHUNKS = {"time": 1, "latitude": 35, "longitude": 79}  # 3 x 3 chunks per variable
N_CHUNKS = 9 * len(ARCO)


def _arco(values_offset: float = 0.0) -> xr.Dataset:
    with xr.open_dataset(NC) as raw:
        ds = raw[list(ARCO)].load()
    with xr.set_options(keep_attrs=True):  # same metadata, other values
        ds = ds.rename(ARCO).expand_dims("time") + values_offset
    return ds.chunk(CHUNKS)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("remote-src")
    ds = _arco()
    ds.to_zarr(root / "era5.zarr", zarr_format=2, consolidated=True)
    ds.to_zarr(root / "era5_v3.zarr", zarr_format=3, consolidated=True)
    shutil.copyfile(NC, root / "era5.nc")
    shutil.copyfile(GRIB, root / "sfc.grib")
    (root / "not_a_store").mkdir()
    (root / "not_a_store" / "readme.txt").write_text("plain text\n")
    return root


@pytest.fixture
def srv(built: Path, tmp_path: Path) -> Iterator[ServedDirectory]:
    www = tmp_path / "www"
    shutil.copytree(built, www)  # per test: a test may rewrite what is served
    with serve_directory(www) as served:
        yield served


def chunk_gets(srv: ServedDirectory, store: str = "era5.zarr") -> int:
    """GETs of data-variable chunks (not metadata, not coordinates) of ``store``."""
    n = 0
    for method, path in srv.requests:
        parts = path.strip("/").split("/")
        if method == "GET" and len(parts) == 3 and parts[0] == store:
            n += parts[1] in ARCO.values() and not parts[2].startswith(".")
    return n


def assert_same(got: xr.Dataset, want: xr.Dataset) -> None:
    assert sorted(got.data_vars) == sorted(want.data_vars)
    for c in ("time", "lat", "lon"):
        np.testing.assert_array_equal(got[c].values, want[c].values)
    for name in want.data_vars:
        np.testing.assert_array_equal(got[name].values, want[name].values)
        assert got[name].attrs == want[name].attrs


def test_zarr_v2_by_url_is_lazy_and_equals_local(srv: ServedDirectory, tmp_path: Path) -> None:
    url = f"{srv.url}/era5.zarr"
    ds = open_gridded(url, cache_dir=tmp_path / "cache")
    assert chunk_gets(srv) == 0  # opening reads metadata and coordinates only
    assert ds["t2m"].chunks is not None  # dask-backed: values come on demand
    local = open_gridded(srv.root / "era5.zarr")
    assert_same(ds, local)
    assert chunk_gets(srv) == N_CHUNKS
    # and the store is the real sample: same values as opening the NetCDF itself
    np.testing.assert_array_equal(ds["t2m"].values, open_gridded(NC)["t2m"].values)


def test_second_read_is_served_from_the_cache(srv: ServedDirectory, tmp_path: Path) -> None:
    url = f"{srv.url}/era5.zarr"
    first = open_gridded(url, cache_dir=tmp_path / "cache", variables=["t2m", "sp"]).load()
    assert chunk_gets(srv) == 2 * 9
    before = len(srv.requests)
    again = open_gridded(url, cache_dir=tmp_path / "cache", variables=["t2m", "sp"]).load()
    assert chunk_gets(srv) == 2 * 9  # not one chunk fetched twice
    # the freshness check of the root metadata is all that reached the server
    meta = "/era5.zarr/.zmetadata"
    assert srv.requests[before:] == [("GET", meta), ("HEAD", meta)]
    assert_same(again, first)


def test_cache_stays_within_its_byte_bound(srv: ServedDirectory, tmp_path: Path) -> None:
    bound = 80_000
    store = srv.root / "era5.zarr"
    served = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    biggest = max(p.stat().st_size for p in store.rglob("*") if p.is_file())
    assert served > 5 * bound > 5 * biggest  # the whole store cannot fit: eviction must work
    ds = open_gridded(f"{srv.url}/era5.zarr", cache_dir=tmp_path / "cache", cache_bytes=bound)
    assert_same(ds, open_gridded(store))
    cached = DiskCache(tmp_path / "cache", bound).nbytes()
    assert 0 < cached <= bound
    on_disk = sum(p.stat().st_size for p in (tmp_path / "cache").iterdir() if p.is_file())
    assert on_disk <= bound  # nothing else (temporary files, locks) left taking space


def test_store_rewritten_at_the_same_url_is_not_served_stale(
    srv: ServedDirectory, tmp_path: Path
) -> None:
    url = f"{srv.url}/era5.zarr"
    old = open_gridded(url, cache_dir=tmp_path / "cache").load()
    meta = (srv.root / "era5.zarr" / ".zmetadata").read_bytes()
    _arco(values_offset=1.0).to_zarr(
        srv.root / "era5.zarr", mode="w", zarr_format=2, consolidated=True
    )
    # the metadata reads the same: only the object's validator (ETag) says it was rewritten
    assert (srv.root / "era5.zarr" / ".zmetadata").read_bytes() == meta
    new = open_gridded(url, cache_dir=tmp_path / "cache").load()
    np.testing.assert_array_equal(new["t2m"].values, old["t2m"].values + 1.0)


def test_zarr_v3_by_url_equals_local(srv: ServedDirectory, tmp_path: Path) -> None:
    ds = open_gridded(f"{srv.url}/era5_v3.zarr", cache_dir=tmp_path / "cache")
    assert_same(ds, open_gridded(srv.root / "era5_v3.zarr"))
    assert chunk_gets(srv, "era5_v3.zarr") == 0  # v3 chunk keys are c/0/0/0: deeper
    assert srv.count("GET", prefix="/era5_v3.zarr/2m_temperature/c/") == 9


@pytest.mark.parametrize(("name", "sample"), [("era5.nc", NC), ("sfc.grib", GRIB)])
def test_single_file_by_url_equals_local(
    srv: ServedDirectory, tmp_path: Path, name: str, sample: Path
) -> None:
    url = f"{srv.url}/{name}"
    assert_same(open_gridded(url, cache_dir=tmp_path / "cache"), open_gridded(sample))
    assert srv.count("GET", prefix=f"/{name}") > 3  # the Zarr probes, then the file itself
    before = len(srv.requests)
    ds = open_gridded(url, cache_dir=tmp_path / "cache")  # downloaded once, then cached
    probes = {f"/{name}/{root}" for root in (".zmetadata", "zarr.json", ".zgroup")}
    assert {p for m, p in srv.requests[before:] if m == "GET"} == probes  # 404s, no file GET
    assert_same(ds, open_gridded(sample))


def test_missing_url_is_a_clear_error(srv: ServedDirectory, tmp_path: Path) -> None:
    url = f"{srv.url}/no/such.zarr"
    with pytest.raises(GriddedFileError, match="not found") as info:
        open_gridded(url, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{url}: ")
    assert isinstance(info.value, StratocastError)


def test_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/era5.zarr"
    with pytest.raises(GriddedFileError) as info:
        open_gridded(url, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert message.startswith(f"{url}: cannot fetch .zmetadata: ")
    assert "Connect" in message and "Traceback" not in message


def test_directory_that_is_not_a_store(srv: ServedDirectory, tmp_path: Path) -> None:
    url = f"{srv.url}/not_a_store"
    with pytest.raises(GriddedFileError, match="not GRIB, NetCDF or Zarr") as info:
        open_gridded(url, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{url}: ")


def test_reader_errors_name_the_url(srv: ServedDirectory, tmp_path: Path) -> None:
    url = f"{srv.url}/era5.zarr"
    with pytest.raises(GriddedFileError, match=r"t500 not in this zarr file") as info:
        open_gridded(url, variables=["t500"], cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{url}: ")
    nc = f"{srv.url}/era5.nc"
    with pytest.raises(GriddedFileError, match="data_type") as info:
        open_gridded(nc, data_type="an", cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(f"{nc}: ")


def test_server_answers_ranges_and_logs(srv: ServedDirectory) -> None:
    import urllib.error
    import urllib.request

    body = (srv.root / "era5.nc").read_bytes()

    def get(headers: dict[str, str], method: str = "GET") -> tuple[int, bytes, str | None]:
        req = urllib.request.Request(f"{srv.url}/era5.nc", headers=headers, method=method)
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Range")

    assert get({}) == (200, body, None)
    assert get({"Range": "bytes=4-11"}) == (206, body[4:12], f"bytes 4-11/{len(body)}")
    assert get({"Range": "bytes=-5"})[:2] == (206, body[-5:])
    assert get({"Range": f"bytes={len(body) - 3}-"})[:2] == (206, body[-3:])
    assert get({}, method="HEAD")[:2] == (200, b"")
    with pytest.raises(urllib.error.HTTPError, match="416"):
        get({"Range": f"bytes={len(body)}-"})
    assert srv.count("GET", prefix="/era5.nc") == 5
    assert srv.count("HEAD") == 1
    assert srv.requests[0] == ("GET", "/era5.nc")


def test_lazy_store_survives_pickling(srv: ServedDirectory, tmp_path: Path) -> None:
    """dask's process schedulers pickle the graph, store included."""
    ds = open_gridded(f"{srv.url}/era5.zarr", cache_dir=tmp_path / "cache", variables=["t2m"])
    copy = pickle.loads(pickle.dumps(ds))
    assert chunk_gets(srv) == 0
    np.testing.assert_array_equal(copy["t2m"].values, open_gridded(NC)["t2m"].values)
    assert chunk_gets(srv) == 9
    ds.load()  # the original reads what the copy's cache fill left: same directory
    assert chunk_gets(srv) == 9


def test_cached_netcdf_in_use_is_not_evicted(srv: ServedDirectory, tmp_path: Path) -> None:
    """A lazily opened NetCDF keeps reading its cached copy: eviction must leave it alone
    while the Dataset lives, and take it once the Dataset is gone."""
    cache = tmp_path / "cache"
    nc_size = (srv.root / "era5.nc").stat().st_size
    bound = nc_size + 10_000  # the GRIB (48 kB) fits only by evicting the NetCDF

    def cached_sizes() -> list[int]:
        return sorted(p.stat().st_size for p in cache.glob("*.shard"))

    lazy = open_gridded(f"{srv.url}/era5.nc", cache_dir=cache, cache_bytes=bound)
    open_gridded(f"{srv.url}/sfc.grib", cache_dir=cache, cache_bytes=bound)
    assert nc_size in cached_sizes()  # in use: kept, over the bound for now
    assert_same(lazy, open_gridded(NC))
    del lazy
    gc.collect()
    open_gridded(f"{srv.url}/era5_v3.zarr", cache_dir=cache, cache_bytes=bound)
    assert nc_size not in cached_sizes()  # released: the next fill evicted it
    assert sum(cached_sizes()) <= bound


def test_lazy_read_after_the_server_is_gone(built: Path, tmp_path: Path) -> None:
    """A chunk read that fails after open (network gone) names the URL and object."""
    with serve_directory(built) as served:
        url = f"{served.url}/era5.zarr"
        ds = open_gridded(url, cache_dir=tmp_path / "cache", variables=["t2m"])
    with pytest.raises(GriddedFileError) as info:
        ds.load()
    message = str(info.value)
    assert re.match(rf"{re.escape(url)}: cannot fetch 2m_temperature/0\.\d\.\d: ", message)
    assert "Connect" in message and "Traceback" not in message


def test_s3_store_with_storage_options(built: Path, tmp_path: Path) -> None:
    for module in ("moto.server", "boto3", "s3fs"):
        pytest.importorskip(module)
    from stratocast.testing.s3 import local_s3

    store = built / "era5.zarr"
    with local_s3("arco") as (options, client):
        for f in sorted(p for p in store.rglob("*") if p.is_file()):
            client.upload_file(str(f), "arco", f"ar/era5.zarr/{f.relative_to(store)}")
        client.upload_file(str(NC), "arco", "files/era5.nc")
        url = "s3://arco/ar/era5.zarr"
        ds = open_gridded(url, storage_options=options, cache_dir=tmp_path / "cache").load()
        assert_same(ds, open_gridded(store))
        nc = open_gridded(
            "s3://arco/files/era5.nc", storage_options=options, cache_dir=tmp_path / "cache"
        )
        assert_same(nc, open_gridded(NC))
        with pytest.raises(GriddedFileError, match="not found") as info:
            open_gridded("s3://arco/ar/nope.zarr", storage_options=options, cache_dir=tmp_path)
        assert str(info.value).startswith("s3://arco/ar/nope.zarr: ")
