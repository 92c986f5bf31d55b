"""Sandbox provider account settings: the fields, their defaults, and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field

from parley.channels.base import ProviderConfigError, ProviderContext

CONFIG_FIELDS: dict[str, str] = {
    "sent_delay_seconds": "seconds before the 'sent' callback (default 0.2)",
    "delivery_delay_seconds": "seconds before 'delivered' or 'failed' (default 1.0)",
    "read_delay_seconds": "seconds before 'read'/'opened' (default 2.0; null: never)",
    "read_rate": "fraction of delivered messages that get read/opened (default 1.0)",
    "failure_rate": "fraction of messages that fail instead of delivering (default 0.0)",
    "seed": "seed for the failure/read draws, for reproducible runs (default: random)",
    "callbacks": "post status callbacks at all (default true)",
    "from_address": "sender shown on email messages (display only)",
    "from_number": "sender number shown on SMS/WhatsApp messages (display only)",
}
SECRET_FIELDS: dict[str, str] = {"signing_secret": "HMAC-SHA256 key for X-Sandbox-Signature"}
REQUIRED: frozenset[str] = frozenset({"signing_secret"})


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    signing_secret: str = field(repr=False)
    sent_delay: float = 0.2
    delivery_delay: float = 1.0
    read_delay: float | None = 2.0
    read_rate: float = 1.0
    failure_rate: float = 0.0
    seed: int | None = None
    callbacks: bool = True


def parse_settings(context: ProviderContext) -> SandboxSettings:
    config, problems = context.config, []

    def number(name: str, default: float | None, low: float, high: float) -> float | None:
        value = config.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{name}: must be a number")
            return default
        if not low <= value <= high:
            problems.append(f"{name}: must be between {low:g} and {high:g}")
            return default
        return float(value)

    sent_delay = number("sent_delay_seconds", 0.2, 0, 3600) or 0.0
    delivery_delay = number("delivery_delay_seconds", 1.0, 0, 3600) or 0.0
    read_delay = number("read_delay_seconds", 2.0, 0, 86400)
    read_rate = number("read_rate", 1.0, 0, 1)
    failure_rate = number("failure_rate", 0.0, 0, 1) or 0.0
    seed = config.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        problems.append("seed: must be an integer")
        seed = None
    callbacks = config.get("callbacks", True)
    if not isinstance(callbacks, bool):
        problems.append("callbacks: must be true or false")
        callbacks = True
    secret = context.secrets.get("signing_secret")
    if not secret or not isinstance(secret, str):
        problems.append("signing_secret: required")
    if problems:
        raise ProviderConfigError("invalid sandbox configuration: " + "; ".join(problems))
    assert isinstance(secret, str)
    return SandboxSettings(
        signing_secret=secret,
        sent_delay=sent_delay,
        delivery_delay=max(delivery_delay, sent_delay),
        read_delay=None if read_delay is None else max(read_delay, delivery_delay),
        read_rate=1.0 if read_rate is None else read_rate,
        failure_rate=failure_rate,
        seed=seed,
        callbacks=callbacks,
    )
