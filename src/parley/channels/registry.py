"""The provider registry: one line per provider, imported lazily by name.

Adding a provider = one folder under `parley/channels/` exposing `SPEC`, one line here,
and fixtures under `tests/fixtures/providers/<name>/`; the contract tests pick it up.
"""

from __future__ import annotations

import importlib
from functools import cache

from parley.channels.base import ChannelProvider, ProviderContext, ProviderSpec

PROVIDERS: dict[str, str] = {
    "sandbox": "parley.channels.sandbox",
    "smpp": "parley.channels.smpp",
    "smtp": "parley.channels.smtp",
    "twilio": "parley.channels.twilio",
    "whatsapp_cloud": "parley.channels.whatsapp",
}


class UnknownProvider(LookupError):
    pass


@cache
def spec(name: str) -> ProviderSpec:
    try:
        module_path = PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(
            f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}"
        ) from None
    module = importlib.import_module(module_path)
    result: ProviderSpec = module.SPEC
    return result


def build(name: str, context: ProviderContext) -> ChannelProvider:
    provider: ChannelProvider = spec(name).factory(context)
    return provider


def names() -> list[str]:
    return sorted(PROVIDERS)


def call_providers() -> list[str]:
    """The providers whose voice accounts place live calls (click-to-call)."""
    return [name for name in names() if spec(name).live_calls]
