"""Render message templates: sandboxed, strict about missing values, locale-aware, cached.

Templates are written by supervisors and integrators, so they run in Jinja's
``ImmutableSandboxedEnvironment`` with a few extra guards: private attributes are rejected when
the template is compiled (a clear error instead of an empty string), includes and
imports are not available, and ``*`` / ``**`` cannot build huge values.

Compiled templates are cached by (source, html) in a bounded LRU: a campaign renders one
template for every recipient and must compile it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final, NamedTuple

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from parley.templates.errors import (
    InvalidTemplate,
    MissingVariables,
    RenderError,
    UnsafeTemplate,
)
from parley.templates.filters import ValueFormatting, reset_render_locale, set_render_locale
from parley.templates.formatting import DEFAULT_LOCALE, resolve_locale
from parley.templates.strict import (
    MissingValue,
    PathLookups,
    dotted_path,
    name_lookups,
    start_collecting,
    stop_collecting,
)
from parley.templates.tags import MergeTags

COMPILED_CACHE_SIZE: Final = 1024

#: Largest string or list a template may build with ``*`` (same bound as the sandbox's
#: ``range``), and the largest integer, in bits, ``*`` or ``**`` may produce.
_MAX_SEQUENCE_LENGTH: Final = 100_000
_MAX_INTEGER_BITS: Final = 100_000

_UNSUPPORTED: Final = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
}


def render(
    source: str,
    context: Mapping[str, Any],
    *,
    locale: str | None = DEFAULT_LOCALE,
    html: bool = False,
) -> str:
    """Render ``source`` with ``context`` (nested dicts) in ``locale``.

    ``html=True`` escapes values for an HTML body; SMS and text bodies are not escaped.
    Raises ``InvalidTemplate``, ``MissingVariables`` (naming every missing value),
    ``UnsafeTemplate`` or ``RenderError`` -- all ``TemplateError``.
    """
    template = _compiled(source, html)
    missing, missing_token = start_collecting()
    locale_token = set_render_locale(resolve_locale(locale))
    try:
        text = template.render(context)
    except SecurityError as exc:
        raise UnsafeTemplate(f"template blocked by the sandbox: {exc}") from exc
    except Exception as exc:
        # A missing value is the likelier root cause of a failure further on.
        if missing:
            raise MissingVariables(missing) from exc
        raise RenderError(f"template could not be rendered: {exc}") from exc
    finally:
        reset_render_locale(locale_token)
        stop_collecting(missing_token)
    if missing:
        raise MissingVariables(missing)
    return text


def validate(source: str, *, html: bool = False) -> None:
    """Raise ``InvalidTemplate`` (with the line) if ``source`` cannot be compiled."""
    _compiled(source, html)


def template_variables(source: str) -> list[str]:
    """Every context name a template uses, sorted: "borrower.first_name", "invoiceNumber".

    Tags and ``{{ a.b }}`` lookups give dotted paths; a bare ``{{ name }}`` gives the
    name. Loop variables, ``{% set %}`` names and macros are not context names. (A name
    that is both a context variable and, elsewhere, a loop variable is listed with
    every path used under it.)
    """
    return list(_variables(source))


class TemplateCacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    max_size: int


def template_cache_info() -> TemplateCacheInfo:
    """Hits, misses and size of the compiled-template cache."""
    info = _compiled.cache_info()
    return TemplateCacheInfo(info.hits, info.misses, info.currsize, info.maxsize or 0)


def clear_template_cache() -> None:
    _compiled.cache_clear()
    _variables.cache_clear()


class _Sandbox(ImmutableSandboxedEnvironment):
    # Immutable: a template must not change the caller's context (``case.update(...)``),
    # which a campaign shares between recipients.
    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Context objects are dicts: ``case.items`` means the case's "items" field,
        # not the dict method Jinja would otherwise prefer.
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # The stock sandbox prints an empty string; a probe should fail loudly.
        raise SecurityError(f"{type(obj).__name__}.{attribute} is not accessible in templates")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        return super().call_binop(context, operator, left, right)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_power(base: Any, exponent: Any) -> None:
    if not (_is_int(base) and _is_int(exponent)) or exponent <= 0:
        return  # floats overflow on their own; negative exponents give floats
    # bit_length - 1 is a lower bound of log2(base): enough to stop 10 ** 10 ** 6.
    if max(abs(base).bit_length() - 1, 1) * exponent > _MAX_INTEGER_BITS:
        raise SecurityError(f"{base} ** {exponent} is too large")


def _check_product(left: Any, right: Any) -> None:
    if _is_int(left) and _is_int(right):
        if left.bit_length() + right.bit_length() > _MAX_INTEGER_BITS:
            raise SecurityError("product is too large")
        return
    for sequence, count in ((left, right), (right, left)):
        if (
            isinstance(sequence, str | list | tuple)
            and _is_int(count)
            and len(sequence) * count > _MAX_SEQUENCE_LENGTH
        ):
            raise SecurityError(f"repeating a value {count} times is too large")


@lru_cache(maxsize=2)
def _environment(html: bool) -> _Sandbox:
    formatting = ValueFormatting(plain_spaces=not html)
    env = _Sandbox(
        autoescape=html,
        undefined=MissingValue,
        finalize=formatting.finalize,
        extensions=[MergeTags],
        # Message bodies are sent as written: keep a final newline.
        keep_trailing_newline=True,
    )
    env.filters.update(formatting.filters())
    env.filters.update(PathLookups(env).filters())
    return env


@lru_cache(maxsize=COMPILED_CACHE_SIZE)
def _compiled(source: str, html: bool) -> jinja2.Template:
    env = _environment(html)
    tree = _checked_parse(env, source)
    tree = name_lookups(tree)
    tree.set_environment(env)
    try:
        return env.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:  # e.g. an unknown filter
        raise _invalid(exc, source) from None


@lru_cache(maxsize=256)
def _variables(source: str) -> tuple[str, ...]:
    env = _environment(False)
    tree = _checked_parse(env, source)
    context_names = meta.find_undeclared_variables(tree) - env.globals.keys()
    found: set[str] = set()
    _collect_paths(tree, context_names, found)
    return tuple(sorted(found))


def _checked_parse(env: _Sandbox, source: str) -> nodes.Template:
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _invalid(exc, source) from None
    for statement in tree.find_all(tuple(_UNSUPPORTED)):
        raise InvalidTemplate(
            f"{{% {_UNSUPPORTED[type(statement)]} %}} is not supported:"
            " message templates stand alone",
            statement.lineno,
            source,
        )
    for expression in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = _accessed_name(expression)
        if name is not None and name.startswith("_"):
            raise InvalidTemplate(
                f"{name!r} is not accessible in templates (names starting with '_' are private)",
                expression.lineno,
                source,
            )
    return tree


def _accessed_name(node: nodes.Node) -> str | None:
    """The attribute, constant key or filter name an expression reaches for."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Filter):
        return node.name
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value
    return None


def _invalid(exc: jinja2.TemplateSyntaxError, source: str) -> InvalidTemplate:
    return InvalidTemplate(exc.message or "invalid template", exc.lineno, source)


def _collect_paths(node: nodes.Node, context_names: set[str], found: set[str]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        path = dotted_path(node)
        if path is not None:
            if _root_name(node) in context_names:
                found.add(path)
            return
    elif isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name in context_names:
            found.add(node.name)
        return
    for child in node.iter_child_nodes():
        _collect_paths(child, context_names, found)


def _root_name(node: nodes.Node) -> str | None:
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        node = node.node
    return node.name if isinstance(node, nodes.Name) else None
