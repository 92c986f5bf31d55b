"""Twilio provider account settings: the fields, their defaults, and their validation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from parley.channels.base import ProviderConfigError, ProviderContext
from parley.channels.config_fields import ConfigReader

CONFIG_FIELDS: dict[str, str] = {
    "base_url": "API base URL (default https://api.twilio.com)",
    "account_sid": "Twilio Account SID (AC...)",
    "from_number": "sending number in E.164 (or whatsapp:+...); or use messaging_service_sid",
    "messaging_service_sid": "Messaging Service SID (MG...) that picks the sender",
    "max_concurrency": "most requests in flight at once (default 32)",
    "timeout": "seconds to wait for connect and for the response (default 15)",
}
SECRET_FIELDS: dict[str, str] = {"auth_token": "Auth Token: API password and webhook key"}
REQUIRED: frozenset[str] = frozenset({"account_sid", "auth_token"})

DEFAULT_BASE_URL = "https://api.twilio.com"
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}\Z")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}\Z")
# E.164, or an alphanumeric sender id (1-11 characters, at least one letter).
_SENDER = re.compile(r"(whatsapp:)?\+[1-9]\d{4,14}\Z|(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9 ]{1,11}\Z")


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    base_url: str
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str | None
    messaging_service_sid: str | None
    max_concurrency: int
    timeout: float
    status_callback_url: str | None  # where Twilio posts status callbacks for this account

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"


def parse_settings(context: ProviderContext) -> TwilioSettings:
    """Validate an account's config; every problem is named in one ProviderConfigError."""
    reader = ConfigReader(context.config)
    problems, text, number = reader.problems, reader.text, reader.number
    base_url = reader.http_url("base_url", DEFAULT_BASE_URL)
    account_sid = text("account_sid")
    if account_sid is None:
        problems.append("account_sid: required")
    elif not _ACCOUNT_SID.match(account_sid):
        problems.append("account_sid: must look like AC followed by 32 hex digits")
    from_number = text("from_number")
    if from_number is not None and not _SENDER.match(from_number):
        problems.append("from_number: must be E.164 (+15551234567) or an alphanumeric sender id")
    service_sid = text("messaging_service_sid")
    if service_sid is not None and not _SERVICE_SID.match(service_sid):
        problems.append("messaging_service_sid: must look like MG followed by 32 hex digits")
    if from_number is None and service_sid is None:
        problems.append("from_number: required unless messaging_service_sid is set")
    max_concurrency = reader.whole("max_concurrency", 32, 1, 1000)
    timeout = number("timeout", 15.0, 0.001, 600)
    auth_token = context.secrets.get("auth_token")
    if not auth_token or not isinstance(auth_token, str):
        problems.append("auth_token: required")
    if problems:
        raise ProviderConfigError("invalid twilio configuration: " + "; ".join(problems))
    assert account_sid is not None and isinstance(auth_token, str)

    callback = None
    if context.public_base_url:
        callback = f"{context.public_base_url.rstrip('/')}/webhooks/twilio/{context.account_id}"
    return TwilioSettings(
        base_url=base_url,
        account_sid=account_sid,
        auth_token=auth_token,
        from_number=from_number,
        messaging_service_sid=service_sid,
        max_concurrency=int(max_concurrency),
        timeout=float(timeout),
        status_callback_url=callback,
    )
