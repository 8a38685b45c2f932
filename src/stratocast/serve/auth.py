"""Bearer-token checks. The token is compared in constant time and never logged or echoed."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from stratocast.serve.config import ServeConfig


def check(request: Request, cfg: ServeConfig) -> None:
    want = cfg.token()
    if want is None:
        raise HTTPException(403, "this server has no token configured: write endpoints are off")
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401, "missing bearer token (Authorization: Bearer ...)", {"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.strip().encode(), want.encode()):
        raise HTTPException(403, "wrong token")
