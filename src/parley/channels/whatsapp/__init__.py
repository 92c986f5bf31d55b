"""WhatsApp Cloud API provider (channel WHATSAPP): Graph API sends, signed webhooks.

Importing this package is cheap: aiohttp and the provider load when an account is built.
"""

from __future__ import annotations

from typing import Any

from parley.channels.base import ProviderContext, ProviderSpec
from parley.channels.whatsapp.config import CONFIG_FIELDS, REQUIRED, SECRET_FIELDS
from parley.domain.channels import Channel


def _factory(context: ProviderContext) -> Any:
    from parley.channels.whatsapp.provider import create

    return create(context)


SPEC = ProviderSpec(
    name="whatsapp_cloud",
    channels=frozenset({Channel.WHATSAPP}),
    factory=_factory,
    config_fields=CONFIG_FIELDS,
    secret_fields=SECRET_FIELDS,
    required=REQUIRED,
)
