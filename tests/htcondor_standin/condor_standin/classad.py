"""A subset of the ClassAd language: values, expression trees, unparsing, ClassAd.

Parsing is in classad_parse.py, evaluation in classad_eval.py.

Unparsing follows HTCondor's classad::ClassAdUnParser (src/classad/sink.cpp): binary
operators are printed with one space on each side, unary operators as " !x", parentheses
as written, function arguments joined by "," and lists as "{ a,b }".  Old syntax (what
`condor_q -l` prints) writes =?= and =!=, keeps backslashes in strings as they are and
prints reals with %.16G; new syntax (inside JSON "\\/Expr(...)\\/") writes " is "/" isnt ",
escapes backslashes and prints reals with %1.15E.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union


class _Undefined:
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


class _Error:
    _instance: _Error | None = None

    def __new__(cls) -> _Error:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "error"


UNDEFINED = _Undefined()
ERROR = _Error()

Value = Union[bool, int, float, str, _Undefined, _Error, list[Any], "ClassAd"]


class ClassAdSyntaxError(ValueError):
    """The text is not a ClassAd expression."""


# ---------------------------------------------------------------- expression tree


class Expr:
    """Base class of expression nodes."""

    def unparse(self, old: bool = True) -> str:
        out: list[str] = []
        self._unparse(out, old)
        return "".join(out)

    def _unparse(self, out: list[str], old: bool) -> None:
        raise NotImplementedError

    def references(self) -> Iterator[str]:
        """Names of attributes this expression refers to (any scope)."""
        yield from ()


@dataclass
class Literal(Expr):
    value: Value

    def _unparse(self, out: list[str], old: bool) -> None:
        out.append(unparse_value(self.value, old))


@dataclass
class AttrRef(Expr):
    name: str
    base: Expr | None = None

    def _unparse(self, out: list[str], old: bool) -> None:
        if self.base is not None:
            self.base._unparse(out, old)
            out.append(".")
        out.append(self.name)

    def references(self) -> Iterator[str]:
        if self.base is None or (isinstance(self.base, AttrRef) and self.base.base is None \
                and self.base.name.upper() in ("MY", "TARGET")):
            yield self.name
        else:
            yield from self.base.references()


_BINARY_NEW = {"=?=": " is ", "=!=": " isnt ", "is": " is ", "isnt": " isnt "}
_BINARY_OLD = {"=?=": " =?= ", "=!=": " =!= ", "is": " =?= ", "isnt": " =!= "}


@dataclass
class BinaryOp(Expr):
    op: str
    left: Expr
    right: Expr

    def _unparse(self, out: list[str], old: bool) -> None:
        self.left._unparse(out, old)
        table = _BINARY_OLD if old else _BINARY_NEW
        out.append(table.get(self.op, f" {self.op} "))
        self.right._unparse(out, old)

    def references(self) -> Iterator[str]:
        yield from self.left.references()
        yield from self.right.references()


@dataclass
class UnaryOp(Expr):
    op: str
    operand: Expr

    def _unparse(self, out: list[str], old: bool) -> None:
        out.append(" " + self.op)
        self.operand._unparse(out, old)

    def references(self) -> Iterator[str]:
        yield from self.operand.references()


@dataclass
class Paren(Expr):
    inner: Expr

    def _unparse(self, out: list[str], old: bool) -> None:
        out.append("(")
        self.inner._unparse(out, old)
        out.append(")")

    def references(self) -> Iterator[str]:
        yield from self.inner.references()


@dataclass
class Ternary(Expr):
    cond: Expr
    then: Expr
    other: Expr

    def _unparse(self, out: list[str], old: bool) -> None:
        self.cond._unparse(out, old)
        out.append(" ? ")
        self.then._unparse(out, old)
        out.append(" : ")
        self.other._unparse(out, old)

    def references(self) -> Iterator[str]:
        for e in (self.cond, self.then, self.other):
            yield from e.references()


@dataclass
class Subscript(Expr):
    target: Expr
    index: Expr

    def _unparse(self, out: list[str], old: bool) -> None:
        self.target._unparse(out, old)
        out.append("[")
        self.index._unparse(out, old)
        out.append("]")

    def references(self) -> Iterator[str]:
        yield from self.target.references()
        yield from self.index.references()


@dataclass
class FuncCall(Expr):
    name: str
    args: list[Expr] = field(default_factory=list)

    def _unparse(self, out: list[str], old: bool) -> None:
        out.append(self.name + "(")
        for i, arg in enumerate(self.args):
            if i:
                out.append(",")
            arg._unparse(out, old)
        out.append(")")

    def references(self) -> Iterator[str]:
        for a in self.args:
            yield from a.references()


@dataclass
class ListExpr(Expr):
    items: list[Expr] = field(default_factory=list)

    def _unparse(self, out: list[str], old: bool) -> None:
        out.append("{ ")
        for i, item in enumerate(self.items):
            if i:
                out.append(",")
            item._unparse(out, old)
        out.append(" }")

    def references(self) -> Iterator[str]:
        for i in self.items:
            yield from i.references()


@dataclass
class RecordExpr(Expr):
    """A nested ClassAd literal such as `[ CEDAR = 1 ]`."""

    attrs: list[tuple[str, Expr]] = field(default_factory=list)

    def _unparse(self, out: list[str], old: bool) -> None:
        out.append("[ ")
        for i, (name, expr) in enumerate(self.attrs):
            if i:
                out.append("; ")
            out.append(name + " = ")
            expr._unparse(out, old)
        out.append(" ]")


# ---------------------------------------------------------------- values


def format_real(x: float, old: bool = True) -> str:
    if x == 0.0:
        return f"{x:.1f}"
    if math.isnan(x):
        return 'real("NaN")'
    if math.isinf(x):
        return 'real("-INF")' if x < 0 else 'real("INF")'
    if old:
        text = f"{x:.16G}"
        if not any(c in text for c in ".Ee"):
            text += ".0"
        return text
    return f"{x:1.15E}"


def quote_string(s: str, old: bool = True) -> str:
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif old:
            out.append(c)
        elif c == "\\":
            out.append("\\\\")
        elif c in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                        "\t": "\\t", "\v": "\\v"}[c])
        elif not c.isprintable():
            out.append("\\%03o" % (ord(c) & 0xFF))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def unparse_value(v: Value, old: bool = True) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return format_real(v, old)
    if isinstance(v, str):
        return quote_string(v, old)
    if v is UNDEFINED:
        return "undefined"
    if v is ERROR:
        return "error"
    if isinstance(v, list):
        return "{ " + ",".join(unparse_value(i, old) for i in v) + " }"
    if isinstance(v, ClassAd):
        return "[ " + "; ".join(f"{k} = {e.unparse(old)}" for k, e in v.items()) + " ]"
    raise TypeError(f"not a ClassAd value: {v!r}")


def to_expr(v: Value | Expr) -> Expr:
    if isinstance(v, Expr):
        return v
    if isinstance(v, list):
        return ListExpr([to_expr(i) for i in v])
    return Literal(v)


# ---------------------------------------------------------------- ClassAd


class ClassAd:
    """Attribute name -> expression, names case-insensitive, original spelling kept."""

    def __init__(self, attrs: Mapping[str, Value | Expr] | None = None) -> None:
        self._data: dict[str, tuple[str, Expr]] = {}
        for k, v in (attrs or {}).items():
            self[k] = v

    def __setitem__(self, name: str, value: Value | Expr) -> None:
        key = name.lower()
        old = self._data.get(key)
        self._data[key] = (old[0] if old else name, to_expr(value))

    def expr(self, name: str) -> Expr | None:
        item = self._data.get(name.lower())
        return item[1] if item else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._data

    def __delitem__(self, name: str) -> None:
        self._data.pop(name.lower(), None)

    def names(self) -> list[str]:
        return [v[0] for v in self._data.values()]

    def items(self) -> list[tuple[str, Expr]]:
        return list(self._data.values())

    def copy(self) -> ClassAd:
        ad = ClassAd()
        ad._data = dict(self._data)
        return ad

    def eval(self, name: str, target: ClassAd | None = None) -> Value:
        from .classad_eval import evaluate
        expr = self.expr(name)
        if expr is None:
            return UNDEFINED
        return evaluate(expr, self, target)

    def get(self, name: str, default: Value = None) -> Value:  # type: ignore[assignment]
        """The evaluated value, or `default` if the attribute is missing or undefined."""
        v = self.eval(name)
        return default if v is UNDEFINED else v

    def get_int(self, name: str, default: int = 0) -> int:
        v = self.eval(name)
        return int(v) if isinstance(v, (int, float)) else default

    def get_float(self, name: str, default: float = 0.0) -> float:
        v = self.eval(name)
        return float(v) if isinstance(v, (int, float)) else default

    def get_str(self, name: str, default: str = "") -> str:
        v = self.eval(name)
        return v if isinstance(v, str) else default

    def to_dict(self) -> dict[str, str]:
        """Attribute -> expression text in new syntax (lossless, for persistence)."""
        return {name: expr.unparse(old=False) for name, expr in self.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> ClassAd:
        from .classad_parse import parse
        ad = cls()
        for name, text in data.items():
            ad[name] = parse(text, old=False)
        return ad
