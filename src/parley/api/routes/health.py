"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from parley.api.deps import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(container: ContainerDep) -> dict[str, str]:
    async with container.db.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return {"status": "ok"}
