"""SMTP provider account settings: the fields, their defaults, and their validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.channels.base import ProviderConfigError, ProviderContext

CONFIG_FIELDS: dict[str, str] = {
    "host": "SMTP submission server host name",
    "port": "TCP port (default 587 with starttls, 465 with use_tls, else 25)",
    "username": "login name; omit for servers that accept unauthenticated submission",
    "use_tls": "connect over implicit TLS (port 465 style); default false",
    "starttls": "upgrade with STARTTLS after connecting: true, false, or null (if offered)",
    "validate_certs": "verify the server's TLS certificate; default true",
    "from_address": "default envelope and header From address",
    "from_name": "display name for the From header (optional)",
    "pool_size": "number of pooled SMTP connections (default 10)",
    "timeout": "seconds to wait for connect and for each server reply (default 30)",
    "message_id_domain": "domain for generated Message-IDs (default: from_address's domain)",
    "helo_hostname": "name sent in EHLO (default: message_id_domain)",
    # Receiving (see channels/smtp/imap.py and docs/providers.md): one account = one mailbox.
    "imap_host": "IMAP server to read replies and bounces from (optional; enables receiving)",
    "imap_port": "IMAP port (default 993 with imap_tls, else 143)",
    "imap_tls": "connect to IMAP over implicit TLS; default true (false with imap_starttls)",
    "imap_starttls": (
        "connect to IMAP in plaintext (port 143) and upgrade with STARTTLS before logging in;"
        " the server must offer STARTTLS; default false; not together with imap_tls"
    ),
    "imap_username": "IMAP login name (default: username)",
    "imap_folder": "mailbox folder to read (default INBOX)",
    "imap_poll_interval": "seconds between checks when the server lacks IDLE (default 60)",
    "imap_idle": "use IMAP IDLE when the server offers it; default true",
    # Tracking (off by default: see docs/api.md, 'Open and click tracking').
    "track_opens": "add an open-tracking pixel to HTML emails; default false",
    "track_clicks": "rewrite links in HTML emails to signed redirect links; default false",
}
SECRET_FIELDS: dict[str, str] = {
    "password": "password for SMTP AUTH (with username)",
    "imap_password": "IMAP password (default: password)",
    "inbound_secret": "shared secret of the inbound-parse webhook (HMAC key / basic-auth password)",
}
REQUIRED: frozenset[str] = frozenset({"host", "from_address"})


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    from_address: str
    from_name: str | None
    username: str | None
    password: str | None = field(repr=False)
    use_tls: bool
    starttls: bool | None
    validate_certs: bool
    pool_size: int
    timeout: float
    message_id_domain: str
    helo_hostname: str
    imap: ImapSettings | None = None
    inbound_secret: str | None = field(default=None, repr=False)
    track_opens: bool = False
    track_clicks: bool = False


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    port: int
    tls: bool
    username: str
    password: str = field(repr=False)
    folder: str
    poll_interval: float
    idle: bool
    validate_certs: bool
    timeout: float
    starttls: bool = False


def parse_settings(context: ProviderContext) -> SmtpSettings:
    """Validate an account's config; every problem is named in one ProviderConfigError."""
    config, problems = context.config, []
    host = _text(config, "host", problems, required=True)
    from_address = _text(config, "from_address", problems, required=True)
    from_name = _text(config, "from_name", problems)
    username = _text(config, "username", problems)
    use_tls = _flag(config, "use_tls", problems, default=False)
    starttls_raw = config.get("starttls", False)
    starttls: bool | None = None
    if starttls_raw is None or isinstance(starttls_raw, bool):
        starttls = starttls_raw
    else:
        problems.append("starttls: must be true, false or null")
    validate_certs = _flag(config, "validate_certs", problems, default=True)
    if use_tls and starttls:
        problems.append("use_tls/starttls: choose implicit TLS or STARTTLS, not both")
    default_port = 465 if use_tls else 587 if starttls else 25
    port = _number(config, "port", problems, default=default_port, integer=True, low=1, high=65535)
    pool_size = _number(config, "pool_size", problems, default=10, integer=True, low=1, high=1000)
    timeout = _number(config, "timeout", problems, default=30.0, low=0.001, high=3600)

    if from_address and ("@" not in from_address or any(c in from_address for c in "\r\n<> ")):
        problems.append("from_address: must be a plain address like billing@example.com")
    domain_default = from_address.rpartition("@")[2] if from_address else ""
    message_id_domain = _text(config, "message_id_domain", problems) or domain_default
    if message_id_domain and not all(c.isalnum() or c in ".-" for c in message_id_domain):
        problems.append("message_id_domain: must be a domain name")
    helo_hostname = _text(config, "helo_hostname", problems) or message_id_domain or "localhost"

    password = context.secrets.get("password")
    if password is not None and not isinstance(password, str):
        problems.append("password: must be a string")
        password = None
    if username and not password:
        problems.append("password: required when username is set")
    imap = _imap(config, context.secrets, problems, username, password, validate_certs, timeout)
    inbound_secret = context.secrets.get("inbound_secret")
    if inbound_secret is not None and (not isinstance(inbound_secret, str) or not inbound_secret):
        problems.append("inbound_secret: must be a non-empty string")
        inbound_secret = None
    track_opens = _flag(config, "track_opens", problems, default=False)
    track_clicks = _flag(config, "track_clicks", problems, default=False)
    if problems:
        raise ProviderConfigError("invalid smtp configuration: " + "; ".join(problems))
    return SmtpSettings(
        host=host or "",
        port=int(port),
        from_address=from_address or "",
        from_name=from_name,
        username=username,
        password=password,
        use_tls=use_tls,
        starttls=starttls,
        validate_certs=validate_certs,
        pool_size=int(pool_size),
        timeout=float(timeout),
        message_id_domain=message_id_domain,
        helo_hostname=helo_hostname,
        imap=imap,
        inbound_secret=inbound_secret,
        track_opens=track_opens,
        track_clicks=track_clicks,
    )


