"""The bare endpoint of `parley bench webhooks`: Parley's own API application (same app
factory, middleware, container and uvicorn settings as `parley api`) plus one route that
only reads the body and answers 200 -- the ceiling a webhook route can reach on this
stack, measured in the same run as the real route.

    PARLEY_DATABASE_URL=... PARLEY_PORT=... python -m parley.bench.bare_api
"""

from __future__ import annotations

import asyncio

import uvicorn
from fastapi import Request, Response

from parley.config import Settings

BARE_PREFIX = "/bench/bare"
_ANSWER = b'{"ok":true,"duplicate":false}'


async def _serve() -> None:
    from parley.api.app import create_app
    from parley.bootstrap import create_container
    from parley.runtime import settle_heap

    container = await create_container(Settings(), migrate=False)
    app = create_app(container)

    @app.post(BARE_PREFIX + "/{provider}/{account_id}", include_in_schema=False)
    async def bare(provider: str, account_id: str, request: Request) -> Response:
        await request.body()
        return Response(content=_ANSWER, media_type="application/json")

    settings = container.settings
    # As runtime._server configures `parley api` (uvicorn handles SIGTERM).
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            lifespan="off",
        )
    )
    settle_heap()  # as runtime.serve does for `parley api`
    try:
        await server.serve()
    finally:
        await container.close()


if __name__ == "__main__":
    asyncio.run(_serve())
