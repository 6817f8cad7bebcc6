"""Sets, intervals and relations as sympy sets: what an interval, a union or an inequality chain means.

Place: ``reading -> compare``; :func:`verifiers.math.compare.equal` decides with these when one
side is a set or a relation.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from verifiers.math.nodes import Bracket, Rel, SetOf, Union
from verifiers.math.numeric import free, proportional


def to_set(node: Any) -> sp.Set | None:
    """An interval / union / set of numbers as a sympy set (None if it is not one)."""
    if isinstance(node, Bracket) and len(node.items) == 2 and all(isinstance(i, sp.Expr) for i in node.items):
        a, b = node.items
        if free(a) or free(b):
            return None
        try:
            return sp.Interval(a, b, node.open == "(", node.close == ")")
        except (TypeError, ValueError):
            return None
    if isinstance(node, Union):
        parts = [to_set(x) for x in node.parts]
        return None if any(x is None for x in parts) else sp.Union(*parts)
    if isinstance(node, SetOf) and all(isinstance(i, sp.Expr) and not free(i) for i in node.items):
        return sp.FiniteSet(*node.items)
    if isinstance(node, sp.Set):
        return node  # \emptyset, \mathbb{R}
    return None


def rel_to_set(rel: Rel) -> sp.Set | None:
    """Solution set over the reals of a univariate inequality chain (``1 \\le |z| < 3``)."""
    if any(o in ("=", "in") for o in rel.ops):
        return None
    if not all(isinstance(i, sp.Expr) for i in rel.items):
        return None
    funcs = [i for i in rel.items if isinstance(i, sp.core.function.AppliedUndef)]
    if len(funcs) == 1:
        # 0 < f(x) < 1: the function value is the unknown
        unknown = sp.Symbol("__unknown__")
        rel = Rel(tuple(unknown if i is funcs[0] else i for i in rel.items), rel.ops)
    syms = set().union(*[free(i) for i in rel.items])
    if len(syms) != 1:
        return None
    x = next(iter(syms))
    result: sp.Set = sp.S.Reals
    for (a, b), op in zip(zip(rel.items, rel.items[1:]), rel.ops):
        cond = {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge, "!=": sp.Ne}[op](a, b)
        xr = sp.Symbol(x.name, real=True)
        sol = sp.solveset(cond.subs(x, xr), xr, sp.S.Reals)
        result = sp.Intersection(result, sol)
    return result


def sets_equal(a: sp.Set, b: sp.Set) -> bool:
    if a == b:
        return True
    try:
        diff = sp.Union(sp.Complement(a, b), sp.Complement(b, a))
        return bool(diff.is_empty) or diff == sp.S.EmptySet
    except (TypeError, ValueError, NotImplementedError):
        return False


def rel_parts(rel: Rel) -> list[tuple[sp.Expr, str]]:
    """Binary relations of a chain as ``(lhs - rhs, op)`` with op in {=, !=, >, >=}."""
    out = []
    for (a, b), op in zip(zip(rel.items, rel.items[1:]), rel.ops):
        a, b = sp.sympify(a), sp.sympify(b)
        if op in ("<", "<="):
            out.append((b - a, ">" if op == "<" else ">="))
        else:
            out.append((a - b, op))
    return out


def rel_pair_equal(a: tuple, b: tuple, tol: sp.Float) -> bool:
    (ea, oa), (eb, ob) = a, b
    if oa != ob:
        return False
    sign = 0 if oa in ("=", "!=") else 1
    return proportional(ea, eb, tol, sign)
