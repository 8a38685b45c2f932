"""Response and error models of the API: they make the OpenAPI schema complete."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorModel(BaseModel):
    detail: str


class Link(BaseModel):
    href: str
    rel: str


class Instance(BaseModel):
    id: str
    status: str
    cycle_time: str | None = None
    fallback: bool = False
    links: list[Link] = []


class Collection(BaseModel):
    id: str
    latest: str | None = None
    kind: str | None = None
    variables: list[str] = []
    leads: list[int] = []
    ensemble: bool = False
    links: list[Link] = []


class Collections(BaseModel):
    collections: list[Collection]
    links: list[Link] = []


class Instances(BaseModel):
    instances: list[Instance]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    latest: dict[str, str | None]
    detail: str = ""


class TriggerRequest(BaseModel):
    time: str
    force: bool = False


class TriggerResult(BaseModel):
    product: str
    cycle_time: str
    status: str
    reason: str = ""
