"""Webhook subscription handshakes: a provider checks our endpoint before posting to it.

Meta (WhatsApp Cloud API) sends `GET ...?hub.mode=subscribe&hub.verify_token=...&
hub.challenge=...` when a webhook is configured; we echo the challenge if the verify
token is the account's. Providers offering this implement `subscription_challenge(query)`
(raising WebhookVerificationError on a mismatch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from parley.inbox.receipts import UnknownWebhookAccount

if TYPE_CHECKING:
    from parley.bootstrap import Container


async def challenge(
    container: Container, provider_name: str, account_id: str, query: Mapping[str, str]
) -> str:
    """The text to answer the handshake with; raises UnknownWebhookAccount (404) or
    WebhookVerificationError (403)."""
    account = await container.providers.account(account_id)
    if account is None or account.provider != provider_name:
        raise UnknownWebhookAccount(f"no {provider_name} account {account_id}")
    provider = await container.providers.get(account)
    answer = getattr(provider, "subscription_challenge", None)
    if answer is None:
        raise UnknownWebhookAccount(f"{provider_name} has no subscription handshake")
    result: str = answer(query)
    return result
