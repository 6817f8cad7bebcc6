"""Answer string -> candidate readings (parsed node + what the writer showed of its precision).

Place: ``extract -> **reading** (normalize, lexer, parse) -> compare``. A reading remembers
whether a decimal point was written (so the relative tolerance of the policy applies) and how many
decimal places / significant digits the last decimal showed (for the rounding policy).

Word-only answers (``Evelyn``, ``\\text{odd}``) become :class:`~verifiers.math.nodes.Text`; an
answer that does not parse as mathematics but has words keeps a Text reading so identical prose
still matches. A string that yields no reading at all is *unparseable*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from verifiers.math.lexer import LexError, Token, tokenize
from verifiers.math.normalize import readings as string_readings
from verifiers.math.nodes import Clock, ParseError, Text
from verifiers.math.parse import Parser

MAX_NESTING = 100


class Unparseable(ValueError):
    pass


@dataclass(frozen=True)
class Reading:
    node: Any
    decimal: bool = False          # a decimal point / scientific notation was written
    places: int | None = None      # decimal places of the last decimal literal shown
    sig: int | None = None         # its significant digits
    decimals: tuple = ()           # every decimal literal as (|value| as a Fraction, places, sig)


def _text_key(tokens: list[Token]) -> str:
    parts = [t.value.lower() for t in tokens if t.kind in ("WORD", "IDENT", "NUM")]
    return " ".join(parts)


def _nesting_ok(s: str) -> bool:
    depth = best = 0
    for c in s:
        if c in "{([":
            depth += 1
            best = max(best, depth)
        elif c in "})]":
            depth -= 1
    return best <= MAX_NESTING


def _decimal_meta(tokens: list[Token]) -> tuple[bool, int | None, int | None, tuple]:
    decimal, places, sig = False, None, None
    literals = []
    for t in tokens:
        if t.kind == "NUM" and t.exact is None and ("." in t.value or "e" in t.value):
            decimal = True
            mant, _, exp = t.value.partition("e")
            frac = mant.split(".", 1)[1] if "." in mant else ""
            places = len(frac) - int(exp or 0)
            digits = mant.replace(".", "").lstrip("0")
            sig = len(digits)
            if len(t.value) <= 60 and abs(int(exp or 0)) <= 400:
                literals.append((Fraction(mant) * Fraction(10) ** int(exp or 0), places, sig))
    return decimal, places, sig, tuple(literals)


_CLOCK_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:\\text\{\s*)?([ap])?\.?\s*(?:m\.?)?\s*\}?",
                       re.I)


def _clock(s: str) -> Clock | None:
    """``h:mm`` / ``h:mm:ss`` with an optional am/pm: a time of day, in seconds."""
    m = _CLOCK_RE.fullmatch(s.strip())
    if not m:
        return None
    h, mnt, sec = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 24 or mnt > 59 or sec > 59:
        return None
    half = (m.group(4) or "").lower()
    if half == "p" and h < 12:
        h += 12
    elif half == "a" and h == 12:
        h = 0
    return Clock(h * 3600 + mnt * 60 + sec)


def read_one(s: str) -> list[Reading]:
    if not _nesting_ok(s):
        raise Unparseable("nesting too deep")
    clock = _clock(s)
    out: list[Reading] = [Reading(clock)] if clock is not None else []
    try:
        tokens = tokenize(s)
    except (LexError, RecursionError, ValueError, AttributeError) as err:
        raise Unparseable(str(err)) from None
    decimal, places, sig, literals = _decimal_meta(tokens)
    words = [t for t in tokens if t.kind == "WORD" and t.value.lower() not in ("and", "or")]
    has_math = any(t.kind in ("NUM", "CMD", "BEGIN") for t in tokens)
    if words and not has_math:
        return [Reading(Text(_text_key(tokens)))]
    try:
        node = Parser(list(tokens)).parse_answer()
        out.append(Reading(node, decimal, places, sig, literals))
    except (ParseError, LexError, RecursionError, ValueError, TypeError, ZeroDivisionError,
            AttributeError, IndexError):
        pass
    if words or not out:
        key = _text_key(tokens)
        if key:
            out.append(Reading(Text(key)))
    return out


@lru_cache(maxsize=4096)
def read_answer(raw: str, max_chars: int = 2000) -> tuple[Reading, ...]:
    """All readings of an answer string; raises :class:`Unparseable` when there is none."""
    if len(raw) > max_chars:
        raise Unparseable(f"answer longer than {max_chars} characters")
    out: list[Reading] = []
    for s in string_readings(raw):
        if not s:
            continue
        out.extend(read_one(s))
    if not out:
        raise Unparseable("no reading")
    return tuple(out)
