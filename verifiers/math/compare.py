"""Equivalence of two parsed answers under a :class:`~verifiers.math.policy.Policy`.

Place: ``reading -> **compare**``; runs inside the guarded worker process (see :mod:`guard`)
because sympy work is unbounded in general.

Order of checks for two expressions: structural equality; then, without free symbols, a
40-digit numeric comparison (exact answers must agree to 1e-15 relative, i.e. exactly up to
evaluation noise; ``rel_tol`` when a decimal was written; an integer reference needs an
integer-valued prediction); with free symbols, evaluation at five fixed irrational-looking points
(positive and negative) with the same tolerances, and ``simplify(a - b) == 0`` only when the
points cannot be evaluated (unknown functions). Structures are compared recursively: tuples and
matrices in order, sets and bare lists as multisets, intervals with their end types, equations up
to a non-zero factor, inequalities up to a positive factor (or by their solution sets).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import sympy as sp

from verifiers.math.nodes import (DEG, MARKERS, PCT, PM, BaseNum, Bracket, Clock, ListOf, Matrix,
                                  Ratio, Rel, SetOf, Text, Union, WithUnit)
from verifiers.math.numeric import POINTS, PREC, close, free, is_real, num, point, too_big
from verifiers.math.policy import Policy
from verifiers.math.reading import Reading
from verifiers.math.sets import rel_pair_equal, rel_parts, rel_to_set, sets_equal, to_set
from verifiers.math.units import convert_factor

_EXACT_TOL = sp.Float("1e-15", PREC)


class Ctx:
    """Per-comparison context: policy and what each side showed of its precision."""

    def __init__(self, policy: Policy, gold: Reading, pred: Reading) -> None:
        self.policy = policy
        self.gold = gold
        self.pred = pred

    @property
    def tol(self) -> sp.Float:
        if self.gold.decimal or self.pred.decimal:
            return sp.Float(max(self.policy.rel_tol, 1e-15), PREC)
        return _EXACT_TOL


def readings_equal(gold: Reading, pred: Reading, policy: Policy) -> bool:
    return equal(gold.node, pred.node, Ctx(policy, gold, pred))


# -- structure -------------------------------------------------------------------------------------
def _is_name(x: Any) -> bool:
    """Left side of an assignment: x, x_1, f(x), AB, NO/BO, |AB|, (p, q), A:B."""
    if isinstance(x, sp.Symbol) and x not in MARKERS:
        return True
    if isinstance(x, sp.core.function.AppliedUndef):
        return True
    if isinstance(x, sp.Abs) and _is_name(x.args[0]):
        return True
    if isinstance(x, sp.Mul) and len(x.args) <= 4 and all(
            isinstance(a, sp.Symbol) or (isinstance(a, sp.Pow) and isinstance(a.base, sp.Symbol)
                                         and a.exp == -1) for a in x.args):
        return True
    if isinstance(x, (Bracket, Ratio)):
        items = x.items if isinstance(x, Bracket) else x.parts
        return all(isinstance(i, sp.Basic) and _is_name(i) for i in items)
    return False


def unwrap(node: Any) -> Any:
    """Strip assignments (``x = 3`` -> 3, ``z = 1+1 = 2`` -> 2, ``x \\in S`` -> S, a numeric chain
    ``\\frac12 = 0.5`` -> 0.5, ``x = \\frac13 \\approx 0.33`` -> 1/3) and expand ``\\pm`` into a
    two-element list."""
    if isinstance(node, Rel):
        ops, items = node.ops, node.items
        if "~" in ops:
            cut = ops.index("~")
            if cut == 0:
                return unwrap(items[1] if _is_name(items[0]) else items[0])
            return unwrap(Rel(items[:cut + 1], ops[:cut]))
        if all(o == "=" for o in ops):
            last = items[-1]
            numeric = all(isinstance(i, sp.Expr) and not free(i) for i in items)
            if len(items) > 2 or _is_name(items[0]) or numeric:
                return unwrap(last)
        if ops == ("in",) and _is_name(items[0]):
            return unwrap(items[1])
        return node
    if isinstance(node, sp.Expr) and node.has(PM):
        plus, minus = node.subs(PM, 1), node.subs(PM, -1)
        return ListOf((plus, minus))
    if isinstance(node, ListOf):
        grouped = _group_assignments(node)
        if grouped is not None:
            return grouped
        flat: list = []
        for it in node.items:
            u = unwrap(it)
            if isinstance(u, ListOf):
                flat.extend(u.items)
            else:
                flat.append(u)
        return ListOf(tuple(flat))
    return node


def _group_assignments(node: ListOf) -> ListOf | None:
    """``p=5, q=2; p=7, q=2`` -> ``(5, 2), (7, 2)``: names repeating with a period k > 1."""
    names = []
    for it in node.items:
        if not (isinstance(it, Rel) and it.ops == ("=",) and _is_name(it.items[0])):
            return None
        names.append(it.items[0])
    k = len(dict.fromkeys(names))
    if k < 2 or k == len(names) or len(names) % k or any(names[i] != names[i % k] for i in range(len(names))):
        return None
    values = [it.items[1] for it in node.items]
    return ListOf(tuple(Bracket("(", ")", tuple(values[i:i + k])) for i in range(0, len(values), k)))


def _names(node: Any) -> tuple | None:
    if isinstance(node, Rel) and node.ops == ("=",) and _is_name(node.items[0]):
        return (node.items[0],)
    return None


def equal(g: Any, p: Any, ctx: Ctx) -> bool:
    if g == p and not isinstance(g, Text):
        return True
    # assignment names must agree when strict and both sides name them
    if ctx.policy.strict_names:
        ng, np_ = _names(g), _names(p)
        if ng and np_ and ng != np_:
            return False
    # a list of name=value pairs on both sides: compare as a mapping when the names agree
    if isinstance(g, ListOf) and isinstance(p, ListOf):
        mg, mp = _mapping(g), _mapping(p)
        if mg is not None and mp is not None and set(mg) == set(mp):
            return all(equal(mg[k], mp[k], ctx) for k in mg)
    if _is_equation(g) and _is_equation(p) and _rel_equal(g, p, ctx):
        return True  # y = -x/2 + 3/4 and 2x + 4y - 3 = 0 are the same line
    g, p = unwrap(g), unwrap(p)
    if isinstance(g, Text) or isinstance(p, Text):
        return isinstance(g, Text) and isinstance(p, Text) and g.text == p.text
    if isinstance(g, WithUnit) or isinstance(p, WithUnit):
        return _unit_equal(g, p, ctx)
    if isinstance(g, ListOf) and len(g.items) == 1:
        g = g.items[0]
    if isinstance(p, ListOf) and len(p.items) == 1:
        p = p.items[0]
    if isinstance(g, (ListOf, SetOf)) or isinstance(p, (ListOf, SetOf)):
        return _collection_equal(g, p, ctx)
    if isinstance(g, Matrix) or isinstance(p, Matrix):
        return _matrix_equal(g, p, ctx)
    if isinstance(g, (Union, sp.Set)) or isinstance(p, (Union, sp.Set)):
        return _set_equal(g, p, ctx)  # \mathbb{R} = (-\infty, \infty), \emptyset = \{\}
    if isinstance(g, Bracket) and isinstance(p, Bracket):
        return _bracket_equal(g, p, ctx)
    if isinstance(g, Rel) or isinstance(p, Rel):
        return _rel_equal(g, p, ctx)
    if isinstance(g, Bracket) or isinstance(p, Bracket):
        return False
    if isinstance(g, Clock) or isinstance(p, Clock):
        return isinstance(g, Clock) and isinstance(p, Clock) and g.seconds == p.seconds
    if isinstance(g, Ratio) or isinstance(p, Ratio):
        return _ratio_equal(g, p, ctx)
    if isinstance(g, BaseNum) or isinstance(p, BaseNum):
        return _base_equal(g, p)
    if isinstance(g, sp.Basic) and isinstance(p, sp.Basic):
        return scalar_equal(g, p, ctx)
    return False


def _is_equation(x: Any) -> bool:
    return isinstance(x, Rel) and x.ops == ("=",) and all(isinstance(i, sp.Expr) for i in x.items)


def _mapping(node: ListOf) -> dict | None:
    out = {}
    for it in node.items:
        if not (isinstance(it, Rel) and it.ops == ("=",) and _is_name(it.items[0])):
            return None
        out[it.items[0]] = it.items[1]
    return out if len(out) == len(node.items) else None


def _multiset_equal(gs: list, ps: list, ctx: Ctx) -> bool:
    if len(gs) != len(ps):
        return False
    used = [False] * len(ps)
    for gi in gs:
        for j, pj in enumerate(ps):
            if not used[j] and equal(gi, pj, ctx):
                used[j] = True
                break
        else:
            return False
    return True


def _dedupe(items: list, ctx: Ctx) -> list:
    out: list = []
    for it in items:
        if not any(equal(o, it, ctx) for o in out):
            out.append(it)
    return out


def _collection_equal(g: Any, p: Any, ctx: Ctx) -> bool:
    def items(x: Any) -> list | None:
        if isinstance(x, (ListOf, SetOf)):
            return list(x.items)
        return None

    gi, pi = items(g), items(p)
    if gi is None or pi is None:
        # a bare list against a tuple: in order ({1,3} written without \{ is the list 1,3)
        other, lst = (g, p) if gi is None else (p, g)
        if isinstance(lst, ListOf) and isinstance(other, Bracket) and len(other.items) == len(lst.items):
            return all(equal(a, b, ctx) for a, b in zip(
                (g.items if isinstance(g, (ListOf, Bracket)) else ()),
                (p.items if isinstance(p, (ListOf, Bracket)) else ())))
        if isinstance(lst, ListOf) and isinstance(other, Matrix):
            return _matrix_equal(g, p, ctx)
        return False
    if isinstance(g, SetOf) or isinstance(p, SetOf):
        gi, pi = _dedupe(gi, ctx), _dedupe(pi, ctx)
        return _multiset_equal(gi, pi, ctx)
    if ctx.policy.ordered_lists:
        return len(gi) == len(pi) and all(equal(a, b, ctx) for a, b in zip(gi, pi))
    # several solutions: a solution listed twice is still the same answer
    return _multiset_equal(_dedupe(gi, ctx), _dedupe(pi, ctx), ctx)


def _matrix_cells(x: Any) -> list[list] | None:
    if isinstance(x, Matrix):
        return [list(r) for r in x.rows]
    return None


def _matrix_equal(g: Any, p: Any, ctx: Ctx) -> bool:
    mg, mp = _matrix_cells(g), _matrix_cells(p)
    if mg is not None and mp is not None:
        if len(mg) != len(mp) or any(len(a) != len(b) for a, b in zip(mg, mp)):
            return False
        return all(equal(a, b, ctx) for ra, rb in zip(mg, mp) for a, b in zip(ra, rb))
    # a column or row vector against a tuple / list, in order
    mat, other = (mg, p) if mg is not None else (mp, g)
    if not isinstance(other, (Bracket, ListOf)):
        return False
    flat = [c for r in mat for c in r] if (len(mat) == 1 or all(len(r) == 1 for r in mat)) else None
    if flat is None or len(flat) != len(other.items):
        return False
    pairs = zip(flat, other.items) if mg is not None else zip(other.items, flat)
    return all(equal(a, b, ctx) for a, b in pairs)


def _bracket_equal(g: Bracket, p: Bracket, ctx: Ctx) -> bool:
    if len(g.items) != len(p.items):
        return False
    if len(g.items) == 2 and (g.open, g.close) != (p.open, p.close):
        return False  # intervals with different end types, or a point vs an interval
    return all(equal(a, b, ctx) for a, b in zip(g.items, p.items))


def _ratio_equal(g: Any, p: Any, ctx: Ctx) -> bool:
    if isinstance(g, Ratio) and isinstance(p, Ratio):
        if len(g.parts) != len(p.parts):
            return False
        a, b = [sp.sympify(x) for x in g.parts], [sp.sympify(x) for x in p.parts]
        if any(x == 0 for x in a + b):
            return all(scalar_equal(x, y, ctx) for x, y in zip(a, b))
        # proportional: a_i * b_0 == b_i * a_0
        return all(scalar_equal(a[i] * b[0], b[i] * a[0], ctx) for i in range(1, len(a))) and \
            not all(x == 0 for x in a)
    ratio, other = (g, p) if isinstance(g, Ratio) else (p, g)
    if len(ratio.parts) == 2 and isinstance(other, sp.Expr) and ratio.parts[1] != 0:
        value = ratio.parts[0] / ratio.parts[1]
        return scalar_equal(value, other, ctx) if ratio is g else scalar_equal(other, value, ctx)
    return False


def _base_equal(g: Any, p: Any) -> bool:
    def value(b: BaseNum) -> int | None:
        try:
            return int(b.digits, b.base)
        except ValueError:
            return None

    if isinstance(g, BaseNum) and isinstance(p, BaseNum):
        return g.base == p.base and value(g) is not None and value(g) == value(p)
    b, other = (g, p) if isinstance(g, BaseNum) else (p, g)
    # the base subscript left off: same digits
    return isinstance(other, sp.Integer) and str(other) == b.digits.lstrip("0") or (
        isinstance(other, sp.Integer) and b.base == 10 and value(b) == int(other))


def _unit_equal(g: Any, p: Any, ctx: Ctx) -> bool:
    gu = g.unit if isinstance(g, WithUnit) else None
    pu = p.unit if isinstance(p, WithUnit) else None
    gv = g.value if isinstance(g, WithUnit) else g
    pv = p.value if isinstance(p, WithUnit) else p
    if gu is not None and pu is not None and ctx.policy.units:
        factor = convert_factor(pu, gu)
        if factor is None:
            return False
        if factor != 1 and isinstance(pv, sp.Expr):
            pv = pv * factor
    elif (gu is None) != (pu is None) and not ctx.policy.units:
        return False
    return equal(gv, pv, ctx)


# -- sets, intervals and relations (built by sets.py) ----------------------------------------------
def _set_equal(g: Any, p: Any, ctx: Ctx) -> bool:
    if isinstance(g, Union) and isinstance(p, Union) and len(g.parts) == len(p.parts):
        if _multiset_equal(list(g.parts), list(p.parts), ctx):
            return True
    if isinstance(g, Rel) or isinstance(p, Rel):
        return _rel_equal(g, p, ctx)
    sg, sp_ = to_set(g), to_set(p)
    if sg is None or sp_ is None:
        return False
    return sets_equal(sg, sp_)


def _rel_equal(g: Any, p: Any, ctx: Ctx) -> bool:
    if isinstance(g, Rel) and isinstance(p, Rel):
        if not all(isinstance(i, sp.Expr) for i in g.items + p.items):
            return False
        if "in" in g.ops or "in" in p.ops:
            return False
        gp, pp = rel_parts(g), rel_parts(p)
        if len(gp) == len(pp):
            if all(rel_pair_equal(a, b, ctx.tol) for a, b in zip(gp, pp)) or \
                    all(rel_pair_equal(a, b, ctx.tol) for a, b in zip(gp, reversed(pp))):
                return True
        sg, sp_ = rel_to_set(g), rel_to_set(p)
        return sg is not None and sp_ is not None and sets_equal(sg, sp_)
    rel, other = (g, p) if isinstance(g, Rel) else (p, g)
    if rel is p and not ctx.policy.interval_vs_inequality:
        return False  # an inequality does not answer for an interval reference
    srel = rel_to_set(rel)
    sother = to_set(other)
    if srel is None or sother is None:
        return False
    return sets_equal(srel, sother)


# -- scalars ---------------------------------------------------------------------------------------

def _marker_variants(x: sp.Expr, ctx: Ctx, other_has: bool, marker: sp.Symbol) -> list[sp.Expr]:
    if not x.has(marker):
        return [x]
    if other_has:
        return [x.subs(marker, 1)]
    if marker is PCT:
        return [x.subs(PCT, 1), x.subs(PCT, sp.Rational(1, 100))] if ctx.policy.percent else [x.subs(PCT, sp.Rational(1, 100))]
    return [x.subs(DEG, 1), x.subs(DEG, sp.pi / 180)] if ctx.policy.degrees else [x.subs(DEG, sp.pi / 180)]


def scalar_equal(g: sp.Basic, p: sp.Basic, ctx: Ctx) -> bool:
    if not isinstance(g, sp.Expr) or not isinstance(p, sp.Expr):
        return g == p
    gs, ps = [g], [p]
    for m in (PCT, DEG):
        gh, ph = g.has(m), p.has(m)
        gs = [v for x in gs for v in _marker_variants(x, ctx, ph, m)]
        ps = [v for x in ps for v in _marker_variants(x, ctx, gh, m)]
    return any(expr_equal(a, b, ctx) for a in gs for b in ps)


def expr_equal(g: sp.Expr, p: sp.Expr, ctx: Ctx) -> bool:
    if g == p:
        return True
    if g.has(sp.oo, -sp.oo, sp.zoo) or p.has(sp.oo, -sp.oo, sp.zoo):
        return sp.simplify(g - p) == 0 if (g.is_finite is False and p.is_finite is False) and g == p else False
    syms = sorted(free(g) | free(p), key=lambda s: s.name)
    if not syms:
        return _const_equal(g, p, ctx)
    agree = 0
    for k in range(len(POINTS)):
        subs = point(syms, k)
        vg, vp = num(g, subs), num(p, subs)
        if vg is None and vp is None:
            continue
        if vg is None or vp is None:
            return False
        if not close(vg, vp, ctx.tol):
            if is_real(vg) and is_real(vp):
                return False
            continue  # a branch choice of a fractional power at a negative point
        agree += 1
    if agree >= 3:
        return True
    # cannot evaluate (unknown functions, symbolic sums): symbolic simplification
    try:
        return sp.simplify(g - p) == 0 or sp.expand(g - p) == 0
    except (TypeError, ValueError, NotImplementedError, RecursionError):
        return False


def _const_equal(g: sp.Expr, p: sp.Expr, ctx: Ctx) -> bool:
    if g.is_Rational and p.is_Rational and not (ctx.gold.decimal or ctx.pred.decimal):
        return g == p
    if too_big(g) or too_big(p):
        return False  # not structurally equal (checked first) and too large to evaluate
    vg, vp = num(g), num(p)
    if vg is None or vp is None:
        try:
            return sp.simplify(g - p) == 0
        except (TypeError, ValueError, NotImplementedError, RecursionError):
            return False
    if g.is_Integer and not ctx.gold.decimal:
        # an integer reference needs an integer-valued prediction
        return bool(abs(vp - g) <= sp.Float("1e-20") * max(1, abs(g)))
    if p.is_Integer and not ctx.pred.decimal:
        # and, symmetrically, an integer prediction is never a rounding of a non-integer
        return bool(abs(vg - p) <= sp.Float("1e-20") * max(1, abs(p)))
    if close(vg, vp, ctx.tol):
        return True
    return _rounded_match(g, p, vg, vp, ctx)


def _literal(value: sp.Expr, meta: Reading) -> tuple[int, int] | None:
    """(places, significant digits) of the decimal literal written for ``value``, if it is one."""
    if not value.is_Rational:
        return None
    target = abs(Fraction(int(value.p), int(value.q)))
    for lit, places, sig in meta.decimals:
        if lit == target:
            return places, sig
    return None


def _rounded_match(g: sp.Expr, p: sp.Expr, vg: sp.Expr, vp: sp.Expr, ctx: Ctx) -> bool:
    """Rounding policy (see :mod:`policy`): the decimal side equals the exact side rounded or
    truncated to its last shown place."""
    pol = ctx.policy.rounding
    sides = []
    if pol == "irrational":
        lit = _literal(p, ctx.pred) if ctx.pred.decimal else None
        if lit is not None and lit[1] >= ctx.policy.irrational_digits and g.is_rational is False:
            sides.append((vg, vp, lit[0]))
    if pol in ("pred", "both") and ctx.pred.decimal and ctx.pred.places is not None:
        lit = _literal(p, ctx.pred) or (ctx.pred.places, ctx.pred.sig)
        if (lit[1] or 0) >= ctx.policy.min_rounding_digits:
            sides.append((vg, vp, lit[0]))
    if pol == "both" and ctx.gold.decimal and ctx.gold.places is not None:
        lit = _literal(g, ctx.gold) or (ctx.gold.places, ctx.gold.sig)
        if (lit[1] or 0) >= ctx.policy.min_rounding_digits:
            sides.append((vp, vg, lit[0]))
    for exact, shown, places in sides:
        if sp.im(exact) != 0 or sp.im(shown) != 0:
            continue
        step = sp.Rational(10) ** -places
        if abs(exact - shown) <= step / 2 + sp.Float("1e-25") or (
                abs(exact - shown) < step and abs(shown) <= abs(exact)):
            return True
    return False


__all__ = ["equal", "readings_equal", "scalar_equal", "expr_equal", "Ctx"]
