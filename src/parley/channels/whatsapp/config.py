"""WhatsApp Cloud API account settings: the fields, their defaults, and their validation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from parley.channels.base import ProviderConfigError, ProviderContext
from parley.channels.config_fields import ConfigReader

CONFIG_FIELDS: dict[str, str] = {
    "base_url": "Graph API base URL (default https://graph.facebook.com)",
    "api_version": "Graph API version path segment (default v21.0)",
    "phone_number_id": "the business phone number's id (sends go to /{id}/messages)",
    "waba_id": "WhatsApp Business Account id (templates are listed from it)",
    "from_number": "the business phone number in E.164 (display only)",
    "max_concurrency": "most requests in flight at once (default 32)",
    "timeout": "seconds to wait for connect and for the response (default 15)",
}
SECRET_FIELDS: dict[str, str] = {
    "access_token": "system-user access token (Bearer) for the Graph API",
    "app_secret": "Meta app secret: the key of X-Hub-Signature-256 on webhooks",
    "verify_token": "the token Meta echoes in the webhook subscription handshake",
}
REQUIRED: frozenset[str] = frozenset({"phone_number_id", "access_token", "app_secret"})

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v21.0"
_GRAPH_ID = re.compile(r"\d{1,30}\Z")
_VERSION = re.compile(r"v\d{1,3}\.\d{1,3}\Z")
_E164 = re.compile(r"\+[1-9]\d{4,14}\Z")


@dataclass(frozen=True, slots=True)
class WhatsAppSettings:
    base_url: str
    api_version: str
    phone_number_id: str
    waba_id: str | None
    from_number: str | None
    access_token: str = field(repr=False)
    app_secret: str = field(repr=False)
    verify_token: str | None = field(repr=False)
    max_concurrency: int = 32
    timeout: float = 15.0

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/{self.api_version}/{self.phone_number_id}/messages"

    @property
    def templates_url(self) -> str | None:
        if self.waba_id is None:
            return None
        return f"{self.base_url}/{self.api_version}/{self.waba_id}/message_templates"


def parse_settings(context: ProviderContext) -> WhatsAppSettings:
    """Validate an account's config; every problem is named in one ProviderConfigError."""
    reader = ConfigReader(context.config)
    problems = reader.problems
    number = reader.number

    def text(name: str) -> str | None:
        return reader.text(name, digits_ok=True)  # ids are digits; JSON numbers too

    base_url = reader.http_url("base_url", DEFAULT_BASE_URL)
    api_version = text("api_version") or DEFAULT_API_VERSION
    if not _VERSION.match(api_version):
        problems.append("api_version: must look like v21.0")
    phone_number_id = text("phone_number_id")
    if phone_number_id is None:
        problems.append("phone_number_id: required")
    elif not _GRAPH_ID.match(phone_number_id):
        problems.append("phone_number_id: must be the numeric id Meta shows for the number")
    waba_id = text("waba_id")
    if waba_id is not None and not _GRAPH_ID.match(waba_id):
        problems.append("waba_id: must be the numeric WhatsApp Business Account id")
    from_number = text("from_number")
    if from_number is not None and not _E164.match(from_number):
        problems.append("from_number: must be E.164 (+15551234567)")
    max_concurrency = reader.whole("max_concurrency", 32, 1, 1000)
    timeout = number("timeout", 15.0, 0.001, 600)
    secrets = context.secrets
    access_token = secrets.get("access_token")
    if not access_token or not isinstance(access_token, str):
        problems.append("access_token: required")
    app_secret = secrets.get("app_secret")
    if not app_secret or not isinstance(app_secret, str):
        problems.append("app_secret: required")
    verify_token = secrets.get("verify_token")
    if verify_token is not None and not isinstance(verify_token, str):
        problems.append("verify_token: must be a string")
    if problems:
        raise ProviderConfigError("invalid whatsapp_cloud configuration: " + "; ".join(problems))
    assert phone_number_id is not None
    assert isinstance(access_token, str) and isinstance(app_secret, str)
    return WhatsAppSettings(
        base_url=base_url,
        api_version=api_version,
        phone_number_id=phone_number_id,
        waba_id=waba_id,
        from_number=from_number,
        access_token=access_token,
        app_secret=app_secret,
        verify_token=verify_token or None,
        max_concurrency=int(max_concurrency),
        timeout=float(timeout),
    )
