"""SMPP provider account settings: the fields, their defaults, and their validation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta, timezone

from parley.channels.base import ProviderConfigError, ProviderContext
from parley.channels.config_fields import ConfigReader

CONFIG_FIELDS: dict[str, str] = {
    "host": "SMSC host name or IP address",
    "port": "SMSC port (default 2775)",
    "system_id": "ESME system_id for bind_transceiver (at most 15 characters)",
    "system_type": "system_type for the bind (default empty)",
    "source_addr": "default sender: E.164 number, short code or alphanumeric sender id",
    "window": "most submit_sm awaiting their response at once on a bind (default 10)",
    "throughput": "most submit_sm per second on a bind, token bucket (default 10)",
    "enquire_link_interval": "seconds between enquire_link keep-alives when idle (default 30)",
    "response_timeout": "seconds to wait for a response PDU (default 10)",
    "connect_timeout": "seconds to wait for the TCP connection and bind (default 10)",
    "reconnect_min": "first reconnect delay in seconds, doubled per failure (default 1)",
    "reconnect_max": "longest reconnect delay in seconds (default 60)",
    "registered_delivery": "ask for delivery receipts (default true)",
    "receipt_id_conversion": "receipt id vs submit_sm_resp id: none | dec_to_hex | hex_to_dec",
    "receipt_utc_offset_minutes": "time zone of receipt dates, minutes east of UTC (default 0)",
    "mo_reassembly_timeout": "seconds to wait for the missing parts of a long reply (default 10)",
}
SECRET_FIELDS: dict[str, str] = {"password": "ESME password for the bind (at most 8 characters)"}
REQUIRED: frozenset[str] = frozenset({"host", "system_id", "password"})

_SENDER = re.compile(r"\+?[0-9]{3,15}\Z|(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9 ]{1,11}\Z")
CONVERSIONS = ("none", "dec_to_hex", "hex_to_dec")


@dataclass(frozen=True, slots=True)
class SmppSettings:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str
    source_addr: str | None
    window: int
    throughput: float
    enquire_link_interval: float
    response_timeout: float
    connect_timeout: float
    reconnect_min: float
    reconnect_max: float
    registered_delivery: bool
    receipt_id_conversion: str
    receipt_tz: timezone
    mo_reassembly_timeout: float

    @property
    def address(self) -> str:
        """Where this bind goes, for stored receipts (no credentials)."""
        return f"smpp://{self.host}:{self.port}/{self.system_id}"


def parse_settings(context: ProviderContext) -> SmppSettings:
    """Validate an account's config; every problem is named in one ProviderConfigError."""
    reader = ConfigReader(context.config)
    problems, text, number = reader.problems, reader.text, reader.number
    host = text("host")
    if host is None:
        problems.append("host: required")
    system_id = text("system_id", max_len=15)
    if system_id is None:
        problems.append("system_id: required")
    system_type = text("system_type", max_len=12) or ""
    source_addr = text("source_addr")
    if source_addr is not None and not _SENDER.match(source_addr):
        problems.append("source_addr: must be a number or an alphanumeric sender id")
    password = context.secrets.get("password")
    if not password or not isinstance(password, str):
        problems.append("password: required")
    elif len(password) > 8 or not password.isascii():
        problems.append("password: at most 8 ASCII characters (SMPP 3.4)")
    conversion = text("receipt_id_conversion") or "none"
    if conversion not in CONVERSIONS:
        problems.append(f"receipt_id_conversion: one of {', '.join(CONVERSIONS)}")
    registered = context.config.get("registered_delivery", True)
    if not isinstance(registered, bool):
        problems.append("registered_delivery: must be true or false")
    port = reader.whole("port", 2775, 1, 65535)
    window = reader.whole("window", 10, 1, 1000)
    throughput = number("throughput", 10, 0.01, 100000)
    enquire = number("enquire_link_interval", 30, 0.05, 3600)
    response_timeout = number("response_timeout", 10, 0.05, 600)
    connect_timeout = number("connect_timeout", 10, 0.05, 600)
    reconnect_min = number("reconnect_min", 1, 0.01, 3600)
    reconnect_max = number("reconnect_max", 60, 0.01, 86400)
    offset = reader.whole("receipt_utc_offset_minutes", 0, -840, 840)
    reassembly = number("mo_reassembly_timeout", 10, 0.05, 3600)
    if reconnect_max < reconnect_min:
        problems.append("reconnect_max: must not be less than reconnect_min")
    if problems:
        raise ProviderConfigError("invalid smpp configuration: " + "; ".join(problems))
    assert host is not None and system_id is not None and isinstance(password, str)
    return SmppSettings(
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        system_type=system_type,
        source_addr=source_addr,
        window=window,
        throughput=throughput,
        enquire_link_interval=enquire,
        response_timeout=response_timeout,
        connect_timeout=connect_timeout,
        reconnect_min=reconnect_min,
        reconnect_max=reconnect_max,
        registered_delivery=bool(registered),
        receipt_id_conversion=conversion,
        receipt_tz=timezone(timedelta(minutes=offset)),
        mo_reassembly_timeout=reassembly,
    )
