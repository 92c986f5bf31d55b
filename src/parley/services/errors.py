"""Errors a use case raises; the API maps them to application/problem+json responses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FieldError:
    field: str  # JSON pointer-ish path in the request, e.g. "to" or "variables.amount"
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


class ServiceError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Invalid(ServiceError):
    """The request is well-formed but its content can't be accepted."""

    status = 422
    title = "Unprocessable content"

    @classmethod
    def field(cls, name: str, message: str, code: str = "invalid") -> Invalid:
        return cls(f"{name}: {message}", [FieldError(name, message, code)])


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


@dataclass
class Problem:
    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
