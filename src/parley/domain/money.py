"""Money as a decimal amount with an ISO 4217 currency (never a float)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str  # ISO 4217, upper case

    def __post_init__(self) -> None:
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code like 'USD', got {self.currency!r}")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
