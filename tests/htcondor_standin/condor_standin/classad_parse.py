"""Parser for the ClassAd expression subset (the grammar of src/classad/source.cpp:
?: || && | ^ & (== != =?= =!= is isnt) (< <= > >=) (<< >>) (+ -) (* / %) unary, postfix)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .classad import (
    ERROR,
    UNDEFINED,
    AttrRef,
    BinaryOp,
    ClassAdSyntaxError,
    Expr,
    FuncCall,
    ListExpr,
    Literal,
    Paren,
    RecordExpr,
    Subscript,
    Ternary,
    UnaryOp,
    Value,
)

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<real>(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)
  | (?P<int>0[xX][0-9a-fA-F]+|\d+)
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>=\?=|=!=|==|!=|<=|>=|&&|\|\||<<|>>|[-+*/%!<>(){}\[\],;.?:=|&^~])
""", re.VERBOSE)


@dataclass
class _Tok:
    kind: str  # "num", "str", "id", "op", "end"
    text: str
    value: Value = None  # type: ignore[assignment]


def _lex(text: str, old: bool) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            buf: list[str] = []
            while True:
                if j >= n:
                    raise ClassAdSyntaxError("unterminated string")
                ch = text[j]
                if ch == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    if nxt == '"':
                        buf.append('"')
                        j += 2
                        continue
                    if not old:
                        esc = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "a": "\a", "b": "\b",
                               "f": "\f", "v": "\v", "'": "'"}
                        if nxt in esc:
                            buf.append(esc[nxt])
                            j += 2
                            continue
                    buf.append(ch)
                    j += 1
                    continue
                if ch == '"':
                    break
                buf.append(ch)
                j += 1
            toks.append(_Tok("str", text[i:j + 1], "".join(buf)))
            i = j + 1
            continue
        if c == "'":
            j = text.find("'", i + 1)
            if j < 0:
                raise ClassAdSyntaxError("unterminated quoted attribute name")
            toks.append(_Tok("id", text[i + 1:j]))
            i = j + 1
            continue
        m = _TOKEN_RE.match(text, i)
        if not m:
            raise ClassAdSyntaxError(f"unexpected character {c!r}")
        kind = m.lastgroup
        tok = m.group()
        i = m.end()
        if kind == "ws":
            continue
        if kind == "real":
            toks.append(_Tok("num", tok, float(tok)))
        elif kind == "int":
            toks.append(_Tok("num", tok, int(tok, 0) if tok.lower().startswith("0x") else int(tok)))
        elif kind == "id":
            toks.append(_Tok("id", tok))
        else:
            toks.append(_Tok("op", tok))
    toks.append(_Tok("end", ""))
    return toks


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, old: bool) -> None:
        self.toks = _lex(text, old)
        self.pos = 0

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if (tok.kind == "op" and tok.text == text) or \
                (tok.kind == "id" and tok.text.lower() == text and text in ("is", "isnt")):
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise ClassAdSyntaxError(f"expected {text!r} near {self.peek().text!r}")

    def parse(self) -> Expr:
        expr = self.ternary()
        if self.peek().kind != "end":
            raise ClassAdSyntaxError(f"unexpected {self.peek().text!r}")
        return expr

    def ternary(self) -> Expr:
        cond = self.logical_or()
        if self.accept("?"):
            if self.accept(":"):
                return BinaryOp("?:", cond, self.ternary())
            then = self.ternary()
            self.expect(":")
            return Ternary(cond, then, self.ternary())
        return cond

    def _binary(self, ops: tuple[str, ...], sub: str) -> Expr:
        operand: Callable[[], Expr] = getattr(self, sub)
        left = operand()
        while True:
            for op in ops:
                if self.accept(op):
                    left = BinaryOp(op, left, operand())
                    break
            else:
                return left

    def logical_or(self) -> Expr:
        return self._binary(("||",), "logical_and")

    def logical_and(self) -> Expr:
        return self._binary(("&&",), "bit_or")

    def bit_or(self) -> Expr:
        return self._binary(("|",), "bit_xor")

    def bit_xor(self) -> Expr:
        return self._binary(("^",), "bit_and")

    def bit_and(self) -> Expr:
        return self._binary(("&",), "equality")

    def equality(self) -> Expr:
        return self._binary(("==", "!=", "=?=", "=!=", "is", "isnt"), "relational")

    def relational(self) -> Expr:
        return self._binary(("<=", ">=", "<", ">"), "shift")

    def shift(self) -> Expr:
        return self._binary(("<<", ">>"), "additive")

    def additive(self) -> Expr:
        return self._binary(("+", "-"), "multiplicative")

    def multiplicative(self) -> Expr:
        return self._binary(("*", "/", "%"), "unary")

    def unary(self) -> Expr:
        for op in ("!", "-", "+", "~"):
            if self.accept(op):
                return UnaryOp(op, self.unary())
        return self.postfix()

    def postfix(self) -> Expr:
        expr = self.primary()
        while True:
            if self.accept("["):
                idx = self.ternary()
                self.expect("]")
                expr = Subscript(expr, idx)
            elif self.accept("."):
                tok = self.take()
                if tok.kind != "id":
                    raise ClassAdSyntaxError("expected attribute name after '.'")
                expr = AttrRef(tok.text, expr)
            else:
                return expr

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind == "num" or tok.kind == "str":
            return Literal(tok.value)
        if tok.kind == "id":
            low = tok.text.lower()
            if low == "true":
                return Literal(True)
            if low == "false":
                return Literal(False)
            if low == "undefined":
                return Literal(UNDEFINED)
            if low == "error":
                return Literal(ERROR)
            if self.accept("("):
                args: list[Expr] = []
                if not self.accept(")"):
                    while True:
                        args.append(self.ternary())
                        if self.accept(")"):
                            break
                        self.expect(",")
                return FuncCall(tok.text, args)
            return AttrRef(tok.text)
        if tok.kind == "op":
            if tok.text == "(":
                inner = self.ternary()
                self.expect(")")
                return Paren(inner)
            if tok.text == "{":
                items: list[Expr] = []
                if not self.accept("}"):
                    while True:
                        items.append(self.ternary())
                        if self.accept("}"):
                            break
                        self.expect(",")
                return ListExpr(items)
            if tok.text == "[":
                attrs: list[tuple[str, Expr]] = []
                while not self.accept("]"):
                    name = self.take()
                    if name.kind != "id":
                        raise ClassAdSyntaxError("expected attribute name in nested ad")
                    self.expect("=")
                    attrs.append((name.text, self.ternary()))
                    if not self.accept(";"):
                        self.expect("]")
                        break
                return RecordExpr(attrs)
        raise ClassAdSyntaxError(f"unexpected {tok.text!r}")


def parse(text: str, old: bool = True) -> Expr:
    """Parse one expression.  `old` = HTCondor's old-ClassAd string rules (only \\" escapes)."""
    if not text.strip():
        raise ClassAdSyntaxError("empty expression")
    return _Parser(text, old).parse()
