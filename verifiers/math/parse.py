"""Recursive-descent parser: tokens -> answer structure with sympy leaves (step 2 of parsing).

Place: ``normalize -> lexer -> **parse** -> compare``. No ``eval``/``sympify`` of model text: every
sympy object is built by an explicit constructor, and constructors that could explode are guarded
(integer powers above ~20k bits, factorials above 2000 and constant towers are kept unevaluated;
nesting is capped at ``MAX_DEPTH``).

The nodes it builds, and the guarded arithmetic on them, live in :mod:`verifiers.math.nodes`.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from verifiers.math.latex_commands import LatexCommands
from verifiers.math.lexer import Token, tokenize
from verifiers.math.nodes import (DEG, PCT, PM, BaseNum, Bracket, ListOf, ParseError, Ratio, Rel, SetOf,
                                  Union, WithUnit, arith, as_expr, safe_factorial, safe_pow, symbol)

MAX_DEPTH = 120

_REL_OPS = {"=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!=", "=>": ">=",
            "=<": "<="}
_FUNCTION_LETTERS = set("fghFGHpqPQ")


class Parser(LatexCommands):
    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.pos = 0
        self.depth = 0
        self.abs_depth = 0
        self.pow_end = -1  # token index right after the last power parsed
        self.split_at = -1  # index of a number token whose first digit a macro argument took

    # -- token helpers -------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.pos]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.pos]
        if t.kind != "EOF":
            self.pos += 1
        return t

    def is_sym(self, *values: str) -> bool:
        return self.tok.kind == "SYM" and self.tok.value in values

    def expect_sym(self, value: str) -> None:
        if not self.is_sym(value):
            raise ParseError(f"expected {value!r}, got {self.tok.value!r}")
        self.advance()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nesting too deep")

    # -- top level -----------------------------------------------------------------------------
    def parse_answer(self) -> Any:
        items = self.parse_list(stop=("EOF",))
        if self.tok.kind != "EOF":
            raise ParseError(f"unexpected {self.tok.value!r}")
        if not items:
            raise ParseError("empty answer")
        if len(items) == 1:
            return items[0]
        return ListOf(tuple(items))

    def _at_stop(self, stop: tuple) -> bool:
        t = self.tok
        if t.kind == "EOF":
            return True
        if t.kind in ("ROWSEP", "END"):
            return "ROWSEP" in stop or "END" in stop or t.kind in stop
        return t.kind == "SYM" and t.value in stop

    def parse_list(self, stop: tuple) -> list:
        """Items separated by ``,`` ``;`` or the words and/or, up to a stop token."""
        items: list = []
        while True:
            while self.is_sym(",", ";") or (self.tok.kind == "WORD" and self.tok.value.lower() in ("and", "or")) \
                    or (self.tok.kind == "CMD" and self.tok.value in ("dots", "ldots", "cdots")):
                self.advance()
            if self._at_stop(stop):
                return items
            items.append(self.parse_item(stop))
            if self._at_stop(stop):
                return items
            if not (self.is_sym(",", ";") or self.tok.kind == "WORD"
                    or (self.tok.kind == "CMD" and self.tok.value in ("dots", "ldots", "cdots"))):
                raise ParseError(f"unexpected {self.tok.value!r} after an item")

    def parse_item(self, stop: tuple) -> Any:
        """A relation chain, a union, a ratio, or a single value (with its unit)."""
        self.enter()
        try:
            first = self.parse_union()
            if self.is_sym(":"):
                first = self.parse_ratio(first, stop)
            items, ops = [first], []
            while True:
                t = self.tok
                if t.kind == "SYM" and t.value in _REL_OPS:
                    ops.append(_REL_OPS[t.value])
                elif t.kind == "CMD" and t.value in ("in", "approx", "equiv", "sim", "simeq", "cong"):
                    ops.append({"in": "in", "approx": "~", "sim": "~", "simeq": "~"}.get(t.value, "="))
                else:
                    break
                self.advance()
                item = self.parse_union()
                items.append(self.parse_ratio(item, stop) if self.is_sym(":") else item)
            if ops:
                return Rel(tuple(items), tuple(ops))
            return first
        finally:
            self.depth -= 1

    def parse_ratio(self, first: Any, stop: tuple) -> Any:
        parts = [first]
        while self.is_sym(":"):
            self.advance()
            parts.append(self.parse_union())
        return Ratio(tuple(parts))

    def parse_union(self) -> Any:
        first = self.parse_value()
        if not (self.tok.kind == "CMD" and self.tok.value in ("cup", "cap", "setminus")):
            return first
        parts = [first]
        while self.tok.kind == "CMD" and self.tok.value == "cup":
            self.advance()
            parts.append(self.parse_value())
        if self.tok.kind == "CMD" and self.tok.value in ("cap", "setminus"):
            raise ParseError("set algebra other than union is not supported")
        return Union(tuple(parts))

    def parse_value(self) -> Any:
        """An expression possibly followed by unit words / a percent sign."""
        value = self.parse_sum()
        unit_words: list[str] = []
        while self.tok.kind == "WORD" and self.tok.value.lower() not in ("and", "or"):
            w = self.advance().value
            if w.lower() in ("percent", "pct", "percentage", "percents"):
                value = as_expr(value) * PCT
                continue
            if w.lower() in ("degree", "degrees", "deg"):
                value = as_expr(value) * DEG
                continue
            unit_words.append(w)
            # a unit power: cm^2, \text{ cm}^{3}
            if self.is_sym("^"):
                self.advance()
                unit_words[-1] += "^" + str(self.parse_script_text())
            while self.is_sym("/") and self.peek().kind in ("WORD", "IDENT"):
                self.advance()
                unit_words.append("/" + self.advance().value)
        if unit_words:
            return WithUnit(value, " ".join(unit_words))
        return value

    def parse_script_text(self) -> str:
        t = self.advance()
        if t.kind == "SYM" and t.value == "{":
            parts = []
            while not self.is_sym("}") and self.tok.kind != "EOF":
                parts.append(self.advance().value)
            self.expect_sym("}")
            return "".join(parts)
        return t.value

    # -- arithmetic ----------------------------------------------------------------------------
    def parse_sum(self) -> Any:
        left = self.parse_term()
        while True:
            if self.is_sym("+", "-"):
                op = self.advance().value
                left = arith(op, left, self.parse_term())
            elif self.tok.kind == "CMD" and self.tok.value in ("pm", "mp"):
                sign = PM if self.advance().value == "pm" else -PM
                left = as_expr(left) + sign * as_expr(self.parse_term())
            else:
                return left

    def _starts_factor(self) -> bool:
        t = self.tok
        if t.kind in ("NUM", "IDENT", "BEGIN"):
            return True
        if t.kind == "SYM":
            if t.value == "|":
                return self.abs_depth == 0
            return t.value in ("(", "{", "\\{", "<<", "lfloor", "lceil")
        if t.kind == "CMD":
            return t.value not in ("pm", "mp", "cup", "cap", "setminus", "in", "approx", "equiv",
                                   "sim", "simeq", "cong", "dots", "ldots", "cdots", "to",
                                   "rightarrow", "Rightarrow", "implies", "iff", "circ", "quad")
        return False

    def parse_term(self) -> Any:
        start = self.pos
        left = self.parse_unary()
        while True:
            if self.is_sym("*"):
                self.advance()
                left = arith("*", left, self.parse_unary())
            elif self.is_sym("/"):
                self.advance()
                right = as_expr(self.parse_unary())
                left = as_expr(left) / right
            elif self._starts_factor():
                if self._number_follows():
                    mixed = self._mixed_number(left, start)
                    if mixed is not None:
                        left = mixed
                        continue
                    if not self._number_may_multiply():
                        return left  # "1 9", "12 5", "3!2", "(2) 3": never a product
                right = self.parse_unary(implicit=True)
                left = _mixed_or_product(left, right, self)
            else:
                return left

    def _number_follows(self) -> bool:
        """The next factor is *written* starting with a digit (braces are invisible in LaTeX:
        ``1{9}`` renders as 19)."""
        k = self.pos
        while self.toks[k].kind == "SYM" and self.toks[k].value == "{":
            k += 1
        return self.toks[k].kind == "NUM"

    def _number_may_multiply(self) -> bool:
        """A factor written with a leading digit multiplies what precedes it only after a power
        (``2^4 3^2``) or a letter set apart by a space (``x 2``, ``\\pi 4``); after a digit, a
        bracket, ``!`` or ``%`` the digits would run together (``1 9``, ``12 5``, ``1{9}``, ``3!2``,
        ``(2) 3``) and the answer is read as garbled, not as a product. A digit glued to a letter
        (``x2``) is a lost sub/superscript, not ``2x``."""
        if self.pow_end == self.pos:
            return True
        if self.split_at == self.pos:
            return False
        prev = self.toks[self.pos - 1]
        return (prev.kind == "IDENT" and self.tok.space) or (prev.kind == "CMD" and prev.value != "circ")

    def _mixed_number(self, left: Any, start: int) -> Any:
        """``2 1/2`` (an integer literal, then ``a/b`` with 0 < a < b, then the end of the term):
        the mixed number 5/2. Returns None when the tokens are not exactly that."""
        t = self.toks
        lead = t[start:self.pos]
        if not (len(lead) in (1, 2) and lead[-1].kind == "NUM" and lead[-1].value.isdigit()
                and (len(lead) == 1 or (lead[0].kind == "SYM" and lead[0].value == "-"))):
            return None
        if not (isinstance(left, sp.Integer) and self.pos + 3 <= len(t) - 1):
            return None
        a, slash, b, after = t[self.pos], t[self.pos + 1], t[self.pos + 2], t[self.pos + 3]
        if not (a.kind == "NUM" and a.value.isdigit() and not a.newline and slash.kind == "SYM" and slash.value == "/"
                and b.kind == "NUM" and b.value.isdigit() and 0 < int(a.value) < int(b.value)):
            return None
        ends = after.kind in ("EOF", "WORD", "ROWSEP", "END") or (after.kind == "SYM" and after.value in (
            ",", ";", ")", "]", "}", "\\}", "+", "-", "=", "<", ">", "<=", ">=", "!=", ":", "&"))
        if not ends:
            return None
        self.pos += 3
        frac = sp.Rational(int(a.value), int(b.value))
        return left - frac if lead[0].kind == "SYM" else left + frac

    def parse_unary(self, implicit: bool = False) -> Any:
        if self.is_sym("-"):
            self.advance()
            return -as_expr(self.parse_unary())
        if self.is_sym("+"):
            self.advance()
            return self.parse_unary()
        if self.tok.kind == "CMD" and self.tok.value in ("pm", "mp"):
            sign = PM if self.advance().value == "pm" else -PM
            return sign * as_expr(self.parse_unary())
        return self.parse_power()

    def parse_power(self) -> Any:
        self.enter()
        try:
            base = self.parse_postfix(self.parse_primary())
            if self.is_sym("^"):
                self.advance()
                if self.tok.kind == "CMD" and self.tok.value == "circ":
                    self.advance()
                    return self.parse_postfix(as_expr(base) * DEG)
                if self.is_sym("{") and self.peek().kind == "CMD" and self.peek().value == "circ" \
                        and self.peek(2).kind == "SYM" and self.peek(2).value == "}":
                    self.pos += 3
                    return self.parse_postfix(as_expr(base) * DEG)
                exp = self.parse_exponent()
                value = self.parse_postfix(safe_pow(as_expr(base), as_expr(exp)))
                self.pow_end = self.pos  # 2^4 3^2 is written as a product of powers
                return value
            return base
        finally:
            self.depth -= 1

    def parse_exponent(self) -> Any:
        if self.is_sym("{"):
            return self.parse_group()
        if self.is_sym("-"):
            self.advance()
            return -as_expr(self.parse_exponent())
        # x^23 in LaTeX is x^{2}3, but answers written that way mean x^(23): take the whole number
        return self.parse_power()

    def parse_postfix(self, value: Any) -> Any:
        while True:
            if self.is_sym("!"):
                self.advance()
                value = safe_factorial(as_expr(value))
            elif self.is_sym("%"):
                self.advance()
                value = as_expr(value) * PCT
            elif self.tok.kind == "CMD" and self.tok.value == "circ":
                self.advance()
                value = as_expr(value) * DEG
            elif self.is_sym("'") and isinstance(value, sp.Symbol):
                self.advance()
                value = symbol(value.name + "'")
            else:
                return value

    def parse_group(self) -> Any:
        """``{ ... }``: a LaTeX group; with commas inside it is a bare list."""
        self.expect_sym("{")
        items = self.parse_list(stop=("}",))
        self.expect_sym("}")
        if len(items) == 1:
            return items[0]
        if not items:
            raise ParseError("empty group")
        return ListOf(tuple(items))

    def parse_arg(self) -> Any:
        """A macro argument: ``{group}`` or a single token (``\\frac12``)."""
        if self.is_sym("{"):
            return self.parse_group()
        t = self.tok
        if t.kind == "NUM" and len(t.value) > 1 and t.value[0].isdigit():
            # split "12" into "1" | "2" (\frac12); the rest stays as the next token
            self.toks[self.pos] = Token("NUM", t.value[1:], False)
            self.split_at = self.pos  # a digit was just read here: \\frac123 is not (1/2)*3
            return sp.Integer(int(t.value[0]))
        if t.kind == "NUM":
            self.advance()
            return _number(t)
        if t.kind == "IDENT":
            self.advance()
            return symbol(t.value)
        if t.kind == "CMD":
            return self.parse_primary()
        raise ParseError(f"bad macro argument {t.value!r}")

    # -- primaries -----------------------------------------------------------------------------
    def parse_primary(self) -> Any:
        t = self.tok
        if t.kind == "NUM":
            self.advance()
            num = _number(t)
            if self.is_sym("_") and "." not in t.value and "e" not in t.value:
                self.advance()
                base = self.parse_script_text().strip()
                if base.isdigit() and 2 <= int(base) <= 36:
                    return BaseNum(t.value, int(base))
                raise ParseError("bad base subscript")
            return num
        if t.kind == "IDENT":
            self.advance()
            return self.parse_identifier(t)
        if t.kind == "SYM":
            return self.parse_bracketed()
        if t.kind == "CMD":
            return self.parse_command()
        if t.kind == "BEGIN":
            return self.parse_environment()
        if t.kind == "WORD":
            raise ParseError("word inside an expression")
        raise ParseError(f"unexpected {t.value!r}")

    def parse_identifier(self, t: Token) -> Any:
        name = t.value
        if self.is_sym("_"):
            self.advance()
            sub = self.parse_script_text()
            name = f"{name}_{{{sub}}}"
            return symbol(name)
        if name == "i":
            return sp.I
        if name == "e" and not self.is_sym("("):
            return sp.E
        if name in _FUNCTION_LETTERS and self.is_sym("(") and not self.tok.space:
            self.advance()
            args = self.parse_list(stop=(")",))
            self.expect_sym(")")
            return sp.Function(name)(*[as_expr(a) for a in args])
        return symbol(name)

    def parse_bracketed(self) -> Any:
        t = self.tok
        v = t.value
        if v in ("(", "["):
            self.advance()
            items = self.parse_list(stop=(")", "]"))
            close = self.advance().value
            if not items:
                raise ParseError("empty brackets")
            if len(items) == 1 and v == "(" and close == ")":
                return items[0]
            if len(items) == 1 and v == "[" and close == "]":
                return items[0] if not isinstance(items[0], ListOf) else Bracket("[", "]", items[0].items)
            return Bracket(v, close, tuple(items))
        if v == "{":
            return self.parse_group()
        if v == "\\{":
            self.advance()
            if self.is_sym("\\}"):  # "\{\}" is the empty set
                self.advance()
                return sp.S.EmptySet
            items = self.parse_list(stop=("\\}",))
            self.expect_sym("\\}")
            return SetOf(tuple(items))
        if v == "<<":
            self.advance()
            items = self.parse_list(stop=(">>",))
            self.expect_sym(">>")
            return Bracket("(", ")", tuple(items))
        if v == "|":
            self.advance()
            self.abs_depth += 1
            inner = self.parse_sum()
            self.abs_depth -= 1
            self.expect_sym("|")
            return sp.Abs(as_expr(inner))
        if v in ("lfloor", "lceil"):
            self.advance()
            inner = self.parse_sum()
            self.expect_sym("rfloor" if v == "lfloor" else "rceil")
            return (sp.floor if v == "lfloor" else sp.ceiling)(as_expr(inner))
        raise ParseError(f"unexpected {v!r}")

def _number(t: Token) -> sp.Expr:
    if t.exact is not None:
        return sp.Rational(*t.exact)
    v = t.value
    if "e" in v:
        mant, _, exp = v.partition("e")
        e = int(exp)
        if abs(e) > 400:
            raise ParseError("exponent out of range")
        return sp.Rational(mant) * sp.Rational(10) ** e
    if len(v) > 400:
        raise ParseError("number too long")
    return sp.Rational(v) if "." in v else sp.Integer(int(v))


def _mixed_or_product(left: Any, right: Any, parser: Parser) -> Any:
    """Juxtaposition: ``918\\frac12`` is a mixed number, everything else is a product."""
    if isinstance(left, sp.Expr) and left.is_Integer and isinstance(right, sp.Expr) and right.is_Rational \
            and not right.is_Integer and 0 < right < 1 and _last_was_frac(parser):
        return left + right if left >= 0 else left - right
    return arith("*", left, right)


def _last_was_frac(parser: Parser) -> bool:
    # the right operand came from \frac with two integer arguments
    for k in range(parser.pos - 1, -1, -1):
        t = parser.toks[k]
        if t.kind == "CMD":
            return t.value == "frac"
        if t.kind not in ("NUM", "SYM"):
            return False
    return False


def parse_tokens(tokens: list[Token]) -> Any:
    return Parser(tokens).parse_answer()


def parse_string(s: str) -> Any:
    """Parse one normalised answer string (raises ParseError / LexError / RecursionError)."""
    return parse_tokens(tokenize(s))
