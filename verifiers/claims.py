"""Exact checks of the arithmetic claims written in one reasoning step.

Place in the data flow: rollouts -> **verifier results** (used by :mod:`verifiers.steps`, which
scores each step of a solution) -> rewards.

:func:`check_step` finds the equality chains of a step (``12 + 5 = 17``, ``x = 3 + 4 = 7``,
``20% of 50 = 10``, ``10 / 3 = 3.33``) and checks each claim exactly with sympy Rationals. The
expressions are evaluated by the small parser written here: model text is never passed to
``eval``/``sympify``, and literal sizes, exponents and intermediate results are bounded so hostile
input cannot hang the checker. :func:`numbers_in` lists the numbers a text writes (digits and the
number words zero..twenty), the values a strict check accepts as established.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import sympy

MAX_STEP_CHARS = 2000  # longer steps are not parsed (no claim), bounding the work per step
MAX_TOKENS = 200  # per expression
MAX_LITERAL_DIGITS = 40
MAX_EXPONENT = 64
MAX_BITS = 4096  # numerator/denominator size of any intermediate value

_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<word>[A-Za-z]+)|(?P<op>\*\*|[-+*/^()%=])|(?P<other>\S))")


class _Uncheckable(Exception):
    """The expression has no checkable value (unknown variable, too large, division by zero)."""


class _Syntax(_Uncheckable):
    """The tokens are not an expression (so a shorter run may be one)."""


@dataclass
class _Tok:
    kind: str  # num, word, op, other
    text: str


@dataclass
class _Value:
    value: sympy.Rational
    literals: list[sympy.Rational] = field(default_factory=list)  # numbers as written (before %)
    bare_number: bool = False  # the expression is a single number literal
    decimals: int | None = None  # digits after the point when it is a bare decimal literal


def _normalise(text: str) -> str:
    """Spell every operator the one way the tokenizer knows."""
    text = text.replace("$", " ").replace("\\(", " ").replace("\\)", " ")
    text = re.sub(r"\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"((\1)/(\2))", text)
    for pattern, repl in ((r"\\times|\\cdot|[×·∙⋅]", "*"), (r"\\div|÷", "/"), (r"[−–—]", "-"),
                          (r"\\left|\\right", ""), (r"[{}]", " "), (r"(?<=\d),(?=\d{3}(?!\d))", ""),
                          (r"(?<=\d)\s*[xX]\s*(?=\d)", " * "), (r"%\s*of\b", "% *")):
        text = re.sub(pattern, repl, text)
    return text


def _tokens(text: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        out.append(_Tok(kind, m.group(kind)))
    return out


def _bounded(x: sympy.Rational) -> sympy.Rational:
    if max(int(x.p).bit_length(), int(x.q).bit_length()) > MAX_BITS:
        raise _Uncheckable("value too large")
    return x


class _Parser:
    """Recursive descent from tokens to a small tree; :func:`_evaluate` computes it exactly.

    expr := term (("+" | "-") term)* ; term := unary (("*" | "/") unary | implicit unary)*
    unary := ("+" | "-") unary | power ; power := atom (("^" | "**") unary)?
    atom := number "%"? | letter | "(" expr ")"
    Parsing first and evaluating second keeps syntax errors (trim the run and retry) apart from
    value errors (an unknown variable: the claim is simply not checkable).
    """

    def __init__(self, toks: Sequence[_Tok]) -> None:
        if len(toks) > MAX_TOKENS:
            raise _Uncheckable("expression too long")
        self.toks, self.i = list(toks), 0

    def parse(self) -> tuple:
        if not self.toks:
            raise _Syntax("empty")
        tree = self.expr()
        if self.i != len(self.toks):
            raise _Syntax(f"unexpected {self.toks[self.i].text!r}")
        return tree

    def _peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self, *texts: str) -> bool:
        tok = self._peek()
        if tok is not None and tok.kind == "op" and tok.text in texts:
            self.i += 1
            return True
        return False

    def expr(self) -> tuple:
        tree = self.term()
        while True:
            tok = self._peek()
            if self._take("+", "-"):
                tree = ("bin", tok.text, tree, self.term())
            else:
                return tree

    def term(self) -> tuple:
        tree = self.unary()
        while True:
            tok = self._peek()
            if self._take("*", "/"):
                tree = ("bin", tok.text, tree, self.unary())
            elif tok is not None and (tok.kind == "word" or (tok.kind == "op" and tok.text == "(")):
                tree = ("bin", "*", tree, self.unary())  # implicit product: 2x, 3(4 + 1)
            else:
                return tree

    def unary(self) -> tuple:
        if self._take("-"):
            return ("neg", self.unary())
        if self._take("+"):
            return self.unary()
        return self.power()

    def power(self) -> tuple:
        base = self.atom()
        if self._take("^", "**"):
            return ("pow", base, self.unary())
        return base

    def atom(self) -> tuple:
        tok = self._peek()
        if tok is None:
            raise _Syntax("missing operand")
        self.i += 1
        if tok.kind == "num":
            node = ("num", tok.text)
            return ("pct", node) if self._take("%") else node
        if tok.kind == "word" and len(tok.text) == 1:
            return ("var", tok.text)
        if tok.kind == "op" and tok.text == "(":
            tree = self.expr()
            if not self._take(")"):
                raise _Syntax("unbalanced parenthesis")
            return tree
        raise _Syntax(f"unexpected {tok.text!r}")


def _evaluate(tree: tuple, env: dict[str, sympy.Rational], literals: list) -> sympy.Rational:
    """Exact value of a parse tree; every intermediate result is size-bounded."""
    kind = tree[0]
    if kind == "num":
        if len(tree[1]) > MAX_LITERAL_DIGITS:
            raise _Uncheckable("literal too long")
        value = sympy.Rational(tree[1])
        literals.append(value)
        return value
    if kind == "pct":
        return _evaluate(tree[1], env, literals) / 100
    if kind == "var":
        if tree[1] not in env:
            raise _Uncheckable(f"unknown {tree[1]}")
        return env[tree[1]]
    if kind == "neg":
        return -_evaluate(tree[1], env, literals)
    if kind == "pow":
        base, exponent = _evaluate(tree[1], env, literals), _evaluate(tree[2], env, literals)
        if exponent.q != 1 or abs(exponent.p) > MAX_EXPONENT:
            raise _Uncheckable("exponent must be a small integer")
        if base == 0 and exponent < 0:
            raise _Uncheckable("division by zero")
        # bits(base) * exponent bounds the result size before computing it
        if max(int(base.p).bit_length(), int(base.q).bit_length()) * abs(int(exponent)) > MAX_BITS:
            raise _Uncheckable("value too large")
        return _bounded(base ** exponent)
    _, op, left, right = tree
    a, b = _evaluate(left, env, literals), _evaluate(right, env, literals)
    if op == "+":
        return _bounded(a + b)
    if op == "-":
        return _bounded(a - b)
    if op == "*":
        return _bounded(a * b)
    if b == 0:
        raise _Uncheckable("division by zero")
    return _bounded(a / b)


def _value_of(toks: Sequence[_Tok], env: dict[str, sympy.Rational]) -> _Value:
    tree = _Parser(toks).parse()
    literals: list[sympy.Rational] = []
    value = _evaluate(tree, env, literals)
    bare = tree[0] == "num"
    decimals = len(tree[1].split(".")[1]) if bare and "." in tree[1] else None
    return _Value(value, literals, bare, decimals)


def _is_math(tok: _Tok) -> bool:
    return tok.kind in ("num", "op") or (tok.kind == "word" and len(tok.text) == 1)


def _math_run(toks: list[_Tok], from_end: bool) -> list[_Tok]:
    """The longest run of math tokens touching the end (or the start) of ``toks``."""
    seq = toks[::-1] if from_end else toks
    run = []
    for tok in seq:
        if not _is_math(tok) or (tok.kind == "op" and tok.text == "="):
            break
        run.append(tok)
    return run[::-1] if from_end else run


@dataclass
class _Side:
    toks: list[_Tok]
    text: str


def _chains(text: str) -> list[list[_Side]]:
    """Equality chains in one step: lists of expressions joined by "=" (words cut chains)."""
    toks = _tokens(_normalise(text))
    sides: list[list[_Tok]] = [[]]
    for tok in toks:
        if tok.kind == "op" and tok.text == "=":
            sides.append([])
        else:
            sides[-1].append(tok)
    chains: list[list[_Side]] = []
    current: list[_Side] = []
    for k, side in enumerate(sides):
        last = k == len(sides) - 1
        if k == 0:
            current = [_Side(_math_run(side, from_end=True), "")]
            continue
        head = _math_run(side, from_end=False)
        if len(head) == len(side) and not last:
            current.append(_Side(head, ""))  # a pure expression in the middle: the chain goes on
            continue
        current.append(_Side(head, ""))
        chains.append(current)
        current = [_Side(_math_run(side[len(head):], from_end=True), "")] if not last else []
    for chain in chains:
        for side in chain:
            side.text = " ".join(t.text for t in side.toks)
    return [c for c in chains if len(c) >= 2]


def _fit(side: _Side, env: dict, from_end: bool) -> _Value:
    """Parse a side; if the whole run does not parse, drop tokens on its outer edge until it does
    ("1) 12 + 5" -> "12 + 5", "17 (" -> "17")."""
    toks = side.toks
    for cut in range(len(toks)):
        part = toks[cut:] if from_end else toks[: len(toks) - cut]
        try:
            _Parser(part).parse()
        except _Syntax:
            continue
        side.toks, side.text = part, " ".join(t.text for t in part)
        return _value_of(part, env)  # a value error here means: not checkable, no retry
    raise _Syntax("no expression")


def _claimed_equal(left: _Value, right: _Value) -> bool:
    if left.value == right.value:
        return True
    # a decimal written with d digits claims the value rounded to d digits
    for a, b in ((left, right), (right, left)):
        if b.decimals is not None and not a.bare_number:
            if abs(a.value - b.value) <= sympy.Rational(1, 2 * 10 ** b.decimals):
                return True
    return False


def numbers_in(text: str) -> set[sympy.Rational]:
    """Numbers written in ``text``: digit literals (thousands separators dropped) and number words."""
    clean = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    found = {sympy.Rational(m.group()) for m in _NUMBER_IN_TEXT.finditer(clean) if len(m.group()) <= MAX_LITERAL_DIGITS}
    for word in re.findall(r"[A-Za-z]+", text.lower()):
        if word in _NUMBER_WORDS:
            found.add(sympy.Rational(_NUMBER_WORDS[word]))
    return found


def check_step(
    text: str, established: set, env: dict[str, sympy.Rational], strict: bool = False
) -> tuple[bool | None, list[dict[str, Any]]]:
    """Check every claim of one step, updating ``established`` and ``env`` with what it proves.

    Args:
        text: the step's text.
        established: values usable as operands (mutated: true claims' values are added).
        env: one-letter variable bindings (mutated by ``x = ...`` substitutions).
        strict: fail a claim whose operand literal is not in ``established``.

    Returns:
        ``(verdict, claims)``: verdict True (all claims hold), False (one fails) or None (no
        checkable claim); ``claims`` lists ``{"claim", "ok", "reason"}`` for each claim found.
    """
    if len(text) > MAX_STEP_CHARS:
        return None, [{"claim": None, "ok": None, "reason": "step too long to check"}]
    claims: list[dict[str, Any]] = []
    for chain in _chains(text):
        values: list[_Value | None] = []
        for k, side in enumerate(chain):
            try:
                values.append(_fit(side, env, from_end=(k == 0)))
            except _Uncheckable:
                values.append(None)
        # x = expr (= ...): bind an unknown one-letter variable to the value of the chain
        first, bound = chain[0], False
        if values[0] is None and len(first.toks) == 1 and first.toks[0].kind == "word" and len(first.toks[0].text) == 1:
            rest = [v for v in values[1:] if v is not None]
            if rest:
                env[first.toks[0].text] = rest[0].value
                values[0] = _Value(rest[0].value, [], True)
                first.text, bound = first.toks[0].text, True
                claims.append({"claim": f"{first.text} := {chain[1].text}", "ok": True, "reason": "binding"})
        for k in range(len(chain) - 1):
            left, right = values[k], values[k + 1]
            if left is None or right is None or (bound and k == 0):  # a definition claims nothing
                continue
            claim = f"{chain[k].text} = {chain[k + 1].text}"
            operands = [lit for v in (left, right) if not v.bare_number for lit in v.literals]
            unsupported = [o for o in operands if o not in established] if strict else []
            if not _claimed_equal(left, right):
                claims.append({"claim": claim, "ok": False, "reason": f"false: {chain[k].text} is {left.value}"})
            elif unsupported:
                claims.append({"claim": claim, "ok": False,
                               "reason": f"unsupported operand {unsupported[0]} (not in the question or earlier results)"})
            else:
                claims.append({"claim": claim, "ok": True, "reason": "holds"})
                established.update({left.value, right.value, *left.literals, *right.literals})
    checked = [c for c in claims if c["ok"] is not None and c["reason"] != "binding"]
    if any(c["ok"] is False for c in claims):
        return False, claims
    return (True if checked else None), claims
