"""The FastAPI app: catalogue, EDR-style queries, health/ready/metrics, token-guarded writes.

Every mistake a client can make maps to a 4xx with a one-line ``detail``: the project's
errors by kind (unknown → 404, malformed → 400, too large → 413), the token checks 401/403.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from stratocast.errors import StratocastError
from stratocast.serve import auth, query
from stratocast.serve.cache import QueryCache
from stratocast.serve.catalog import BadRequest, Catalog, NotFound, TooLarge, leads, variables
from stratocast.serve.config import ServeConfig, from_env
from stratocast.serve.covjson import (
    grid_coverage,
    grid_csv,
    grid_netcdf,
    point_coverage,
    point_csv,
)
from stratocast.serve.models import (
    Collection,
    Collections,
    ErrorModel,
    Health,
    Instance,
    Instances,
    Link,
    Ready,
    TriggerRequest,
    TriggerResult,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorModel} for c in (400, 401, 403, 404, 409, 413, 422)
}
COVERAGE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "application/prs.coverage+json": {"schema": {"type": "object"}},
            "text/csv": {"schema": {"type": "string"}},
            "application/x-netcdf": {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "CoverageJSON (default), CSV or NetCDF",
    }
}


Names = Annotated[str | None, Query(alias="parameter-name", max_length=500)]
Leads = Annotated[str | None, Query(max_length=500, description="lead hours, comma-separated")]
Fmt = Annotated[str, Query(pattern="^(CoverageJSON|covjson|csv|netcdf)$")]
Stat = Annotated[str | None, Query(pattern="^(mean|spread|quantile|exceedance)$")]
Finite = Annotated[float | None, Query(allow_inf_nan=False)]


def _status(err: Exception) -> int:
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, TooLarge):
        return 413
    return 400


def create_app(products_root: Path, config: ServeConfig | None = None) -> FastAPI:
    cfg = config or ServeConfig()
    cat = Catalog(products_root, cfg.cache_runs)
    answers = QueryCache(cfg.cache_queries)
    registry = CollectorRegistry()
    requests = Counter(
        "stratocast_serve_requests",
        "requests by route and status",
        ["route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "stratocast_serve_seconds",
        "request latency",
        ["route"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
    )
    cache_hits = Counter("stratocast_serve_cache_hits", "query cache hits", registry=registry)
    write_lock = threading.Lock()  # one cycle at a time per process

    app = FastAPI(
        title="stratocast",
        version="1",
        description="OGC API - EDR style forecast access",
        responses=ERRORS,
    )
    app.state.catalog = cat
    app.state.answers = answers

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Any]) -> Response:
        t0 = time.perf_counter()
        resp: Response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        requests.labels(name, str(resp.status_code)).inc()
        latency.labels(name).observe(time.perf_counter() - t0)
        return resp

    @app.exception_handler(StratocastError)
    async def project_error(_: Request, err: StratocastError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=_status(err))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    def reader(request: Request) -> None:
        if cfg.protect_reads:
            auth.check(request, cfg)

    def writer(request: Request) -> None:
        auth.check(request, cfg)

    read = [Depends(reader)]

    def collection(product: str) -> Collection:
        latest = cat.latest(product)
        out = Collection(
            id=product,
            latest=latest,
            links=[Link(href=f"/collections/{product}/instances", rel="instances")],
        )
        if latest is not None:
            run = cat.run(product, latest)
            ds = cat.dataset(run)
            out.kind = run.record.get("kind")
            out.variables = variables(ds)
            out.leads = leads(ds)
            out.ensemble = "member" in ds.dims
        return out

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok")

    @app.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
    def ready() -> Any:
        latest = {p: cat.latest(p) for p in cat.products()}
        ok = bool(latest) and all(v is not None for v in latest.values())
        body = Ready(ready=ok, latest=latest, detail="" if ok else "no published run yet")
        return body if ok else JSONResponse(body.model_dump(), status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/collections", response_model=Collections, dependencies=read)
    def collections() -> Collections:
        return Collections(collections=[collection(p) for p in cat.products()])

    @app.get("/collections/{product}", response_model=Collection, dependencies=read)
    def one_collection(product: str) -> Collection:
        return collection(product)

    @app.get("/collections/{product}/instances", response_model=Instances, dependencies=read)
    def instances(product: str) -> Instances:
        return Instances(
            instances=[
                Instance(
                    id=r.stamp,
                    status=r.status,
                    cycle_time=r.record.get("cycle_time"),
                    fallback=bool(r.record.get("fallback")),
                    links=[
                        Link(
                            href=f"/collections/{product}/instances/{r.stamp}/position", rel="data"
                        )
                    ],
                )
                for r in cat.runs(product)
            ]
        )

    @app.get(
        "/collections/{product}/instances/{run}/position", responses=COVERAGE, dependencies=read
    )
    def position(
        product: str,
        run: str,
        coords: Annotated[str, Query(max_length=200, description="WKT POINT(lon lat)")],
        parameter_name: Names = None,
        leads: Leads = None,
        height: Annotated[float | None, Query(ge=-500, le=9000, allow_inf_nan=False)] = None,
        statistic: Stat = None,
        q: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
        threshold: Finite = None,
        f: Fmt = "CoverageJSON",
    ) -> Response:
        lon, lat = query.parse_point(coords)
        r = cat.run(product, run)
        params = dict(
            lon=lon,
            lat=lat,
            n=parameter_name,
            l=leads,
            h=height,
            s=statistic,
            q=q,
            t=threshold,
            f=f,
        )

        def make() -> tuple[bytes, str]:
            ds = cat.dataset(r)
            sel = query.select(ds, parameter_name, leads, statistic, q, threshold)
            vals = query.position(ds, lon, lat, height, sel)
            if f == "csv":
                return point_csv(ds, lon, lat, sel.leads, vals).encode(), "text/csv"
            if f == "netcdf":
                raise BadRequest("NetCDF is offered for gridded subsets (area, cube) only")
            import json

            body = json.dumps(point_coverage(ds, lon, lat, sel.leads, vals))
            return body.encode(), "application/prs.coverage+json"

        before = answers.lru.hits
        body, media = answers.get_or(r, "position", params, make)
        if answers.lru.hits > before:
            cache_hits.inc()
        return Response(body, media_type=media, headers={"X-Stratocast-Run": r.stamp})

    def gridded(
        r_product: str,
        run: str,
        what: str,
        params: dict[str, Any],
        shape: Callable[[Any, Any], Any],
    ) -> Response:
        r = cat.run(r_product, run)

        def make() -> tuple[bytes, str]:
            ds = cat.dataset(r)
            sel = query.select(ds, params["n"], params["l"], params["s"], params["q"], params["t"])
            sub = shape(ds, sel)
            if params["f"] == "csv":
                return grid_csv(sub).encode(), "text/csv"
            if params["f"] == "netcdf":
                return grid_netcdf(sub), "application/x-netcdf"
            import json

            return json.dumps(grid_coverage(sub)).encode(), "application/prs.coverage+json"

        body, media = answers.get_or(r, what, params, make)
        return Response(body, media_type=media, headers={"X-Stratocast-Run": r.stamp})

    @app.get("/collections/{product}/instances/{run}/area", responses=COVERAGE, dependencies=read)
    def area(
        product: str,
        run: str,
        coords: Annotated[str | None, Query(max_length=4000, description="WKT POLYGON")] = None,
        bbox: Annotated[str | None, Query(max_length=200, description="w,s,e,n")] = None,
        parameter_name: Names = None,
        leads: Leads = None,
        statistic: Stat = None,
        q: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
        threshold: Finite = None,
        f: Fmt = "CoverageJSON",
    ) -> Response:
        poly = query.parse_polygon(coords) if coords is not None else None
        box = query.parse_bbox(bbox) if bbox is not None and poly is None else None
        if poly is None and box is None:
            raise BadRequest("an area needs coords=POLYGON((lon lat, ...)) or bbox=w,s,e,n")
        params = dict(
            c=coords, b=bbox, n=parameter_name, l=leads, s=statistic, q=q, t=threshold, f=f
        )
        return gridded(
            product,
            run,
            "area",
            params,
            lambda ds, sel: query.area(ds, sel, cfg.max_cells, box, poly),
        )

    @app.get("/collections/{product}/instances/{run}/cube", responses=COVERAGE, dependencies=read)
    def cube(
        product: str,
        run: str,
        bbox: Annotated[str, Query(max_length=200, description="w,s,e,n")],
        parameter_name: Names = None,
        leads: Leads = None,
        statistic: Stat = None,
        q: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
        threshold: Finite = None,
        f: Fmt = "CoverageJSON",
    ) -> Response:
        box = query.parse_bbox(bbox)
        params = dict(b=bbox, n=parameter_name, l=leads, s=statistic, q=q, t=threshold, f=f)
        return gridded(
            product,
            run,
            "cube",
            params,
            lambda ds, sel: query.area(ds, sel, cfg.max_cells, box, None),
        )

    def trigger(product: str, when: datetime, force: bool) -> TriggerResult:
        if cfg.run_config is None:
            raise HTTPException(409, "this server has no run config: it cannot run cycles")
        from stratocast.cli.run_config import load_run
        from stratocast.infer.cycle import CycleSources, run_cycle

        run_cfg, paths = load_run(Path(cfg.run_config), None)
        products = run_cfg.products or {}
        if product not in products:
            raise NotFound(f"unknown product {product!r} in {cfg.run_config}")
        src = CycleSources(paths.store, paths.shards, paths.checkpoint, Path(products_root))
        with write_lock:
            res = run_cycle(product, products[product], src, when, force=force)
        return TriggerResult(
            product=product, cycle_time=when.isoformat(), status=res.status, reason=res.reason or ""
        )

    @app.post(
        "/collections/{product}/instances",
        response_model=TriggerResult,
        dependencies=[Depends(writer)],
    )
    def run_now(product: str, body: TriggerRequest) -> TriggerResult:
        try:
            when = datetime.fromisoformat(body.time)
        except ValueError:
            raise BadRequest(f"time {body.time!r} is not an ISO time") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        return trigger(product, when, body.force)

    @app.post(
        "/collections/{product}/instances/{run}/republish",
        response_model=TriggerResult,
        dependencies=[Depends(writer)],
    )
    def republish(product: str, run: str) -> TriggerResult:
        r = cat.run(product, run)
        when = datetime.fromisoformat(r.record["cycle_time"])
        return trigger(product, when, True)

    _ = np  # numpy is used by the query modules this app wires
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn's worker processes call (``--factory``)."""
    root, cfg = from_env()
    return create_app(root, cfg)
