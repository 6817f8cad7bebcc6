"""LaTeX commands and environments of the parser: ``\\frac``, ``\\sqrt``, functions, ``\\sum``, matrices.

Place: ``lexer -> **parse** -> compare``. :class:`LatexCommands` is the part of
:class:`verifiers.math.parse.Parser` that reads a backslash command or a ``\\begin{...}``
environment; the grammar of sums, products, powers and brackets stays in :mod:`parse`. The same
rules hold here: every sympy object comes from an explicit, guarded constructor.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from verifiers.math.lexer import FUNCTIONS, GREEK
from verifiers.math.nodes import DEG, ListOf, Matrix, ParseError, Rel, as_expr, safe_pow, symbol

_FUNC_MAP = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sec": sp.sec, "csc": sp.csc, "cot": sp.cot,
    "arcsin": sp.asin, "arccos": sp.acos, "arctan": sp.atan, "asin": sp.asin, "acos": sp.acos,
    "atan": sp.atan, "arcsec": sp.asec, "arccsc": sp.acsc, "arccot": sp.acot,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "coth": sp.coth, "sech": sp.sech,
    "csch": sp.csch, "exp": sp.exp, "abs": sp.Abs, "floor": sp.floor, "ceil": sp.ceiling,
    "sqrt": sp.sqrt,
}
TRIG = {"sin", "cos", "tan", "sec", "csc", "cot"}
_CONSTS = {"pi": sp.pi, "infty": sp.oo, "oo": sp.oo, "infinity": sp.oo, "emptyset": sp.S.EmptySet,
           "varnothing": sp.S.EmptySet, "imath": sp.I, "Reals": sp.S.Reals}


class LatexCommands:
    """Parser methods for backslash commands and environments (mixed into ``Parser``)."""

    def parse_command(self) -> Any:
        t = self.advance()
        name = t.value
        if name == "frac":
            num, den = as_expr(self.parse_arg()), as_expr(self.parse_arg())
            if den == 0:
                raise ParseError("division by zero")
            return num / den
        if name == "binom":
            n, k = as_expr(self.parse_arg()), as_expr(self.parse_arg())
            return sp.binomial(n, k)
        if name == "sqrt":
            index = None
            if self.is_sym("["):
                self.advance()
                index = as_expr(self.parse_sum())
                self.expect_sym("]")
            arg = as_expr(self.parse_arg())
            return sp.sqrt(arg) if index is None else sp.root(arg, index)
        if name in _CONSTS:
            return _CONSTS[name]
        if name in ("log", "ln", "lg"):
            base = None
            if self.is_sym("_"):
                self.advance()
                base = as_expr(self.parse_arg())
            power = self._func_power()
            arg = self.parse_func_arg()
            if name == "ln":
                value = sp.log(arg)
            elif name == "lg":
                value = sp.log(arg, 10)
            else:
                value = sp.log(arg) if base is None else sp.log(arg, base)
            return value if power is None else safe_pow(value, power)
        if name in ("max", "min", "gcd", "lcm"):
            self.expect_sym("(")
            args = [as_expr(a) for a in self.parse_list(stop=(")",))]
            self.expect_sym(")")
            fn = {"max": sp.Max, "min": sp.Min, "gcd": sp.gcd, "lcm": sp.lcm}[name]
            if name in ("gcd", "lcm") and len(args) == 2:
                return fn(args[0], args[1])
            if name in ("max", "min"):
                return fn(*args)
            raise ParseError("gcd/lcm arity")
        if name in _FUNC_MAP:
            power = self._func_power()
            arg = self.parse_func_arg()
            if name in TRIG:
                arg = arg.subs(DEG, sp.pi / 180) if arg.has(DEG) else arg
            value = _FUNC_MAP[name](arg)
            if power is not None:
                if power == -1 and name in TRIG:
                    value = {"sin": sp.asin, "cos": sp.acos, "tan": sp.atan}.get(name, lambda a: 1 / a)(arg)
                else:
                    value = safe_pow(value, power)
            return value
        if name in GREEK:
            if self.is_sym("_"):
                self.advance()
                return symbol(f"{name}_{{{self.parse_script_text()}}}")
            return symbol(name)
        if name in ("overline", "vec", "hat", "bar", "tilde", "overrightarrow", "widehat", "dot",
                    "underline", "mathbf"):
            inner = self.parse_script_text() if self.is_sym("{") else self.advance().value
            return symbol(f"{name}({inner})")
        if name in ("sum", "prod"):
            return self.parse_big_operator(name)
        if name in ("dots", "ldots", "cdots"):
            raise ParseError("ellipsis")
        if name == "infty":
            return sp.oo
        if name == "emptyset":
            return sp.S.EmptySet
        if name in FUNCTIONS:
            raise ParseError(f"unsupported function {name}")
        # an unknown command is an opaque symbol (\zzz, \alpha-like macros)
        return symbol("\\" + name)

    def parse_big_operator(self, name: str) -> sp.Expr:
        """``\\sum_{k=a}^{b} term`` / ``\\prod``: kept unevaluated (bounds may be symbolic)."""
        if not self.is_sym("_"):
            raise ParseError(f"\\{name} without a lower bound")
        self.advance()
        low = self.parse_arg()
        if not (isinstance(low, Rel) and low.ops == ("=",) and isinstance(low.items[0], sp.Symbol)):
            raise ParseError(f"\\{name} lower bound must be k=a")
        var, start = low.items
        if not self.is_sym("^"):
            raise ParseError(f"\\{name} without an upper bound")
        self.advance()
        end = as_expr(self.parse_arg())
        term = as_expr(self.parse_term())
        cls = sp.Sum if name == "sum" else sp.Product
        return cls(term, (var, as_expr(start), end))

    def _func_power(self) -> sp.Expr | None:
        if self.is_sym("^"):
            self.advance()
            return as_expr(self.parse_exponent())
        return None

    def parse_func_arg(self) -> sp.Expr:
        """Argument of ``\\sin`` etc.: a parenthesised group, else the following implicit product
        (``\\sin 2x`` = sin(2x))."""
        if self.is_sym("("):
            self.advance()
            inner = self.parse_sum()
            self.expect_sym(")")
            value = as_expr(inner)
            return as_expr(self.parse_postfix(value))
        if self.is_sym("{"):
            return as_expr(self.parse_group())
        value = as_expr(self.parse_power())
        while self.tok.kind in ("NUM", "IDENT") or (self.tok.kind == "CMD" and self.tok.value in GREEK | {"pi"}):
            if self.tok.kind == "NUM" and self.pow_end != self.pos:
                break  # \\sin x 2 / \\log 2 8: a bare number never continues the product
            value = value * as_expr(self.parse_power())
        return value

    def parse_environment(self) -> Any:
        env = self.advance().value
        if env in ("pmatrix", "bmatrix", "matrix", "vmatrix", "Bmatrix", "smallmatrix", "array",
                   "cases", "aligned", "align", "gathered", "split", "tabular"):
            rows: list[tuple] = []
            row: list = []
            while True:
                if self.tok.kind == "END":
                    self.advance()
                    break
                if self.tok.kind == "EOF":
                    raise ParseError("unterminated environment")
                if self.tok.kind == "ROWSEP":
                    self.advance()
                    rows.append(tuple(row))
                    row = []
                    continue
                if self.is_sym("&"):
                    self.advance()
                    continue
                if self.tok.kind == "CMD" and self.tok.value in ("hline",):
                    self.advance()
                    continue
                row.append(self.parse_item(stop=("ROWSEP", "END", "&")))
            if row:
                rows.append(tuple(row))
            rows = [r for r in rows if r]
            if not rows:
                raise ParseError("empty matrix")
            if env in ("cases", "aligned", "align", "gathered", "split"):
                flat = [_join_cells(r) for r in rows]
                return ListOf(tuple(flat)) if len(flat) > 1 else flat[0]
            if len({len(r) for r in rows}) != 1:
                raise ParseError("ragged matrix")
            if env == "vmatrix":
                return sp.Matrix([[as_expr(c) for c in r] for r in rows]).det()
            return Matrix(tuple(rows))
        raise ParseError(f"unsupported environment {env}")


def _join_cells(row: tuple) -> Any:
    """A cases/align row ``a+b & = 1`` is split by & into cells; rejoin into one relation."""
    if len(row) == 1:
        return row[0]
    if len(row) == 2 and isinstance(row[1], Rel) and len(row[1].items) == 2 and row[1].items[0] is None:
        return Rel((row[0],) + row[1].items[1:], row[1].ops)
    return row[0]
