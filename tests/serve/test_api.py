"""The HTTP API against a real uvicorn server on 127.0.0.1 over real published cycles."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from stratocast.serve.config import ServeConfig

from .conftest import T1, TOKEN, Published, Server

BASE = "/collections/det/instances/latest"


def _zarr(p: Published, product: str = "det") -> xr.Dataset:
    stamp = (p.root / product / "LATEST").read_text().strip()
    return xr.open_zarr(p.root / product / stamp / "forecast.zarr", consolidated=False).load()


def _bilinear(ds: xr.Dataset, name: str, lon: float, lat: float) -> np.ndarray:
    """An independent bilinear read of the Zarr: (lead,) at the point."""
    la = np.asarray(ds["lat"].values, dtype=float)
    lo = np.asarray(ds["lon"].values, dtype=float)
    field = ds[name].isel(init_time=0).transpose("lead_time", "lat", "lon").values
    if la[0] > la[-1]:
        la, field = la[::-1], field[:, ::-1, :]
    i = int(np.clip(np.searchsorted(la, lat) - 1, 0, la.size - 2))
    j = int(np.clip(np.searchsorted(lo, lon) - 1, 0, lo.size - 2))
    wy = (lat - la[i]) / (la[i + 1] - la[i])
    wx = (lon - lo[j]) / (lo[j + 1] - lo[j])
    f = field.astype(np.float64)
    return (1 - wy) * ((1 - wx) * f[:, i, j] + wx * f[:, i, j + 1]) + wy * (
        (1 - wx) * f[:, i + 1, j] + wx * f[:, i + 1, j + 1]
    )


def _get(server: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


def test_catalogue_lists_products_runs_variables_leads(server: Server) -> None:
    body = _get(server, "/collections").json()
    got = {c["id"]: c for c in body["collections"]}
    assert set(got) == {"det", "ens"}
    assert got["det"]["leads"] == [0, 6, 12, 18, 24] and "t2m" in got["det"]["variables"]
    assert got["ens"]["ensemble"] is True and got["det"]["ensemble"] is False
    runs = _get(server, "/collections/det/instances").json()["instances"]
    assert (
        runs[0]["id"] == "20000117T0000" and runs[0]["status"] == "late"
    )  # a replay of 2000, published now


def test_points_agree_with_the_points_writer_and_the_zarr(
    server: Server, published: Published
) -> None:
    stamp = "20000117T0000"
    table = pd.read_csv(published.root / "det" / stamp / "forecast.csv", dtype={"site_id": str})
    ds = _zarr(published)
    for site in published.sites.itertuples():
        params: dict[str, object] = {"coords": f"POINT({site.lon} {site.lat})"}
        if np.isfinite(site.elevation):
            params["height"] = site.elevation
        r = _get(server, f"/collections/det/instances/{stamp}/position", **params)
        assert r.status_code == 200, r.text
        cov = r.json()
        assert cov["type"] == "Coverage" and cov["domain"]["domainType"] == "PointSeries"
        rows = table[table["site_id"] == site.site_id].sort_values("lead_time")
        for name in ("t2m", "msl"):
            got = np.asarray(cov["ranges"][name]["values"], dtype=float)
            np.testing.assert_allclose(got, rows[name].to_numpy(), rtol=0, atol=1e-5)
        # without a height: the plain bilinear value of the Zarr, for every variable
        raw = _get(
            server,
            f"/collections/det/instances/{stamp}/position",
            coords=f"POINT({site.lon} {site.lat})",
        ).json()
        for name in raw["ranges"]:
            want = _bilinear(ds, name, site.lon, site.lat)
            got = np.asarray(raw["ranges"][name]["values"], dtype=float)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # the height correction did something where a height was given
    site = published.sites.iloc[0]
    hot = _get(
        server,
        f"{BASE}/position",
        coords=f"POINT({site.lon} {site.lat})",
        height=3000,
        **{"parameter-name": "t2m"},
    ).json()
    cold = _get(
        server,
        f"{BASE}/position",
        coords=f"POINT({site.lon} {site.lat})",
        height=0,
        **{"parameter-name": "t2m"},
    ).json()
    assert hot["ranges"]["t2m"]["values"][0] < cold["ranges"]["t2m"]["values"][0] - 10


def test_csv_and_leads_selection(server: Server, published: Published) -> None:
    s = published.sites.iloc[1]
    r = _get(
        server,
        f"{BASE}/position",
        coords=f"POINT({s.lon} {s.lat})",
        leads="6,12",
        f="csv",
        **{"parameter-name": "t2m,msl"},
    )
    frame = pd.read_csv(io.StringIO(r.text))
    assert list(frame["lead_time"]) == [6, 12] and {"t2m", "msl"} <= set(frame.columns)


def _centre(published: Published) -> tuple[float, float, float, float]:
    ds = _zarr(published)
    la, lo = np.sort(ds["lat"].values), ds["lon"].values
    return float(lo[1]), float(la[1]), float(lo[4]), float(la[4])


def test_area_bbox_polygon_cube_and_netcdf(server: Server, published: Published) -> None:
    w, s, e, n = _centre(published)
    ds = _zarr(published)
    box = f"{w},{s},{e},{n}"
    r = _get(server, f"{BASE}/cube", bbox=box, leads="0", **{"parameter-name": "msl"})
    assert r.status_code == 200, r.text
    cov = r.json()
    vals = np.asarray(cov["ranges"]["msl"]["values"], dtype=float).reshape(
        cov["ranges"]["msl"]["shape"]
    )
    want = ds["msl"].isel(init_time=0).sel(lead_time=0).sortby("lat")
    np.testing.assert_allclose(
        vals[0], want.sel(lat=slice(s, n), lon=slice(w, e)).values, atol=1e-5
    )
    poly = f"POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {s}))"
    a = _get(server, f"{BASE}/area", coords=poly, leads="0", **{"parameter-name": "msl"})
    assert a.status_code == 200, a.text
    avals = np.asarray(a.json()["ranges"]["msl"]["values"], dtype=float)
    assert 0 < np.isfinite(avals).sum() < avals.size  # a triangle: some cells outside
    nc = _get(server, f"{BASE}/area", bbox=box, f="netcdf", **{"parameter-name": "t2m"})
    assert nc.status_code == 200 and nc.content[:3] in (b"CDF", b"\x89HD")


def test_ensemble_statistics(server: Server, published: Published) -> None:
    ds = _zarr(published, "ens")
    s = published.sites.iloc[1]
    path = "/collections/ens/instances/latest/position"
    pt = {"coords": f"POINT({s.lon} {s.lat})", "parameter-name": "msl"}
    plume = _get(server, path, **pt).json()["ranges"]
    n = ds.sizes["member"]
    assert set(plume) == {f"msl_m{k}" for k in range(n)}
    members = np.asarray([plume[f"msl_m{k}"]["values"] for k in range(n)])
    for stat, extra, want in (
        ("mean", {}, members.mean(axis=0)),
        ("spread", {}, members.std(axis=0, ddof=1)),
        ("quantile", {"q": 0.9}, np.quantile(members, 0.9, axis=0)),
        (
            "exceedance",
            {"threshold": float(np.median(members))},
            (members > float(np.median(members))).mean(axis=0),
        ),
    ):
        r = _get(server, path, statistic=stat, **pt, **extra)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["ranges"]["msl"]["values"], want, atol=1e-6)


@pytest.mark.parametrize(
    ("path", "params", "code", "message"),
    [
        (f"{BASE}/position", {"coords": "POINT(10 95)"}, 400, "latitude 95.0 is outside"),
        (f"{BASE}/position", {"coords": "POINT(500 10)"}, 400, "longitude 500.0 is outside"),
        (f"{BASE}/position", {"coords": "POINT(ten 10)"}, 400, "is not WKT POINT"),
        (
            "/collections/nope/instances/latest/position",
            {"coords": "POINT(1 1)"},
            404,
            "unknown product 'nope'",
        ),
        (
            "/collections/det/instances/19990101T0000/position",
            {"coords": "POINT(1 1)"},
            404,
            "unknown run '19990101T0000'",
        ),
        (
            f"{BASE}/position",
            {"coords": "POINT(1 1)", "parameter-name": "foo"},
            404,
            "unknown parameter(s) ['foo']",
        ),
        (f"{BASE}/position", {"coords": "POINT(1 1)", "leads": "7"}, 404, "lead(s) [7] h"),
        (f"{BASE}/area", {"coords": "POLYGON((1 1, 2 2"}, 400, "is not WKT POLYGON"),
        (f"{BASE}/area", {"coords": "POLYGON((1 1, 2 x, 3 3))"}, 400, "is not 'lon lat'"),
        (f"{BASE}/area", {"bbox": "1,2,3"}, 400, "is not 'west,south,east,north'"),
        (f"{BASE}/cube", {"bbox": "-180,-90,360,90"}, 413, "over the limit of 5000"),
        (
            f"{BASE}/position",
            {"coords": "POINT(1 1)", "statistic": "mean"},
            400,
            "needs an ensemble",
        ),
        (f"{BASE}/position", {"coords": "POINT(1 1)", "height": "nan"}, 422, "height"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    server: Server, path: str, params: dict[str, str], code: int, message: str
) -> None:
    r = _get(server, path, **params)
    assert r.status_code == code, r.text
    assert message in r.json()["detail"]
    assert _get(server, "/health").status_code == 200  # still up


def test_health_ready_metrics(server: Server, tmp_path: object) -> None:
    assert _get(server, "/ready").json()["ready"] is True
    text = _get(server, "/metrics").text
    assert "stratocast_serve_requests_total" in text
    from pathlib import Path

    with Server(Path(str(tmp_path)), ServeConfig()) as empty:
        r = _get(empty, "/ready")
        assert r.status_code == 503 and r.json()["ready"] is False


def test_token_guards_writes_and_a_new_run_invalidates_the_cache(
    server: Server, published: Published
) -> None:
    s = published.sites.iloc[1]
    pt = {"coords": f"POINT({s.lon} {s.lat})", "parameter-name": "t2m"}
    first = _get(server, f"{BASE}/position", **pt)
    hits = server.app.state.answers.lru.hits
    again = _get(server, f"{BASE}/position", **pt)
    assert again.content == first.content and server.app.state.answers.lru.hits == hits + 1
    assert first.headers["x-stratocast-run"] == "20000117T0000"

    url = server.url + "/collections/det/instances"
    body = {"time": T1.isoformat()}
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 403 and TOKEN not in wrong.text
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "published"

    after = _get(server, f"{BASE}/position", **pt)
    assert after.headers["x-stratocast-run"] == "20000117T1200"
    ds = xr.open_zarr(
        published.root / "det" / "20000117T1200" / "forecast.zarr", consolidated=False
    ).load()
    want = _bilinear(ds, "t2m", s.lon, s.lat)
    np.testing.assert_allclose(after.json()["ranges"]["t2m"]["values"], want, atol=1e-5)
    assert json.loads(after.content) != json.loads(first.content)

    rep = httpx.post(
        server.url + "/collections/det/instances/20000117T1200/republish",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=300,
    )
    assert rep.status_code == 200 and rep.json()["status"] == "published"
    assert _get(server, f"{BASE}/position", **pt).status_code == 200
