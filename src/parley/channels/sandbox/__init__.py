"""Sandbox provider: serves every channel, accepts every message, and reports realistic
signed status callbacks to Parley's own webhook endpoint (see `provider`); on voice it
also places live calls on a simulated telephone network (see `voice`).

Importing this package is cheap: aiohttp and the provider load when an account is built.
"""

from __future__ import annotations

from typing import Any

from parley.channels.base import ProviderContext, ProviderSpec
from parley.channels.sandbox.config import CONFIG_FIELDS, REQUIRED, SECRET_FIELDS
from parley.domain.channels import Channel


def _factory(context: ProviderContext) -> Any:
    from parley.channels.sandbox.provider import create

    return create(context)


SPEC = ProviderSpec(
    name="sandbox",
    channels=frozenset(Channel),
    factory=_factory,
    config_fields=CONFIG_FIELDS,
    secret_fields=SECRET_FIELDS,
    required=REQUIRED,
    live_calls=True,
)
