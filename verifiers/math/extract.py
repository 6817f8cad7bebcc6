"""Find the final answer in a model completion (the first step of verification).

Place: ``completion -> **extract** -> reading -> compare``. Pure string scanning, linear in the
length of the completion (no regex with nested quantifiers), so a 1 MB completion costs
milliseconds.

Tiers, the first that finds something wins:

1. the last ``\\boxed{..}`` / ``\\fbox{..}`` (nested braces). Several boxes at the end separated
   only by a short phrase (``\\boxed{1} and \\boxed{2}``, at most four words) form one answer
   ``1, 2``;
2. the last answer marker: ``#### 42`` (GSM8K), ``Answer: ...``, ``the (final) answer is ...``
   -- the rest of that line, cut at the end of the sentence; inside it, the part after a last
   `` is `` (``Final Answer: The largest $n$ is 34.``) or its last ``$..$`` math;
3. the last delimited math ``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``;
4. the whole completion when it is a short single line that reads as an answer, not prose
   (``42``, ``x^2+1``, ``10 square units``);
5. the last number, if ``last_number_fallback`` (default True).

Returns None when nothing is found (the verifier reports ``reason="no_answer"``).
"""

from __future__ import annotations

import re

_BOX_CMDS = ("\\boxed", "\\fbox")
_MAX_JOIN_WORDS = 4
_MARKER = re.compile(
    r"(?:####|(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*(?:\\?[:])?|(?:^|\n)\s*answer\s*[:.]?)",
    re.I)
_SENTENCE_END = re.compile(r"\.(?:\s+[A-Z]|\s*$)|\n")
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")
_WORD = re.compile(r"[A-Za-z]{3,}")
_SEPARATOR_NOISE = re.compile(r"\\text\{([^{}]*)\}|\\(?:quad|qquad|[,;:! ])|\$|\\\(|\\\)|\\\[|\\\]|[,;.&]")


def _brace_end(s: str, i: int) -> int:
    """Index after the brace group opening at s[i] == '{', or -1 when unbalanced."""
    depth = 0
    n = len(s)
    j = i
    while j < n:
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def find_boxes(s: str) -> list[tuple[int, int, str]]:
    """All ``\\boxed{..}`` groups as (start, end, content), in order."""
    out = []
    i = 0
    while True:
        starts = [(s.find(cmd, i), cmd) for cmd in _BOX_CMDS]
        starts = [(k, cmd) for k, cmd in starts if k >= 0]
        if not starts:
            return out
        k, cmd = min(starts)
        j = k + len(cmd)
        while j < len(s) and s[j] == " ":
            j += 1
        if j < len(s) and s[j] == "{":
            end = _brace_end(s, j)
            if end < 0:
                return out
            out.append((k, end, s[j + 1:end - 1]))
            i = end
        elif j < len(s) and j > k + len(cmd):
            # "\boxed 5": a single token argument
            m = re.match(r"[^\s$.,]+", s[j:])
            if m:
                out.append((k, j + m.end(), m.group(0)))
            i = j + 1
        else:
            i = j


def _separator_words(sep: str) -> int | None:
    cleaned = _SEPARATOR_NOISE.sub(lambda m: " " + (m.group(1) or "") + " ", sep)
    if len(sep) > 60:
        return None
    return len(cleaned.split())


def _from_boxes(s: str) -> str | None:
    boxes = [b for b in find_boxes(s) if b[2].strip()]
    if not boxes:
        return None
    chain = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        words = _separator_words(s[prev[1]:chain[0][0]])
        if words is None or words > _MAX_JOIN_WORDS:
            break
        chain.insert(0, prev)
    return ", ".join(b[2].strip() for b in chain)


def _last_math(s: str) -> str | None:
    """Content of the last ``$..$`` / ``$$..$$`` / ``\\(..\\)`` / ``\\[..\\]``."""
    best: tuple[int, str] | None = None
    for open_, close in (("\\[", "\\]"), ("\\(", "\\)")):
        end = s.rfind(close)
        if end >= 0:
            start = s.rfind(open_, 0, end)
            if start >= 0 and (best is None or end > best[0]):
                best = (end, s[start + 2:end])
    # dollars: pair them up from the left, skipping escaped \$
    spans = []
    i, n = 0, len(s)
    open_at = None
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "$":
            double = i + 1 < n and s[i + 1] == "$"
            width = 2 if double else 1
            if open_at is None:
                open_at = (i, width)
            elif open_at[1] == width:
                spans.append((open_at[0] + width, i))
                open_at = None
            i += width
            continue
        i += 1
    if spans:
        a, b = spans[-1]
        if best is None or b > best[0]:
            best = (b, s[a:b])
    if best is None or not best[1].strip():
        return None
    return best[1].strip()


def _from_marker(s: str) -> str | None:
    matches = list(_MARKER.finditer(s))
    if not matches:
        return None
    for m in reversed(matches):
        rest = s[m.end():]
        end = _SENTENCE_END.search(rest)
        seg = rest[:end.start()] if end else rest
        seg = seg.strip().strip("*").strip()
        if not seg:
            continue
        math = _last_math(seg)
        if " is " in seg and (math is None or seg.rfind(" is ") > seg.rfind("$")):
            seg = seg[seg.rfind(" is ") + 4:].strip()
            math = _last_math(seg) or None
        return (math or seg).strip().rstrip(".").strip() or None
    return None


def _whole(s: str) -> str | None:
    t = s.strip()
    if not t or "\n" in t or len(t) > 80:
        return None
    if len(_WORD.findall(re.sub(r"\\[a-zA-Z]+", " ", t))) > 2:
        return None
    return t


def _last_number(s: str) -> str | None:
    last = None
    for m in _NUMBER.finditer(s):
        last = m
    if last is None:
        return None
    return last.group(0).replace(",", "")


def extract_answer(completion: str, *, last_number_fallback: bool = True) -> str | None:
    """The final answer written in ``completion``, or None (see the module doc for the tiers)."""
    if not completion or not completion.strip():
        return None
    for tier in (_from_boxes, _from_marker, _last_math, _whole):
        found = tier(completion)
        if found:
            return found
    if last_number_fallback:
        return _last_number(completion)
    return None
