"""Shared schema base: camelCase aliases, strict unknown-field handling, pagination."""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        str_strip_whitespace=True,
    )


class RequestModel(CamelModel):
    # Unknown fields are refused, so a typo ("sendat") is a 422, not silently ignored.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        str_strip_whitespace=True,
        extra="forbid",
    )

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL, JSON columns cannot hold NaN or infinity, and
        # free-form values (template variables) must stay small and shallow. Nested
        # models ran this validator already, so their errors name the inner field.
        problem = _unstorable(value, depth=0)
        if problem:
            raise ValueError(problem)
        return value


MAX_DEPTH = 8
MAX_ITEMS = 1000


def _unstorable(value: Any, depth: int) -> str | None:
    if isinstance(value, str):
        return "must not contain NUL characters" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite (no NaN or infinity)"
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            return f"must not be nested more than {MAX_DEPTH} levels deep"
        if len(value) > MAX_ITEMS:
            return f"must not hold more than {MAX_ITEMS} items"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            problem = _unstorable(key, depth + 1) if isinstance(key, str) else None
            problem = problem or _unstorable(item, depth + 1)
            if problem:
                return problem
    return None


T = TypeVar("T")


class Page(CamelModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
