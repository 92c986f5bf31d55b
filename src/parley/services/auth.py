"""API tokens: random bearer secrets, stored only as SHA-256 hashes, scoped to one
organization and one role."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.storage.models import ApiToken, User

TOKEN_PREFIX = "prly_"


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


ROLE_RANK = {Role.AGENT: 0, Role.SUPERVISOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    organization_id: uuid.UUID
    role: Role
    user_id: uuid.UUID | None
    name: str
    token_id: uuid.UUID

    def at_least(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    role: Role,
    name: str,
    user_id: uuid.UUID | None = None,
) -> str:
    """Create a token and return it in clear text, the only time it is ever visible."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            organization_id=organization_id,
            user_id=user_id,
            name=name,
            role=role.value,
            token_hash=hash_token(token),
            prefix=token[:12],
        )
    )
    await session.flush()
    return token


async def authenticate(session: AsyncSession, token: str) -> Principal | None:
    row = (
        await session.execute(
            select(ApiToken, User.name)
            .outerjoin(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    api_token, user_name = row
    return Principal(
        organization_id=api_token.organization_id,
        role=Role(api_token.role),
        user_id=api_token.user_id,
        name=user_name or api_token.name,
        token_id=api_token.id,
    )
