"""SMTP submission provider (channel EMAIL).

Importing this package is cheap: the provider, aiosmtplib and the MIME code load when an
account is first built.
"""

from __future__ import annotations

from typing import Any

from parley.channels.base import ProviderContext, ProviderSpec
from parley.channels.smtp.config import CONFIG_FIELDS, REQUIRED, SECRET_FIELDS
from parley.domain.channels import Channel


def _factory(context: ProviderContext) -> Any:
    from parley.channels.smtp.provider import create

    return create(context)


SPEC = ProviderSpec(
    name="smtp",
    channels=frozenset({Channel.EMAIL}),
    factory=_factory,
    config_fields=CONFIG_FIELDS,
    secret_fields=SECRET_FIELDS,
    required=REQUIRED,
)
