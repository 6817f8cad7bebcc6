"""Find the final answer in a model completion (the first step of verification).

Place: ``completion -> **extract** -> reading -> compare``. Pure string scanning, linear in the
length of the completion (no regex with nested quantifiers), so a 1 MB completion costs
milliseconds.

Tiers, the first that finds something wins:

1. whichever comes last of: the last ``\\boxed{..}`` / ``\\fbox{..}`` (nested braces; several
   boxes at the end separated only by a short phrase, ``\\boxed{1} and \\boxed{2}``, at most
   four words, form one answer ``1, 2``) and the last answer marker: ``#### 42`` (GSM8K),
   ``Answer: ...``, ``the (final) answer is ...`` -- the rest of that line, cut at the end of the
   sentence; inside it, the part after a last `` is `` (``Final Answer: The largest $n$ is 34.``)
   or its last ``$..$`` math, or its last number when it is prose;
2. whichever comes last of: the last concluding sentence (``Therefore ...``, ``Thus ...``), read
   like a marker line, and the last delimited math ``$..$``, ``$$..$$``, ``\\(..\\)``,
   ``\\[..\\]`` (spans joined only by "and"/"or"/commas form one answer);
3. the whole completion when it is short and reads as an answer, not prose (``42``, ``x^2+1``,
   ``10 square units``);
4. the last number, if ``last_number_fallback`` (default True).

Returns None when nothing is found (the verifier reports ``reason="no_answer"``).
"""

from __future__ import annotations

import re

from verifiers.math.normalize import unescape

_BOX_CMDS = ("\\boxed", "\\fbox")
_MAX_JOIN_WORDS = 4
_MARKER = re.compile(
    # markdown bold may wrap the keyword: "**Final Answer**: 9", "The **final answer** is 7"
    r"(?:####|(?:the\s+)?(?:\*\*?)?(?:final\s+)?answer(?:\*\*?)?\s*(?:is|:|=)\s*(?:\\?[:])?|(?:^|\n)\s*answer\s*[:.]?)",
    re.I)
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")
_NUMBER = re.compile(r"(?:-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)(?:\s?\\?%)?")
_CONCLUSION = re.compile(r"(?:^|[.!\n$]\s*)(?:therefore|thus|hence|so|in conclusion|in summary)\b[,:]?", re.I)
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


def _from_boxes(s: str) -> tuple[int, str] | None:
    boxes = [b for b in find_boxes(s) if b[2].strip()]
    if not boxes:
        return None
    chain = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        words = _separator_words(s[prev[1]:chain[0][0]])
        if words is None or words > _MAX_JOIN_WORDS:
            break
        chain.insert(0, prev)
    return chain[-1][0], ", ".join(b[2].strip() for b in chain)


_CONNECTORS = {"and", "or", ",", ";"}


def _math_spans(s: str) -> list[tuple[int, int, int, int]]:
    """``(open, content_start, content_end, close_end)`` of delimited math, in order."""
    spans = []
    for open_, close in (("\\[", "\\]"), ("\\(", "\\)")):
        i = 0
        while True:
            a = s.find(open_, i)
            if a < 0:
                break
            b = s.find(close, a + 2)
            if b < 0:
                break
            if open_ == "\\[" or "\n" not in s[a:b]:  # inline \( .. \) stays on one line
                spans.append((a, a + 2, b, b + 2))
            i = b + 2
    spans.extend(_dollar_spans(s))
    spans.sort()
    return spans


def _last_math(s: str) -> str | None:
    """Content of the last ``$..$`` / ``$$..$$`` / ``\\(..\\)`` / ``\\[..\\]``; several spans
    joined only by "and" / "or" / commas (``$1$ and $2$``) form one answer."""
    spans = [sp for sp in _math_spans(s) if s[sp[1]:sp[2]].strip()]
    if not spans:
        return None
    chain = [spans[-1]]
    for prev in reversed(spans[:-1]):
        between = s[prev[3]:chain[0][0]]
        words = between.replace(",", " , ").split()
        if prev[3] > chain[0][0] or not words or any(w.lower() not in _CONNECTORS for w in words):
            break
        chain.insert(0, prev)
    return ", ".join(s[a:b].strip() for _, a, b, _ in chain)


def _last_math_pos(s: str) -> tuple[int, str] | None:
    spans = [sp for sp in _math_spans(s) if s[sp[1]:sp[2]].strip()]
    found = _last_math(s)
    return (spans[-1][0], found) if found else None


