"""The structures an answer parses into, and arithmetic on them that cannot explode.

Place: ``normalize -> lexer -> parse -> compare``; :mod:`parse` builds these nodes and :mod:`compare`
decides their equality. All nodes are frozen (hashable) so answers can be cached and de-duplicated.

* a sympy ``Expr`` -- numbers, expressions; markers are the symbols :data:`PCT` (percent),
  :data:`DEG` (degrees) and :data:`PM` (the sign of ``\\pm``), substituted at comparison time;
* :class:`Bracket` ``(a, b)`` / ``[a, b)`` (tuple or interval, decided when compared),
  :class:`SetOf` ``\\{..\\}``, :class:`ListOf` bare ``a, b, c``, :class:`Matrix`,
  :class:`Union` (``\\cup``), :class:`Rel` (``=``, ``<`` ... chains, ``\\in``),
  :class:`WithUnit`, :class:`Text`, :class:`BaseNum` (``1011_2``), :class:`Clock` (``12:00``),
  :class:`Ratio` (``3:4``).

The guarded constructors keep integer powers above ~20k bits, factorials above 2000 and constant
towers unevaluated, so hostile input (``9^9^9^9``) never computes a huge number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sympy as sp

_BIG_BITS = 20000

PCT = sp.Symbol("__pct__", positive=True)
DEG = sp.Symbol("__deg__", positive=True)
PM = sp.Symbol("__pm__")
MARKERS = (PCT, DEG, PM)


class ParseError(ValueError):
    pass


@dataclass(frozen=True)
class Bracket:
    open: str
    close: str
    items: tuple


@dataclass(frozen=True)
class SetOf:
    items: tuple


@dataclass(frozen=True)
class ListOf:
    items: tuple


@dataclass(frozen=True)
class Matrix:
    rows: tuple  # tuple of tuples


@dataclass(frozen=True)
class Union:
    parts: tuple


@dataclass(frozen=True)
class Rel:
    items: tuple   # operands
    ops: tuple     # "=", "<", "<=", ">", ">=", "!=", "in"


@dataclass(frozen=True)
class WithUnit:
    value: Any
    unit: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class BaseNum:
    digits: str
    base: int


@dataclass(frozen=True)
class Clock:
    seconds: int


@dataclass(frozen=True)
class Ratio:
    parts: tuple


def symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name)


def safe_pow(base: Any, exp: Any) -> Any:
    """``base**exp`` without computing astronomically large numbers."""
    if isinstance(base, sp.Expr) and isinstance(exp, sp.Expr):
        if base.is_Number and exp.is_Number:
            if exp.is_Integer:
                b = abs(base)
                if b not in (0, 1) and b.is_Rational:
                    bits = abs(int(exp)) * max(math.log2(max(abs(b.p), abs(b.q))), 1)
                    if bits > _BIG_BITS:
                        return sp.Pow(base, exp, evaluate=False)
            elif exp.is_Rational and abs(exp.p) > 10000:
                return sp.Pow(base, exp, evaluate=False)
            return sp.Pow(base, exp)
        if not exp.free_symbols and not exp.is_Number and exp.has(sp.Pow, sp.factorial):
            return sp.Pow(base, exp, evaluate=False)
        return sp.Pow(base, exp)
    raise ParseError("power of a non-expression")


def safe_factorial(x: Any) -> Any:
    if isinstance(x, sp.Expr) and x.is_Integer and (x > 2000 or x < 0):
        return sp.factorial(x, evaluate=False)
    if isinstance(x, sp.Expr) and not x.free_symbols and not x.is_Number:
        return sp.factorial(x, evaluate=False)
    return sp.factorial(x)


def arith(op: str, a: Any, b: Any) -> Any:
    """``a op b`` where either side may be a matrix (sum / product / scaling of matrices)."""
    if isinstance(a, Matrix) or isinstance(b, Matrix):
        ma = sp.ImmutableMatrix([[as_expr(c) for c in r] for r in a.rows]) if isinstance(a, Matrix) else as_expr(a)
        mb = sp.ImmutableMatrix([[as_expr(c) for c in r] for r in b.rows]) if isinstance(b, Matrix) else as_expr(b)
        try:
            res = {"+": lambda: ma + mb, "-": lambda: ma - mb, "*": lambda: ma * mb}[op]()
        except (sp.ShapeError, TypeError, KeyError) as err:
            raise ParseError(f"matrix arithmetic: {err}") from None
        if not isinstance(res, sp.MatrixBase):
            raise ParseError("matrix arithmetic gave a scalar")
        return Matrix(tuple(tuple(res.row(i)) for i in range(res.rows)))
    a, b = as_expr(a), as_expr(b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b


def as_expr(x: Any) -> sp.Expr:
    if isinstance(x, sp.Basic):
        return x
    if isinstance(x, WithUnit):
        return as_expr(x.value)
    raise ParseError(f"expected an expression, got {type(x).__name__}")
