"""Twilio provider: SMS through the Messages API, VOICE through the Calls API
(`parley.channels.twilio.voice`).

Importing this package is cheap: aiohttp and the provider load when an account is built.
"""

from __future__ import annotations

from typing import Any

from parley.channels.base import ProviderContext, ProviderSpec
from parley.channels.twilio.config import CONFIG_FIELDS, REQUIRED, SECRET_FIELDS
from parley.domain.channels import Channel


def _factory(context: ProviderContext) -> Any:
    if context.channel == Channel.VOICE:
        from parley.channels.twilio import voice

        return voice.create(context)
    from parley.channels.twilio.provider import create

    return create(context)


SPEC = ProviderSpec(
    name="twilio",
    channels=frozenset({Channel.SMS, Channel.VOICE}),
    factory=_factory,
    config_fields=CONFIG_FIELDS,
    secret_fields=SECRET_FIELDS,
    required=REQUIRED,
    live_calls=True,
)
