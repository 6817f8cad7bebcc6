"""String-level clean-up of an extracted answer before tokenizing (step 0 of parsing).

Place: ``extract -> **normalize** -> lexer -> parse -> compare``.

:func:`readings` returns the candidate strings an answer can mean. Almost always one; two only
for a bare ``digits,digits`` answer that may be a decimal comma (``1,22`` = ``1.22``) or a list
of two answers. Thousands separators (``1,000``, ``1\\,000``, ``1{,}000``, ``1 000``) are joined
when the groups are exactly three digits; ``32, 349`` (a space after the comma) stays a list.
"""

from __future__ import annotations

import re

_WRAPPERS = [
    (re.compile(r"^\$\$(.*)\$\$$", re.S), 1),
    (re.compile(r"^\$(.*)\$$", re.S), 1),
    (re.compile(r"^\\\((.*)\\\)$", re.S), 1),
    (re.compile(r"^\\\[(.*)\\\]$", re.S), 1),
]
_BOX = re.compile(r"^\\(?:boxed|fbox)\s*\{")
_TRAILING = re.compile(r"(?:\s|\\quad|\\qquad|\\[,;:! ]|\\\\|[.;,]|\\$)+$")
_THOUSANDS_MARK = re.compile(r"(\d)\s*(?:\{,\s*\}|,\\!|\\!,|,\\,|\\,|\\!|\\ |\\;|\\:)\s*(?=\d{3}(?!\d))")
# not right after an opening bracket: (12,102) is a pair, not twelve thousand
_THOUSANDS = re.compile(r"(?<![\d.,(\[])([1-9]\d{0,2})((?:,\d{3})+)(?![\d,]|\.\d*,)")
_SPACE_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?")
_MIXED = re.compile(r"(-?)(\d+)[ \t]+(\d+)[ \t]*/[ \t]*(\d+)")  # not across a line break
_DECIMAL_COMMA = re.compile(r"-?\d+,\d{2,}")
_DOLLARS = re.compile(r"\\?\$")


def _matching_brace(s: str, open_idx: int) -> int:
    depth = 0
    for j in range(open_idx, len(s)):
        c = s[j]
        if c == "{" and (j == 0 or s[j - 1] != "\\"):
            depth += 1
        elif c == "}" and (j == 0 or s[j - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return j
    return -1


_DOUBLE_ESCAPED = re.compile(r"(?<!\\)\\\\(?:frac|dfrac|tfrac|left|right|sqrt|begin|end|pi|le|ge|text|boxed|cdot|infty|times|mathrm)\b")
_GLUED_SPACING = re.compile(r"\\(qquad|quad)(?=[A-Za-z])")


def unescape(s: str) -> str:
    """Undo doubled backslashes (``\\\\frac`` copied from a string literal) and split spacing
    commands glued to a letter (``\\quadx``)."""
    if _DOUBLE_ESCAPED.search(s):
        s = s.replace("\\\\", "\\")
    return _GLUED_SPACING.sub(r"\\\1 ", s)


def strip_wrappers(s: str) -> str:
    """Remove ``$..$``, ``\\(..\\)``, ``\\[..\\]``, a whole ``\\boxed{..}`` and trailing
    punctuation, repeatedly, so ``$\\boxed{5}.$`` becomes ``5``."""
    prev = None
    while s != prev:
        prev = s
        s = s.strip()
        s = _TRAILING.sub("", s)
        for pat, grp in _WRAPPERS:
            m = pat.match(s)
            if m:
                s = m.group(grp)
                break
        m = _BOX.match(s)
        if m:
            end = _matching_brace(s, m.end() - 1)
            if end == len(s) - 1:
                s = s[m.end():end]
        s = re.sub(r"^\\displaystyle\s*", "", s)
    return s.strip()


def clean(s: str) -> str:
    """One normalised reading (thousands joined, dollars and ``\\left.`` removed)."""
    s = strip_wrappers(unescape(s))
    s = s.replace("\\left.", "").replace("\\right.", "")
    s = s.replace("\\%", "%")
    s = _DOLLARS.sub("", s)
    s = _THOUSANDS_MARK.sub(r"\1", s)
    s = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), s)
    stripped = s.strip()
    if _SPACE_THOUSANDS.fullmatch(stripped):
        s = stripped.replace(" ", "")
    m = _MIXED.fullmatch(s.strip())
    if m and int(m.group(3)) < int(m.group(4)):
        sign, whole, num, den = m.groups()
        s = f"{sign}({whole}+{num}/{den})"
    return s.strip()


def readings(s: str) -> list[str]:
    """All candidate normalised strings for an answer (see module doc)."""
    first = clean(s)
    out = [first]
    if _DECIMAL_COMMA.fullmatch(first):
        out.append(first.replace(",", "."))
    return out
