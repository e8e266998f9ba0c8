"""Evaluation of the ClassAd expression subset: literals, attribute references with
optional MY./TARGET., == != =?= =!= < <= > >= && || ! + - * / %, ?:, lists, subscripts and a
few functions, with ClassAd's undefined/error semantics (string == is case-insensitive)."""

from __future__ import annotations

import math
import re
import time

from .classad import (
    ERROR,
    UNDEFINED,
    AttrRef,
    BinaryOp,
    ClassAd,
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
    unparse_value,
)


class _Ctx:
    def __init__(self, my: ClassAd | None, target: ClassAd | None) -> None:
        self.my = my
        self.target = target
        self.depth = 0


def evaluate(expr: Expr, my: ClassAd | None = None, target: ClassAd | None = None) -> Value:
    return _eval(expr, _Ctx(my, target))


def _lookup(ad: ClassAd | None, name: str, ctx: _Ctx, swap: bool) -> Value:
    if ad is None:
        return UNDEFINED
    sub = ad.expr(name)
    if sub is None:
        return UNDEFINED
    if ctx.depth > 50:
        return ERROR
    inner = _Ctx(ctx.target, ctx.my) if swap else _Ctx(ctx.my, ctx.target)
    inner.depth = ctx.depth + 1
    return _eval(sub, inner)


def _eval(expr: Expr, ctx: _Ctx) -> Value:
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Paren):
        return _eval(expr.inner, ctx)
    if isinstance(expr, AttrRef):
        return _eval_ref(expr, ctx)
    if isinstance(expr, ListExpr):
        return [_eval(i, ctx) for i in expr.items]
    if isinstance(expr, RecordExpr):
        return ClassAd({k: v for k, v in expr.attrs})
    if isinstance(expr, UnaryOp):
        return _eval_unary(expr.op, _eval(expr.operand, ctx))
    if isinstance(expr, BinaryOp):
        return _eval_binary(expr, ctx)
    if isinstance(expr, Ternary):
        c = _eval(expr.cond, ctx)
        b = _truth(c)
        if b is None:
            return c if c is UNDEFINED else ERROR
        return _eval(expr.then if b else expr.other, ctx)
    if isinstance(expr, Subscript):
        seq = _eval(expr.target, ctx)
        idx = _eval(expr.index, ctx)
        if isinstance(seq, list) and isinstance(idx, int) and not isinstance(idx, bool):
            return seq[idx] if 0 <= idx < len(seq) else ERROR
        if isinstance(seq, ClassAd) and isinstance(idx, str):
            return seq.eval(idx)
        return UNDEFINED if UNDEFINED in (seq, idx) else ERROR
    if isinstance(expr, FuncCall):
        return _call(expr.name.lower(), [_eval(a, ctx) for a in expr.args])
    return ERROR


def _eval_ref(expr: AttrRef, ctx: _Ctx) -> Value:
    if expr.base is None:
        v = _lookup(ctx.my, expr.name, ctx, swap=False)
        if v is UNDEFINED and ctx.my is not None and expr.name not in ctx.my:
            v = _lookup(ctx.target, expr.name, ctx, swap=True)
        return v
    if isinstance(expr.base, AttrRef) and expr.base.base is None:
        scope = expr.base.name.upper()
        if scope == "MY":
            return _lookup(ctx.my, expr.name, ctx, swap=False)
        if scope == "TARGET":
            return _lookup(ctx.target, expr.name, ctx, swap=True)
    base = _eval(expr.base, ctx)
    if isinstance(base, ClassAd):
        return base.eval(expr.name)
    return UNDEFINED if base is UNDEFINED else ERROR


def _truth(v: Value) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    return None


def _is_num(v: Value) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eval_unary(op: str, v: Value) -> Value:
    if v is UNDEFINED or v is ERROR:
        return v
    if op == "!":
        b = _truth(v)
        return ERROR if b is None else (not b)
    if op in "-+" and _is_num(v):
        return -v if op == "-" else v  # type: ignore[operator]
    if op == "~" and isinstance(v, int) and not isinstance(v, bool):
        return ~v
    return ERROR


def _identical(a: Value, b: Value) -> bool:
    if type(a) is not type(b):
        if _is_num(a) and _is_num(b):
            return False
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b, strict=False))
    return a == b


def _eval_binary(expr: BinaryOp, ctx: _Ctx) -> Value:
    op = expr.op
    if op in ("&&", "||"):
        left = _eval(expr.left, ctx)
        lb = _truth(left)
        if left is ERROR or (lb is None and left is not UNDEFINED):
            return ERROR
        if op == "&&" and lb is False:
            return False
        if op == "||" and lb is True:
            return True
        right = _eval(expr.right, ctx)
        rb = _truth(right)
        if right is ERROR or (rb is None and right is not UNDEFINED):
            return ERROR
        if op == "&&":
            if rb is False:
                return False
            return UNDEFINED if UNDEFINED in (left, right) else True
        if rb is True:
            return True
        return UNDEFINED if UNDEFINED in (left, right) else False
    left = _eval(expr.left, ctx)
    right = _eval(expr.right, ctx)
    if op in ("=?=", "is"):
        return _identical(left, right)
    if op in ("=!=", "isnt"):
        return not _identical(left, right)
    if op == "?:":
        return right if left is UNDEFINED else left
    if left is ERROR or right is ERROR:
        return ERROR
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return _compare(op, left, right)
    return _arith(op, left, right)


