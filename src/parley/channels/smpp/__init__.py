"""SMPP 3.4 provider (channel SMS): our own asyncio client bound as a transceiver.

Importing this package is cheap: the client loads when an account is built.
"""

from __future__ import annotations

from typing import Any

from parley.channels.base import ProviderContext, ProviderSpec
from parley.channels.smpp.config import CONFIG_FIELDS, REQUIRED, SECRET_FIELDS
from parley.domain.channels import Channel


def _factory(context: ProviderContext) -> Any:
    from parley.channels.smpp.provider import create

    return create(context)


SPEC = ProviderSpec(
    name="smpp",
    channels=frozenset({Channel.SMS}),
    factory=_factory,
    config_fields=CONFIG_FIELDS,
    secret_fields=SECRET_FIELDS,
    required=REQUIRED,
)
