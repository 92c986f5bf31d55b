"""Build the render context for a message about one case: borrower, case, agent, organization.

Templates address these objects by tag or variable (``#borrower.first_name``,
``{{ case.outstanding_amount }}``). Keys the renderer and the shipped templates expect:

borrower
    ``first_name``, ``last_name``, ``full_name`` (derived from first and last name when
    absent), optionally ``email``, ``phone``, ``locale``.
case
    ``number``, ``creditor``, ``outstanding_amount`` (``Money``), ``original_amount``
    (``Money``), ``due_date`` (``datetime.date``), ``days_past_due`` (int).
agent
    ``name``, ``email``, ``phone``. ``None`` for automated messages: ``#agent.name`` is
    then reported missing, and ``{% if agent %}`` is false.
organization
    ``name``, ``phone``, ``email``.

Any other keys are passed through. ``Money`` and dates are formatted in the render
locale when printed. ``extra`` adds top-level variables (``{{ invoiceNumber }}``); it
cannot replace the four objects above.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

CONTEXT_OBJECTS: Final = ("borrower", "case", "agent", "organization")


def case_context(
    *,
    borrower: Mapping[str, Any],
    case: Mapping[str, Any],
    agent: Mapping[str, Any] | None,
    organization: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The nested render context; inputs are copied, never modified."""
    context: dict[str, Any] = {}
    if extra:
        clashing = sorted(set(extra) & set(CONTEXT_OBJECTS))
        if clashing:
            raise ValueError(
                f"extra variables cannot replace the context objects: {', '.join(clashing)}"
            )
        context.update(extra)
    context["borrower"] = _with_full_name(borrower)
    context["case"] = dict(case)
    if agent is not None:  # absent, so agent tags are reported missing by name
        context["agent"] = dict(agent)
    context["organization"] = dict(organization)
    return context


def _with_full_name(borrower: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(borrower)
    if not result.get("full_name"):
        parts = [
            str(part).strip()
            for part in (result.get("first_name"), result.get("last_name"))
            if part is not None and str(part).strip()
        ]
        if parts:
            result["full_name"] = " ".join(parts)
    return result
