"""Sandbox provider account settings: the fields, their defaults, and their validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from parley.channels.base import ProviderConfigError, ProviderContext
from parley.domain.channels import Channel
from parley.voice.network import E164, ENDPOINT, OUTCOMES

CONFIG_FIELDS: dict[str, str] = {
    "sent_delay_seconds": "seconds before the 'sent' callback (default 0.2)",
    "delivery_delay_seconds": "seconds before 'delivered' or 'failed' (default 1.0)",
    "read_delay_seconds": "seconds before 'read'/'opened' (default 2.0; null: never)",
    "read_rate": "fraction of delivered messages that get read/opened (default 1.0)",
    "failure_rate": "fraction of messages that fail instead of delivering (default 0.0)",
    "seed": "seed for the failure/read draws, for reproducible runs (default: random)",
    "callbacks": "post status callbacks at all (default true)",
    "from_address": "sender shown on email messages (display only)",
    "from_number": "sender number shown on SMS/WhatsApp messages; a voice account's "
    "caller id (E.164, default +15005550006)",
    "ring_seconds": "voice: seconds a called phone rings before it answers or gives its "
    "outcome (default 2)",
    "talk_seconds": "voice: seconds an answered phone stays on the line before it hangs up "
    "(default 20; null: until Parley hangs up)",
    "voicemail_seconds": "voice: length of the voicemail an inbound caller leaves (default 5)",
    "call_outcomes": "voice: {number or agent endpoint: answered | machine | busy | "
    "no-answer | failed | hold}; every other phone answers",
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
    # Voice: the simulated network (parley.voice.network).
    caller_id: str = "+15005550006"
    ring_seconds: float = 2.0
    talk_seconds: float | None = 20.0
    voicemail_seconds: float = 5.0
    call_outcomes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


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
    ring_seconds = number("ring_seconds", 2.0, 0, 600) or 0.0
    talk_seconds = number("talk_seconds", 20.0, 0, 86400)
    voicemail_seconds = number("voicemail_seconds", 5.0, 0, 600) or 0.0
    caller_id = config.get("from_number") or "+15005550006"
    voice = Channel(context.channel) is Channel.VOICE
    if voice and not (isinstance(caller_id, str) and E164.match(caller_id)):
        problems.append("from_number: a voice account's caller id must be E.164")
    outcomes = config.get("call_outcomes") or {}
    if not isinstance(outcomes, dict):
        problems.append("call_outcomes: must be an object of number -> outcome")
        outcomes = {}
    for where, outcome in outcomes.items():
        if not ENDPOINT.match(where):
            problems.append(f"call_outcomes: {where!r} is not an E.164 number or endpoint")
        if not isinstance(outcome, str) or outcome not in OUTCOMES:
            problems.append(f"call_outcomes: {where}: must be one of {', '.join(sorted(OUTCOMES))}")
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
        caller_id=str(caller_id),
        ring_seconds=ring_seconds,
        talk_seconds=talk_seconds,
        voicemail_seconds=voicemail_seconds,
        call_outcomes=MappingProxyType(dict(outcomes)),
    )
