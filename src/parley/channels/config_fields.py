"""Reading a provider account's settings: typed fields, every problem collected.

A provider's `parse_settings` reads its fields through one :class:`ConfigReader` and
raises a single ProviderConfigError naming every problem (so an API client fixes them in
one go), instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


class ConfigReader:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.problems: list[str] = []

    def text(self, name: str, *, max_len: int | None = None, digits_ok: bool = False) -> str | None:
        """A string field, stripped; None when absent or empty. `digits_ok`: ids that a
        client may send as JSON numbers; `max_len`: at most that many ASCII characters."""
        value = self.config.get(name)
        if value is None or value == "":
            return None
        if digits_ok and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.problems.append(f"{name}: must be a string")
            return None
        value = value.strip()
        if max_len is not None and (len(value) > max_len or not value.isascii()):
            self.problems.append(f"{name}: at most {max_len} ASCII characters")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        """A number within [low, high]; the default when absent or invalid."""
        value = self.config.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{name}: must be a number")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name}: must be between {low:g} and {high:g}")
            return default
        return value

    def whole(self, name: str, default: int, low: int, high: int) -> int:
        """A whole number within [low, high]."""
        value = self.number(name, default, low, high)
        if value != int(value):
            self.problems.append(f"{name}: must be a whole number")
            return default
        return int(value)

    def http_url(self, name: str, default: str) -> str:
        """An http(s) base URL, without a trailing slash."""
        url = (self.text(name) or default).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(f"{name}: must be an http(s) URL")
        return url
