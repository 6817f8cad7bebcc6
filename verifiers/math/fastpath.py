"""Plain-number fast path: decide ``42`` vs ``42.0`` without sympy or a worker process.

Place: first thing :func:`verifiers.math.verifier.answers_equal` tries. Most RL completions on
arithmetic / GSM8K data end in a plain number, so this path keeps a 500-completion batch at a
few milliseconds. It accepts integers, decimals, ``a/b`` and ``\\frac{a}{b}`` with an optional sign
(after the same clean-up as the full parser: ``$``, ``\\boxed``, thousands separators) and gives
exactly the answer the full comparison would: an integer reference needs an integer-valued
prediction, two exact values must be equal, a written decimal is compared with ``rel_tol``.
It returns None (undecided) for anything else, and when the rounding policy could change the
result.
"""

from __future__ import annotations

import re
from fractions import Fraction

from verifiers.math.normalize import clean
from verifiers.math.policy import Policy

_NUM = re.compile(r"(-?)(\d+(?:\.\d*)?|\.\d+)")
_FRAC = re.compile(r"(-?)\\frac\{(\d+)\}\{(\d+)\}|(-?)(\d+)/(\d+)")
_MAX_DIGITS = 200


def _value(s: str) -> tuple[Fraction, bool, bool] | None:
    """(value, written_with_decimal_point, is_integer_literal) or None."""
    if len(s) > _MAX_DIGITS:
        return None
    m = _NUM.fullmatch(s)
    if m:
        sign, body = m.groups()
        v = Fraction(body)
        return (-v if sign else v), "." in body, "." not in body
    m = _FRAC.fullmatch(s)
    if m:
        sign = m.group(1) or m.group(4)
        num, den = (m.group(2), m.group(3)) if m.group(2) else (m.group(5), m.group(6))
        if int(den) == 0:
            return None
        v = Fraction(int(num), int(den))
        return (-v if sign else v), False, False
    return None


def fast_equal(pred: str, gold: str, policy: Policy) -> bool | None:
    """True / False when both sides are plain numbers, None otherwise."""
    if len(pred) > 4 * _MAX_DIGITS or len(gold) > 4 * _MAX_DIGITS:
        return None
    pv = _value(clean(pred))
    if pv is None:
        return None
    gv = _value(clean(gold))
    if gv is None:
        return None
    (p, p_dec, p_int), (g, g_dec, g_int) = pv, gv
    if p == g:
        return True
    if g_int or p_int or not (p_dec or g_dec):
        return False  # exact answers (or an integer on either side) must agree exactly
    tol = Fraction(max(policy.rel_tol, 1e-15))
    if abs(p - g) <= tol * max(abs(p), abs(g)) or abs(p - g) <= Fraction(1, 10 ** 30):
        return True
    if policy.rounding in ("pred", "both"):
        return None  # ("irrational" never applies here: both sides are rational)
    return False
