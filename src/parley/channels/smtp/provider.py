"""The SMTP submission provider: renders each message to MIME bytes and submits it
over a pool of reused SMTP sessions.

SMTP has no status callbacks: bounces arrive later as DSNs through the inbound mailbox,
so every webhook addressed to this provider is rejected.
"""

from __future__ import annotations

from typing import ClassVar

from parley.channels.base import (
    Capabilities,
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    SendResult,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.smtp.config import SmtpSettings, parse_settings
from parley.channels.smtp.mime import InvalidMessageError, render
from parley.channels.smtp.pool import SmtpPool
from parley.domain.channels import Channel


class SmtpProvider:
    """Email over SMTP submission (RFC 6409) to the account's relay."""

    name: ClassVar[str] = "smtp"
    channel: Channel = Channel.EMAIL
    capabilities: Capabilities = Capabilities(supports_html=True)

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._pool = SmtpPool(settings)

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            email = render(
                message,
                from_address=self.settings.from_address,
                from_name=self.settings.from_name,
                message_id_domain=self.settings.message_id_domain,
            )
        except InvalidMessageError as exc:
            # Sending again would build the same invalid message: permanent.
            return SendResult(accepted=False, error_code="invalid_message", error_detail=str(exc))
        return await self._pool.send(email)

    def verify_webhook(self, request: WebhookRequest) -> None:
        raise WebhookVerificationError("the smtp provider receives no webhooks")

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        return []

    async def aclose(self) -> None:
        await self._pool.aclose()

    def __repr__(self) -> str:  # never shows the password
        s = self.settings
        return f"<SmtpProvider {s.host}:{s.port} from={s.from_address} pool={s.pool_size}>"


def create(context: ProviderContext) -> SmtpProvider:
    if context.channel != Channel.EMAIL:
        raise ProviderConfigError(f"channel: smtp serves email, not {context.channel}")
    return SmtpProvider(parse_settings(context))
