"""Request dependencies: the container, a database session, the authenticated principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession

from parley.bootstrap import Container
from parley.services.auth import Principal, Role, authenticate


async def get_container(request: Request) -> Container:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on
    # every request for an attribute read (measured on the webhook route).
    container: Container = request.app.state.container
    return container


async def get_session(
    container: Annotated[Container, Depends(get_container)],
) -> AsyncIterator[AsyncSession]:
    async with container.db.session() as session:
        yield session


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "Missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


async def get_principal(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = await authenticate(session, bearer_token(request))
    if principal is None:
        raise HTTPException(401, "Invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


def require(role: Role):  # type: ignore[no-untyped-def]
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.at_least(role):
            raise HTTPException(403, f"This action needs the {role.value} role")
        return principal

    return check


SessionDep = Annotated[AsyncSession, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ContainerDep = Annotated[Container, Depends(get_container)]
SupervisorDep = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
