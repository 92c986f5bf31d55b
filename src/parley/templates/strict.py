"""Strict rendering: every missing variable is reported, by its dotted path, in one error.

Jinja's ``StrictUndefined`` stops at the first missing name and only knows the last
attribute ("first_name", not "borrower.first_name"). A supervisor fixing a template, or
an agent fixing a borrower record, needs the whole list. So:

- at compile time, each lookup chain rooted at a name (``borrower.first_name``,
  ``case["number"]``) is rewritten into a lookup that carries its dotted path;
- a missing value becomes a ``MissingValue`` that appends its path to the current
  render's list when it is printed, iterated or computed with, and rendering goes on;
- the renderer raises ``MissingVariables`` with the whole list afterwards.

Nothing is checked up front, so a render with every value present pays only for the
lookups themselves.

Rules for template authors: a key whose value is ``None`` counts as missing ("Dear
None" must never reach a borrower). Testing a missing value is allowed:
``{% if agent %}``, ``==`` / ``!=``, ``is defined`` and ``|default(...)`` see an empty
value and report nothing; every other use is reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any, Final

from jinja2 import Environment, Undefined, nodes
from jinja2.visitor import NodeTransformer

#: Paths reported by MissingValue during the current render (None outside a render).
_reported: ContextVar[list[str] | None] = ContextVar("parley_missing_variables", default=None)


def start_collecting() -> tuple[list[str], Token[list[str] | None]]:
    """Begin a render: returns the list that will receive missing paths and a reset token."""
    names: list[str] = []
    return names, _reported.set(names)


def stop_collecting(token: Token[list[str] | None]) -> None:
    _reported.reset(token)


class MissingValue(Undefined):
    """An absent value that knows its dotted path and reports itself when used."""

    __slots__ = ()

    @property
    def path(self) -> str:
        if self._undefined_name is not None:
            return str(self._undefined_name)
        return self._undefined_hint or "<unnamed value>"

    def _report(self) -> None:
        names = _reported.get()
        if names is not None:
            names.append(self.path)

    # Report and carry on (returning something inert) so one render finds every gap.
    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        self._report()
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = _fail_with_undefined_error
    __mul__ = __rmul__ = __div__ = __rdiv__ = _fail_with_undefined_error
    __truediv__ = __rtruediv__ = _fail_with_undefined_error
    __floordiv__ = __rfloordiv__ = _fail_with_undefined_error
    __mod__ = __rmod__ = _fail_with_undefined_error
    __pos__ = __neg__ = _fail_with_undefined_error
    __call__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = _fail_with_undefined_error
    __pow__ = __rpow__ = _fail_with_undefined_error
    # int(), float(): reported, then the TypeError is caught by the int/float filters
    # or turned into MissingVariables by the renderer.
    __int__ = __float__ = __complex__ = _fail_with_undefined_error

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return MissingValue(name=join_path(self.path, name))

    # Jinja declares it as the catch-all failure method; here it extends the path.
    def __getitem__(self, key: Any) -> MissingValue:  # type: ignore[override]
        return MissingValue(name=join_path(self.path, key))

    def __str__(self) -> str:
        self._report()
        return ""

    def __iter__(self) -> Iterator[Any]:
        self._report()
        return iter(())

    def __len__(self) -> int:
        self._report()
        return 0


def join_path(base: str, key: Any) -> str:
    """``base.key`` for identifier keys, ``base[key]`` otherwise."""
    if isinstance(key, str) and key.isidentifier():
        return f"{base}.{key}"
    return f"{base}[{key!r}]"


def dotted_path(node: nodes.Node) -> str | None:
    """``case.number`` for a lookup chain rooted at a name; None for anything else."""
    suffix: list[str | int] = []
    while True:
        if isinstance(node, nodes.Getattr):
            suffix.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str | int)
            and not isinstance(node.arg.value, bool)
        ):
            suffix.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            path = node.name
            for key in reversed(suffix):
                path = join_path(path, key)
            return path
        else:
            return None


class PathLookups:
    """Lookup functions the rewritten templates call, bound to one environment.

    Registered as filters under private names (``_parley_attr``...): compiled code
    calls filters directly, where a function call would go through the sandbox's
    call checks on every lookup. Templates cannot name them (names starting with "_"
    are rejected), and they only use the environment's sandboxed lookups anyway.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def filters(self) -> dict[str, Any]:
        return {
            _ATTR_FILTER: self.lookup_attr,
            _ITEM_FILTER: self.lookup_item,
            _NAME_FILTER: self.lookup_name,
        }

    def lookup_attr(self, obj: Any, name: str, path: str) -> Any:
        if isinstance(obj, Undefined):
            return MissingValue(name=path)
        value = self.environment.getattr(obj, name)
        if value is None or isinstance(value, Undefined):
            return MissingValue(name=path)
        return value

    def lookup_item(self, obj: Any, key: Any, path: str) -> Any:
        if isinstance(obj, Undefined):
            return MissingValue(name=path)
        value = self.environment.getitem(obj, key)
        if value is None or isinstance(value, Undefined):
            return MissingValue(name=path)
        return value

    @staticmethod
    def lookup_name(value: Any, name: str) -> Any:
        if value is None or (isinstance(value, Undefined) and not isinstance(value, MissingValue)):
            return MissingValue(name=name)
        return value


_ATTR_FILTER: Final = "_parley_attr"
_ITEM_FILTER: Final = "_parley_item"
_NAME_FILTER: Final = "_parley_name"


def name_lookups(template: nodes.Template) -> nodes.Template:
    """Rewrite ``template`` so every name and named lookup chain reports its own path."""
    result = _PathNaming().visit(template)
    assert isinstance(result, nodes.Template)
    return result


class _PathNaming(NodeTransformer):
    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        return self._lookup(node, _ATTR_FILTER, nodes.Const(node.attr, lineno=node.lineno))

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        return self._lookup(node, _ITEM_FILTER, node.arg)

    def _lookup(
        self, node: nodes.Getattr | nodes.Getitem, lookup: str, key: nodes.Expr
    ) -> nodes.Node:
        path = dotted_path(node)
        if path is None:
            # e.g. items[i] or (a or b).c: no stable name; plain Jinja lookup.
            self.generic_visit(node)
            return node
        # The chain's root name is part of the path: a missing or None root yields
        # "agent.name", not "agent".
        target = node.node if isinstance(node.node, nodes.Name) else self.visit(node.node)
        return _filter(lookup, target, [key, nodes.Const(path, lineno=node.lineno)], node.lineno)

    def visit_Call(self, node: nodes.Call) -> nodes.Node:
        # A called name (range, caller, a macro) is a function, not a value to check.
        if not isinstance(node.node, nodes.Name):
            node.node = self.visit(node.node)
        node.args = [self.visit(arg) for arg in node.args]
        node.kwargs = [self.visit(kwarg) for kwarg in node.kwargs]
        if node.dyn_args is not None:
            node.dyn_args = self.visit(node.dyn_args)
        if node.dyn_kwargs is not None:
            node.dyn_kwargs = self.visit(node.dyn_kwargs)
        return node

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.ctx != "load":
            return node
        name = nodes.Const(node.name, lineno=node.lineno)
        return _filter(_NAME_FILTER, node, [name], node.lineno)


def _filter(name: str, value: nodes.Expr, args: list[nodes.Expr], lineno: int) -> nodes.Filter:
    return nodes.Filter(value, name, args, [], None, None, lineno=lineno)
