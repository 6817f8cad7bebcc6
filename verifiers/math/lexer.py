"""Tokenizer for answer strings written in LaTeX or plain text (step 1 of parsing).

Place: ``normalize -> **lexer** -> parse -> compare``. Pure Python, linear in the input, no eval.

It resolves what is ambiguous at the character level so the parser need not:

* numbers: ``1.5``, ``.5``, scientific ``3.54e-07`` (only when digits follow the ``e``),
  repeating decimals marked with ``\\overline{3}``, ``\\dot{3}`` or ``0.(3)`` (exact rationals);
* thousands separators ``1,000`` / ``1\\,000`` / ``1{,}000`` are handled in :mod:`normalize`;
* ``\\text{...}``-like commands: words become ``WORD`` tokens (units, text answers, "and"), other
  content (``\\text{(B)}``, ``\\mathrm{e}``) is lexed as math;
* plain letter runs: known function names (``sin``, ``log``...) and constants (``pi``) are
  recognised; runs of three or more letters are words; shorter runs are single-letter symbols
  (``xy`` = ``x*y``), except a known unit written after a space (``10 cm``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FUNCTIONS = {
    "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "arcsec", "arccsc",
    "arccot", "sinh", "cosh", "tanh", "coth", "sech", "csch", "log", "ln", "exp", "lg",
    "max", "min", "gcd", "lcm", "det", "abs", "sqrt", "floor", "ceil", "asin", "acos", "atan",
}
CONSTANT_WORDS = {"pi": "pi", "infty": "oo", "infinity": "oo", "inf": "oo"}
SEPARATOR_WORDS = {"and", "or"}
PERCENT_WORDS = {"percent", "pct", "percentage", "percents"}
DEGREE_WORDS = {"degree", "degrees", "deg"}

# Short unit names recognised as units (not symbols) when written apart from the number.
SHORT_UNITS = {"cm", "mm", "km", "m", "kg", "g", "mg", "s", "h", "hr", "ft", "in", "yd", "mi",
               "ml", "mL", "L", "l", "lb", "oz", "min", "sec", "cc"}

GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
    "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon",
    "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi",
    "Sigma", "Upsilon", "Phi", "Psi", "Omega",
}

# Commands whose brace argument is text: words inside become WORD tokens.
TEXT_COMMANDS = {"text", "textbf", "textit", "textrm", "textsf", "texttt", "mbox", "textnormal",
                 "hbox", "textup", "emph"}
# Commands whose brace argument is math in a different font: the argument is lexed as math.
FONT_COMMANDS = {"mathrm", "mathbf", "mathit", "mathsf", "mathtt", "boldsymbol", "bm",
                 "mathcal", "mathbb", "operatorname", "pmb", "mathscr", "mathfrak"}
# Commands dropped entirely (sizing, spacing, decoration without meaning for the value).
DROPPED = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr",
           "biggl", "biggr", "displaystyle", "textstyle", "scriptstyle", "limits", "nolimits",
           "quad", "qquad", "hfill", "noindent", "middle", "mathord", "mathop", "phantom"}


@dataclass
class Token:
    kind: str    # NUM, IDENT, CMD, WORD, SYM, BEGIN, END, ROWSEP, EOF
    value: str
    space: bool = False   # whitespace before the token
    newline: bool = False  # that whitespace held a line break
    exact: tuple[int, int] | None = None  # repeating decimal as (numerator, denominator)


class LexError(ValueError):
    pass


_NUM = re.compile(r"(\d+\.?\d*|\.\d+)")
_SCI = re.compile(r"[eE]([+-]?\d+)")
_PAREN_REPEAT = re.compile(r"\((\d+)\)")
_WS = re.compile(r"\s+")


def _brace_arg(s: str, i: int) -> tuple[str, int] | None:
    """The content of the brace group starting at s[i] == '{' and the index after it."""
    if i >= len(s) or s[i] != "{":
        return None
    depth = 0
    for j in range(i, len(s)):
        c = s[j]
        if c == "\\":
            continue
        if c == "{" and (j == 0 or s[j - 1] != "\\"):
            depth += 1
        elif c == "}" and (j == 0 or s[j - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return s[i + 1:j], j + 1
    return None


def _repeating(int_part: str, frac_part: str, rep: str) -> tuple[int, int]:
    """Exact value of ``int_part.frac_part(rep)(rep)...`` as a fraction (num, den)."""
    whole = int(int_part or "0")
    k, r = len(frac_part), len(rep)
    fixed = int(frac_part) if frac_part else 0
    # x = whole + fixed/10^k + rep / (10^k * (10^r - 1))
    den = 10 ** k * (10 ** r - 1)
    num = whole * den + fixed * (10 ** r - 1) + int(rep)
    return num, den


def tokenize(s: str) -> list[Token]:
    out: list[Token] = []
    _lex_into(s, out, in_text=False)
    out.append(Token("EOF", ""))
    return out


def _lex_into(s: str, out: list[Token], in_text: bool, outer_prev: Token | None = None) -> None:
    i, n = 0, len(s)
    space = newline = False
    while i < n:
        c = s[i]
        if c.isspace() or c == "~":
            space = True
            newline = newline or c == "\n"
            i += 1
            continue
        if "0" <= c <= "9" or (c == "." and i + 1 < n and "0" <= s[i + 1] <= "9"):
            m = _NUM.match(s, i)
            text = m.group(1)
            j = m.end()
            tok = Token("NUM", text, space, newline)
            # scientific notation, only when digits follow: "2e" alone is 2*e
            ms = _SCI.match(s, j)
            if ms and not (j + len(ms.group(0)) < n and s[j + len(ms.group(0))].isalpha()):
                tok.value = text + "e" + ms.group(1)
                j = ms.end()
            elif "." in text:
                int_part, frac_part = text.split(".", 1)
                rep = None
                for cmd in ("\\overline", "\\dot", "\\bar", "\\overbrace"):
                    if s.startswith(cmd, j):
                        arg = _brace_arg(s, j + len(cmd))
                        if arg and arg[0].strip().isdigit():
                            rep, j = arg[0].strip(), arg[1]
                        elif j + len(cmd) < n and s[j + len(cmd)].isdigit() and cmd != "\\overbrace":
                            rep, j = s[j + len(cmd)], j + len(cmd) + 1
                        break
                if rep is None:
                    mp = _PAREN_REPEAT.match(s, j)
                    if mp and frac_part is not None and text.endswith(tuple("0123456789.")):
                        rep, j = mp.group(1), mp.end()
                if rep is not None:
                    tok.exact = _repeating(int_part, frac_part, rep)
                    tok.value = text + "(" + rep + ")"
                elif s.startswith("...", j) or s.startswith("\\ldots", j) or s.startswith("\\dots", j):
                    pass  # "0.333..." is an unmarked approximation, kept as the decimal shown
            out.append(tok)
            i = j
            space = newline = False
            continue
        if c.isalpha():
            j = i
            while j < n and s[j].isalpha() and s[j].isascii():
                j += 1
            if j == i:  # a non-ASCII letter: one symbol
                j = i + 1
            superscript = j < n and s[j] in "²³" and bool(out) and out[-1].kind == "NUM"
            _lex_letters(s[i:j], out, space, in_text, prev=out[-1] if out else outer_prev,
                         superscript=superscript)
            i = j
            space = newline = False
            continue
        if c == "\\":
            if i + 1 < n and s[i + 1].isalpha():
                j = i + 1
                while j < n and s[j].isalpha():
                    j += 1
                name = s[i + 1:j]
                i = _lex_command(s, name, j, out, space)
            else:
                nxt = s[i + 1] if i + 1 < n else ""
                if nxt == "\\":
                    out.append(Token("ROWSEP", "\\\\", space))
                elif nxt in "{}|%$#&_[]()":
                    out.append(Token("SYM", "\\" + nxt if nxt in "{}|" else nxt, space))
                elif nxt in ",;:! ":
                    space = True
                    i += 2
                    continue
                i += 2
            space = newline = False
            continue
        if c == "&":
            out.append(Token("SYM", "&", space))
        elif c in "<>!=" and i + 1 < n and s[i + 1] == "=":
            out.append(Token("SYM", c + "=", space))
            i += 1
        elif c == "*" and i + 1 < n and s[i + 1] == "*":
            out.append(Token("SYM", "^", space))
            i += 1
        else:
            mapped = _UNICODE_SYMS.get(c, c)
            if mapped.startswith("\\") and len(mapped) > 1:
                out.append(Token("CMD", mapped[1:], space))
            elif mapped.startswith("^") and len(mapped) > 1:
                out.append(Token("SYM", "^", space))
                out.append(Token("NUM", mapped[1:], False))
            else:
                out.append(Token("SYM", mapped, space))
        i += 1
        space = newline = False


_UNICODE_SYMS = {"−": "-", "–": "-", "×": "*", "·": "*", "÷": "/", "≤": "<=", "≥": ">=",
                 "≠": "!=", "π": "\\pi", "∞": "\\infty", "°": "\\circ", "∪": "\\cup",
                 "±": "\\pm", "√": "\\sqrt", "⋅": "*", "∈": "\\in", "≈": "\\approx",
                 "²": "^2", "³": "^3"}


def _lex_letters(run: str, out: list[Token], space: bool, in_text: bool, prev: Token | None,
                 superscript: bool = False) -> None:
    low = run.lower()
    if in_text:
        unit_after_number = run in SHORT_UNITS and prev is not None and prev.kind == "NUM"
        if len(run) >= 2 or low in SEPARATOR_WORDS or unit_after_number:
            out.append(Token("WORD", run, space))
        else:
            out.append(Token("IDENT", run, space))
        return
    if low in SEPARATOR_WORDS or low in PERCENT_WORDS or low in DEGREE_WORDS:
        out.append(Token("WORD", low, space))
        return
    if low in CONSTANT_WORDS and run == low:
        out.append(Token("CMD", CONSTANT_WORDS[low], space))
        return
    if run in FUNCTIONS:
        out.append(Token("CMD", run, space))
        return
    # a known function name glued to a symbol: "sinx", "lnx"
    for f in sorted(FUNCTIONS, key=len, reverse=True):
        if len(f) < len(run) <= len(f) + 2 and run.startswith(f) and len(f) >= 2:
            out.append(Token("CMD", f, space))
            _lex_letters(run[len(f):], out, False, in_text, prev=None)
            return
    squared_unit = run in SHORT_UNITS and superscript  # "1,000.99m²": m² is a unit
    if squared_unit or (run in SHORT_UNITS and space and prev is not None and prev.kind == "NUM" and len(run) >= 2):
        out.append(Token("WORD", run, space))
        return
    if len(run) >= 3:
        out.append(Token("WORD", run, space))
        return
    for k, ch in enumerate(run):
        out.append(Token("IDENT", ch, space and k == 0))


def _lex_command(s: str, name: str, j: int, out: list[Token], space: bool) -> int:
    """Lex ``\\name`` whose name ends at ``j``; returns the index after what was consumed."""
    if name in DROPPED:
        return j
    if name in TEXT_COMMANDS or name in FONT_COMMANDS:
        k = j
        while k < len(s) and s[k] == " ":
            k += 1
        arg = _brace_arg(s, k)
        if arg is None:
            return j
        content, end = arg
        if name in TEXT_COMMANDS:
            sub: list[Token] = []
            _lex_into(content, sub, in_text=True, outer_prev=out[-1] if out else None)
            if sub:
                sub[0].space = sub[0].space or space
            out.extend(sub)
        else:
            stripped = content.strip()
            if name == "operatorname" and stripped in FUNCTIONS:
                out.append(Token("CMD", stripped, space))
            elif name == "mathbb" and stripped == "R":
                out.append(Token("CMD", "Reals", space))  # the real line, (-\infty, \infty)
            elif stripped.isalpha() and len(stripped) >= 2 and name in ("mathrm", "operatorname"):
                # \mathrm{cm}, \mathrm{Evelyn}: a word, like \text
                _lex_into(content, out, in_text=True)
            else:
                sub = []
                _lex_into(content, sub, in_text=False)
                if sub:
                    sub[0].space = sub[0].space or space
                out.extend(sub)
        return end
    if name in ("begin", "end"):
        arg = _brace_arg(s, j)
        if arg is None:
            raise LexError("\\begin without environment name")
        env, end = arg
        if name == "begin" and env.strip() in ("array", "tabular"):
            spec = _brace_arg(s, end)  # column spec {cc}
            if spec is not None:
                end = spec[1]
        out.append(Token("BEGIN" if name == "begin" else "END", env.strip().rstrip("*"), space))
        return end
    if name in ("dfrac", "tfrac", "cfrac"):
        name = "frac"
    elif name in ("dbinom", "tbinom"):
        name = "binom"
    elif name in ("le", "leq", "leqslant", "leqq"):
        out.append(Token("SYM", "<=", space))
        return j
    elif name in ("ge", "geq", "geqslant", "geqq"):
        out.append(Token("SYM", ">=", space))
        return j
    elif name in ("ne", "neq"):
        out.append(Token("SYM", "!=", space))
        return j
    elif name == "lt":
        out.append(Token("SYM", "<", space))
        return j
    elif name == "gt":
        out.append(Token("SYM", ">", space))
        return j
    elif name in ("cdot", "times", "ast", "cross"):
        out.append(Token("SYM", "*", space))
        return j
    elif name == "div":
        out.append(Token("SYM", "/", space))
        return j
    elif name in ("lbrace",):
        out.append(Token("SYM", "\\{", space))
        return j
    elif name in ("rbrace",):
        out.append(Token("SYM", "\\}", space))
        return j
    elif name in ("langle",):
        out.append(Token("SYM", "<<", space))
        return j
    elif name in ("rangle",):
        out.append(Token("SYM", ">>", space))
        return j
    elif name in ("lvert", "rvert", "vert", "mid"):
        out.append(Token("SYM", "|", space))
        return j
    elif name in ("lbrack",):
        out.append(Token("SYM", "[", space))
        return j
    elif name in ("rbrack",):
        out.append(Token("SYM", "]", space))
        return j
    elif name in ("colon", "ratio"):
        out.append(Token("SYM", ":", space))
        return j
    elif name in ("degree",):
        out.append(Token("CMD", "circ", space))
        return j
    elif name in ("lfloor", "rfloor", "lceil", "rceil"):
        out.append(Token("SYM", name, space))
        return j
    out.append(Token("CMD", name, space))
    return j
