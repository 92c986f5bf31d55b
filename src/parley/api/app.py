"""The FastAPI application factory."""

from __future__ import annotations

import importlib
import re

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

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
    "parley.api.routes.voice",
    "parley.api.routes.voice_webhooks",
    "parley.api.routes.unsubscribe",
    "parley.api.routes.whatsapp",
    "parley.api.routes.documents",
    "parley.api.routes.tracking",
    "parley.api.routes.webhook_subscriptions",
    "parley.api.routes.inbox",
    "parley.api.routes.timeline",
    "parley.api.routes.events",
]


def create_app(container: Container) -> FastAPI:
    # FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN: blank pages on
    # a machine without internet access. These serve the same pages from bundled files.
    app = FastAPIOffline(
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
    app.add_middleware(
        BodyLimit,
        max_bytes=container.settings.max_request_bytes,
        larger=[
            (
                re.compile(r"/api/cases/[^/]+/documents\Z"),
                container.settings.max_upload_request_bytes,
            ),
            (re.compile(r"/webhooks/smtp/"), container.settings.max_inbound_email_bytes),
        ],
    )
    app.add_middleware(NulGuard)
    return app
