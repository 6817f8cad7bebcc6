"""Units written after an answer (``5\\text{ cm}``, ``10 square units``, ``3 hours``).

Place: used by :mod:`compare` when both sides carry a unit. A unit on one side only is ignored
(policy ``units=True``); two units convert when both are in the table (same dimension), are equal
when their normalised names match (``miles`` = ``mile``), and otherwise differ (``5 kg`` != ``5 g``).
"""

from __future__ import annotations

import re

import sympy as sp

# name -> (dimension, factor to the base unit of that dimension)
_R = sp.Rational
_TABLE: dict[str, tuple[str, sp.Rational]] = {}


def _add(dim: str, factor: sp.Rational, *names: str) -> None:
    for n in names:
        _TABLE[n] = (dim, sp.Rational(factor))


_add("length", 1, "m", "meter", "metre")
_add("length", _R(1, 100), "cm", "centimeter", "centimetre")
_add("length", _R(1, 1000), "mm", "millimeter", "millimetre")
_add("length", 1000, "km", "kilometer", "kilometre")
_add("length", _R(254, 10000), "in", "inch", "inche")
_add("length", _R(3048, 10000), "ft", "foot", "feet")
_add("length", _R(9144, 10000), "yd", "yard")
_add("length", _R(1609344, 1000), "mi", "mile")
_add("mass", 1, "g", "gram", "gramme")
_add("mass", 1000, "kg", "kilogram")
_add("mass", _R(1, 1000), "mg", "milligram")
_add("mass", _R(45359237, 100000), "lb", "pound")
_add("mass", _R(45359237, 1600000), "oz", "ounce")
_add("time", 1, "s", "sec", "second")
_add("time", 60, "min", "minute")
_add("time", 3600, "h", "hr", "hour")
_add("time", 86400, "day")
_add("time", 604800, "week")
_add("volume", 1, "ml", "milliliter", "millilitre", "cc")
_add("volume", 1000, "l", "liter", "litre")
_add("money", 1, "dollar", "usd")
_add("money", _R(1, 100), "cent")

_NEUTRAL = {"unit", "units", "square", "cubic", "sq", "of", "the", "total", "in", "per", "each"}


def _norm_word(w: str) -> str:
    w = w.lower().strip(".")
    if w in _TABLE:
        return w
    for suffix in ("es", "s"):
        if w.endswith(suffix) and w[: -len(suffix)] in _TABLE:
            return w[: -len(suffix)]
    if w.endswith("s") and len(w) > 3:
        return w[:-1]
    return w


def _parse(unit: str) -> tuple[dict[str, int], list[str]]:
    """Known units with powers, and the leftover words (names compared literally)."""
    powers: dict[str, int] = {}
    words: list[str] = []
    square = 1
    for raw in re.split(r"\s+", unit.strip()):
        if not raw:
            continue
        sign = -1 if raw.startswith("/") else 1
        raw = raw.lstrip("/")
        base, _, exp = raw.partition("^")
        exp_v = int(exp.strip("{}")) if exp.strip("{}").isdigit() else 1
        w = _norm_word(base)
        if w in ("square", "sq"):
            square = 2
            continue
        if w == "cubic":
            square = 3
            continue
        if w in _TABLE:
            powers[w] = powers.get(w, 0) + sign * exp_v * square
            square = 1
        elif w not in _NEUTRAL:
            words.append(w)
    return powers, words


def convert_factor(src: str, dst: str) -> sp.Rational | None:
    """Factor f with ``value[src] * f = value[dst]``, or None when the units do not match."""
    ps, ws = _parse(src)
    pd, wd = _parse(dst)
    if sorted(ws) != sorted(wd):
        return None
    dims_s: dict[str, int] = {}
    dims_d: dict[str, int] = {}
    fs, fd = sp.Integer(1), sp.Integer(1)
    for u, k in ps.items():
        dim, f = _TABLE[u]
        dims_s[dim] = dims_s.get(dim, 0) + k
        fs *= f ** k
    for u, k in pd.items():
        dim, f = _TABLE[u]
        dims_d[dim] = dims_d.get(dim, 0) + k
        fd *= f ** k
    dims_s = {k: v for k, v in dims_s.items() if v}
    dims_d = {k: v for k, v in dims_d.items() if v}
    if dims_s != dims_d:
        return None
    return fs / fd