def _dollar_spans(s: str) -> list[tuple[int, int, int, int]]:
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
                if width == 2 or "\n" not in s[open_at[0]:i]:  # inline $..$ stays on one line
                    spans.append((open_at[0], open_at[0] + width, i, i + width))
                open_at = None
            i += width
            continue
        i += 1
    return spans


def _from_marker(s: str) -> tuple[int, str] | None:
    matches = list(_MARKER.finditer(s))
    if not matches:
        return None
    for m in reversed(matches):
        found = _answer_after(s, m.end())
        if found:
            return m.start(), found
    return None


def _from_conclusion(s: str) -> tuple[int, str] | None:
    """The last "Therefore / Thus / So ..." sentence: its math, what follows its last " is ", or
    its last number."""
    last = None
    for m in _CONCLUSION.finditer(s):
        last = m
    if last is None:
        return None
    found = _answer_after(s, last.end(), conclusion=True)
    return (last.start(), found) if found else None


def _answer_after(s: str, start: int, conclusion: bool = False) -> str | None:
    """The answer written right after a marker or a concluding word at ``start``."""
    rest = s[start:]
    lead = rest.lstrip(" \t*:")
    if lead.startswith(("$", "\\[", "\\(")):
        # the answer is displayed math, possibly over several lines
        spans = _math_spans(lead)
        if spans and spans[0][0] == 0:
            return lead[spans[0][1]:spans[0][2]].strip() or None
    end = _SENTENCE_END.search(rest)
    seg = rest[:end.start()] if end else rest
    broken = _math_across_break(rest, len(seg))
    if broken is not None:
        return broken
    seg = seg.strip().strip("*").strip()
    if not seg:
        return None
    math = _last_math(seg)
    if " is " in seg and (math is None or seg.rfind(" is ") > seg.rfind("$")):
        seg = seg[seg.rfind(" is ") + 4:].strip()
        math = _last_math(seg) or None
    found = (math or seg).strip().rstrip(".").strip()
    if math is None and _prose(found):
        # "Jane started growing Sphere 3 hours ago" -> 3
        found = _last_number(found) or ("" if conclusion else found)
    return found or None


def _unescaped_dollars(s: str) -> list[int]:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] == "$":
            out.append(i)
        i += 1
    return out


def _math_across_break(rest: str, cut: int) -> str | None:
    """``The answer is $1\\n9$``: inline math opened before the end of the line and closed after a
    line break (within the paragraph). The whole span is the answer -- cutting it at the line
    break would turn a garbled ``1 9`` into ``1``. Delimiters follow pandoc's rule: the opening
    ``$`` is followed, the closing one preceded, by a non-space character."""
    dollars = _unescaped_dollars(rest[:cut])
    if len(dollars) % 2 == 0:
        return None
    open_at = dollars[-1]
    close = rest.find("$", cut)
    while close > 0 and rest[close - 1] == "\\":
        close = rest.find("$", close + 1)
    if close < 0 or "\n\n" in rest[open_at:close] or close - open_at > 2000:
        return None
    if rest[open_at + 1].isspace() or rest[close - 1].isspace():
        return None  # pandoc's rule: no space just inside inline $..$ ("$ \n 9 \n $" is not math)
    return rest[open_at + 1:close].strip() or None


def _prose(t: str) -> bool:
    return len(_WORD.findall(re.sub(r"\\[a-zA-Z]+", " ", t))) > 2


def _whole(s: str) -> str | None:
    t = s.strip()
    if not t or len(t) > 400 or ("\n" in t and "\\begin" not in t) or _prose(t):
        return None
    if not re.search(r"[\d\\=+\-^/()\[\]{}<>]", t) and len(t.split()) > 2:
        return None  # "I am not sure." is not an answer; "Evelyn" or "x y" may be
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
    completion = unescape(completion)
    # a box or an answer marker, whichever comes last ("\boxed{200} ... The final answer is 455")
    strong = [c for c in (_from_boxes(completion), _from_marker(completion)) if c]
    if strong:
        return max(strong)[1]
    weak = [c for c in (_from_conclusion(completion), _last_math_pos(completion)) if c]
    if weak:
        return max(weak)[1]
    found = _whole(completion)
    if found:
        return found
    if last_number_fallback:
        return _last_number(completion)
    return None
