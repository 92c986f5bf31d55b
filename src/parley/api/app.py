"""The FastAPI application factory."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from parley import __version__
from parley.api import problems
from parley.api.middleware import BodyLimit, Idempotency, NulGuard
from parley.bootstrap import Container

ROUTERS = [
    "parley.api.routes.health",
    "parley.api.routes.borrowers",
    "parley.api.routes.cases",
    "parley.api.routes.templates",
    "parley.api.routes.messages",
    "parley.api.routes.provider_accounts",
    "parley.api.routes.webhooks",
    "parley.api.routes.compliance",
    "parley.api.routes.calls",
    "parley.api.routes.unsubscribe",
    "parley.api.routes.inbox",
    "parley.api.routes.timeline",
    "parley.api.routes.events",
]


def create_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="Parley",
        version=__version__,
        summary="Communication hub for collections teams",
    )
    app.state.container = container
    problems.install(app)
    for path in ROUTERS:
        app.include_router(importlib.import_module(path).router)
    # Outermost first: the size limit bounds what idempotency buffers.
    app.add_middleware(Idempotency, container=container)
    app.add_middleware(BodyLimit, max_bytes=container.settings.max_request_bytes)
    app.add_middleware(NulGuard)
    return app