def _imap(
    config: Mapping[str, Any],
    secrets: Mapping[str, Any],
    problems: list[str],
    username: str | None,
    password: str | None,
    validate_certs: bool,
    timeout: float,
) -> ImapSettings | None:
    host = _text(config, "imap_host", problems)
    if not host:
        for name in ("imap_port", "imap_username", "imap_folder"):
            if config.get(name) not in (None, ""):
                problems.append(f"{name}: set imap_host to receive over IMAP")
        if config.get("imap_starttls"):
            problems.append("imap_starttls: set imap_host to receive over IMAP")
        return None
    starttls = _flag(config, "imap_starttls", problems, default=False)
    tls = _flag(config, "imap_tls", problems, default=not starttls)
    if tls and starttls:
        problems.append("imap_tls/imap_starttls: choose implicit TLS or STARTTLS, not both")
    port = _number(
        config, "imap_port", problems, default=993 if tls else 143, integer=True, low=1, high=65535
    )
    login = _text(config, "imap_username", problems) or username
    secret = secrets.get("imap_password", password)
    if not login:
        problems.append("imap_username: required to receive over IMAP")
    if not isinstance(secret, str) or not secret:
        problems.append("imap_password: required to receive over IMAP")
        secret = ""
    folder = _text(config, "imap_folder", problems) or "INBOX"
    if any(c in folder for c in '"\\'):
        problems.append("imap_folder: must not contain quotes or backslashes")
    poll = _number(config, "imap_poll_interval", problems, default=60.0, low=1, high=86400)
    idle = _flag(config, "imap_idle", problems, default=True)
    return ImapSettings(
        host=host,
        port=int(port),
        tls=tls,
        username=login or "",
        password=secret,
        folder=folder,
        poll_interval=float(poll),
        idle=idle,
        validate_certs=validate_certs,
        timeout=float(timeout),
        starttls=starttls,
    )


def _text(
    config: Mapping[str, Any], name: str, problems: list[str], *, required: bool = False
) -> str | None:
    value = config.get(name)
    if value is None or value == "":
        if required:
            problems.append(f"{name}: required")
        return None
    if not isinstance(value, str):
        problems.append(f"{name}: must be a string")
        return None
    if "\r" in value or "\n" in value:
        problems.append(f"{name}: must not contain line breaks")
        return None
    return value.strip()


def _flag(config: Mapping[str, Any], name: str, problems: list[str], *, default: bool) -> bool:
    value = config.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        problems.append(f"{name}: must be true or false")
        return default
    return value


def _number(
    config: Mapping[str, Any],
    name: str,
    problems: list[str],
    *,
    default: float,
    integer: bool = False,
    low: float,
    high: float,
) -> float:
    value = config.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{name}: must be a number")
        return default
    if integer and value != int(value):
        problems.append(f"{name}: must be a whole number")
        return default
    if not low <= value <= high:
        problems.append(f"{name}: must be between {low:g} and {high:g}")
        return default
    return value