def _compare(op: str, a: Value, b: Value) -> Value:
    if isinstance(a, bool) and isinstance(b, bool):
        a, b = int(a), int(b)
    elif isinstance(a, bool) or isinstance(b, bool):
        if _is_num(a) or _is_num(b):
            a, b = float(a), float(b)  # type: ignore[arg-type]
        else:
            return ERROR
    if isinstance(a, str) and isinstance(b, str):
        a, b = a.lower(), b.lower()
    elif isinstance(a, str) or isinstance(b, str) or not (_is_num(a) and _is_num(b)):
        return ERROR
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b  # type: ignore[operator]
    if op == "<=":
        return a <= b  # type: ignore[operator]
    if op == ">":
        return a > b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]


def _arith(op: str, a: Value, b: Value) -> Value:
    if isinstance(a, bool):
        a = int(a)
    if isinstance(b, bool):
        b = int(b)
    if not (_is_num(a) and _is_num(b)):
        return ERROR
    x, y = a, b
    if op == "+":
        return x + y  # type: ignore[operator]
    if op == "-":
        return x - y  # type: ignore[operator]
    if op == "*":
        return x * y  # type: ignore[operator]
    if op == "/":
        if y == 0:
            return ERROR
        if isinstance(x, int) and isinstance(y, int):
            q = abs(x) // abs(y)
            return q if (x >= 0) == (y >= 0) else -q
        return x / y  # type: ignore[operator]
    if op == "%":
        if y == 0 or not (isinstance(x, int) and isinstance(y, int)):
            return ERROR
        return int(math.fmod(x, y))
    return ERROR


def _flatten_numbers(args: list[Value]) -> list[Value]:
    if len(args) == 1 and isinstance(args[0], list):
        return list(args[0])
    return args


def _version_tuple(s: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", s)[:3])


def _call(name: str, args: list[Value]) -> Value:
    if name == "isundefined":
        return len(args) == 1 and args[0] is UNDEFINED
    if name == "iserror":
        return len(args) == 1 and args[0] is ERROR
    if name == "isstring":
        return len(args) == 1 and isinstance(args[0], str)
    if name == "isinteger":
        return len(args) == 1 and isinstance(args[0], int) and not isinstance(args[0], bool)
    if name == "isboolean":
        return len(args) == 1 and isinstance(args[0], bool)
    if name == "ifthenelse" and len(args) == 3:
        b = _truth(args[0])
        if b is None:
            return args[0] if args[0] is UNDEFINED else ERROR
        return args[1] if b else args[2]
    if name in ("max", "min"):
        nums = _flatten_numbers(args)
        if any(v is UNDEFINED for v in nums):
            return UNDEFINED
        numbers = [v for v in nums if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers or len(numbers) != len(nums):
            return ERROR
        best = max(numbers) if name == "max" else min(numbers)
        return float(best) if any(isinstance(v, float) for v in numbers) else best
    if name == "size" and len(args) == 1:
        v = args[0]
        if isinstance(v, (str, list)):
            return len(v)
        return UNDEFINED if v is UNDEFINED else ERROR
    if name in ("int", "real", "string") and len(args) == 1:
        v = args[0]
        if v is UNDEFINED or v is ERROR:
            return v
        try:
            if name == "int":
                return int(float(v)) if isinstance(v, str) else int(v)  # type: ignore[arg-type]
            if name == "real":
                return float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return ERROR
        return v if isinstance(v, str) else unparse_value(v)
    if name == "strcat":
        if any(v is UNDEFINED for v in args):
            return UNDEFINED
        return "".join(v if isinstance(v, str) else unparse_value(v) for v in args)
    if name in ("tolower", "toupper") and len(args) == 1 and isinstance(args[0], str):
        return args[0].lower() if name == "tolower" else args[0].upper()
    if name == "split" and args and isinstance(args[0], str):
        seps = args[1] if len(args) > 1 and isinstance(args[1], str) else " ,"
        return [p for p in re.split("[" + re.escape(seps) + "]+", args[0]) if p]
    if name in ("versionge", "versionle", "versiongt", "versionlt", "versioneq") and len(args) == 2:
        if not all(isinstance(a, str) for a in args):
            return UNDEFINED if UNDEFINED in args else ERROR
        va, vb = _version_tuple(str(args[0])), _version_tuple(str(args[1]))
        return {"versionge": va >= vb, "versionle": va <= vb, "versiongt": va > vb,
                "versionlt": va < vb, "versioneq": va == vb}[name]
    if name in ("stringlistmember", "stringlistimember") and len(args) >= 2:
        if not (isinstance(args[0], str) and isinstance(args[1], str)):
            return UNDEFINED if UNDEFINED in args else ERROR
        items = [p.strip() for p in args[1].split(",")]
        if name == "stringlistimember":
            return args[0].lower() in (i.lower() for i in items)
        return args[0] in items
    if name == "time" and not args:
        return int(time.time())
    if name in ("floor", "ceiling") and len(args) == 1:  # Integer of a number
        v = args[0]
        if v is UNDEFINED:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return ERROR
        return math.floor(v) if name == "floor" else math.ceil(v)
    return ERROR
