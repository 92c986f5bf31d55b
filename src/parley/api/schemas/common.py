"""Shared schema base: camelCase aliases, strict unknown-field handling, pagination."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict
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


T = TypeVar("T")


class Page(CamelModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
