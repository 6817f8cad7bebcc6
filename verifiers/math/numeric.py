"""Numeric evaluation for the comparison: 40-digit values, sample points, size guards.

Place: ``reading -> compare`` (used by :mod:`compare` and :mod:`sets`). Expressions with free
symbols are compared at fixed irrational-looking points; power towers and factorials too large to
evaluate are recognised from their shape first, so an answer like ``10^{10^{10}}`` cannot stall
the worker.
"""

from __future__ import annotations

import math

import sympy as sp

from verifiers.math.nodes import MARKERS

PREC = 40
_EXACT_TOL = sp.Float("1e-15", PREC)
POINTS = (sp.Rational(731, 1000), sp.Rational(1379, 1000), sp.Rational(-613, 1000),
           sp.Rational(2417, 1000), sp.Rational(-1813, 1000), sp.Rational(1931, 1000),
           sp.Rational(3163, 1000), sp.Rational(571, 1000))
SYMBOL_SHIFT = sp.Rational(317, 1000)
HUGE_LOG10 = 1e5


def free(x: sp.Expr) -> set:
    return {s for s in x.free_symbols if s not in MARKERS}



def point(syms: list, k: int) -> dict:
    n = len(POINTS)
    return {s: POINTS[(k + i) % n] + i * SYMBOL_SHIFT for i, s in enumerate(syms)}


def log10_size(expr: sp.Expr) -> float:
    """Rough upper bound of log10 |value| of a constant power tower, without evaluating it."""
    if isinstance(expr, sp.Pow) and expr.base.is_number and expr.exp.is_number:
        base = expr.base
        try:
            lb = abs(math.log10(abs(complex(base.evalf(15))))) if not base.has(sp.Pow) else log10_size(base)
        except (TypeError, ValueError, OverflowError):
            return math.inf
        le = log10_size(expr.exp)
        if le > 300:
            return math.inf
        try:
            e = abs(float(expr.exp.evalf(15))) if le < 300 else math.inf
        except (TypeError, ValueError, OverflowError):
            return math.inf
        return e * max(lb, 1e-3)
    if isinstance(expr, sp.factorial) and expr.args[0].is_number:
        try:
            n = float(expr.args[0].evalf(15))
        except (TypeError, ValueError, OverflowError):
            return math.inf
        return n * math.log10(max(n, 2))
    if isinstance(expr, sp.Integer):
        return len(str(abs(expr.p)))
    best = 0.0
    for a in expr.args:
        if isinstance(a, sp.Expr):
            best = max(best, log10_size(a))
    return best


def too_big(expr: sp.Expr) -> bool:
    return expr.has(sp.Pow, sp.factorial) and log10_size(expr) > HUGE_LOG10


def num(expr: sp.Expr, subs: dict | None = None) -> sp.Expr | None:
    if too_big(expr):
        return None  # astronomically large: only structural equality can decide
    try:
        e = expr.subs(subs) if subs else expr
        v = e.evalf(PREC)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, RecursionError, AttributeError):
        return None
    if not v.is_number or v.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        return None
    return v


def is_real(v: sp.Expr) -> bool:
    return bool(abs(sp.im(v)) <= sp.Float("1e-25") * max(1, abs(sp.re(v))))


def close(a: sp.Expr, b: sp.Expr, tol: sp.Float) -> bool:
    diff = abs(a - b)
    scale = max(abs(a), abs(b))
    return bool(diff <= tol * scale or diff <= sp.Float("1e-30"))


def proportional(a: sp.Expr, b: sp.Expr, tol: sp.Float, sign: int) -> bool:
    """a == c*b for a constant c != 0 (c > 0 when sign == 1), checked at sample points."""
    syms = sorted(free(a) | free(b), key=lambda s: s.name)
    if not syms:
        return False
    ratios = []
    for k in range(len(POINTS)):
        subs = point(syms, k)
        va, vb = num(a, subs), num(b, subs)
        if va is None or vb is None:
            continue
        if abs(vb) < 1e-30 or abs(va) < 1e-30:
            if abs(vb) < 1e-30 and abs(va) < 1e-30:
                continue
            return False
        ratios.append(va / vb)
    if len(ratios) < 2:
        return False
    r0 = ratios[0]
    if sign == 1 and (abs(sp.im(r0)) > 1e-20 or sp.re(r0) <= 0):
        return False
    return all(close(r, r0, tol) for r in ratios[1:])
