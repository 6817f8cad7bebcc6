"""Step segmentation: a solution's text -> the character spans of its reasoning steps.

Place in the data flow: rollouts -> **verifier results** (step spans) -> rewards; the trainer maps
the spans to tokens with :mod:`verifrl.segments` for process supervision.

:func:`split_steps` cuts the decoded completion into character spans ``(start, end)`` (end
exclusive). Boundary rule: the spans tile the text from 0 to ``len(text)``; a step starts where
its first line starts, the delimiter newline(s) after a step belong to that step, the first step
also takes any leading blank text and the last step extends to the end of the text (so trailing
text is covered). Whitespace-only text has no steps. Pure Python: no torch, no verifrl.
"""

from __future__ import annotations

import re
from typing import Callable, Sequence, Union

Span = tuple[int, int]
Segmenter = Union[str, Callable[[str], Sequence[Span]]]

SEGMENTERS = ("line", "step_marker", "paragraph")
# "Step 3:", "step 3.", "Step 3)" at the start of a line, and the final-answer line
_STEP_MARKER = re.compile(r"^[ \t]*(?:step[ \t]*\d+[ \t]*[:.)]|answer[ \t]*:)", re.IGNORECASE | re.MULTILINE)
_LINE = re.compile(r"[^\n]*\n?")


def _tile(starts: list[int], length: int) -> list[Span]:
    """Spans from sorted step starts: step k runs to the start of step k + 1; first from 0."""
    if not starts:
        return []
    starts = [0] + starts[1:]
    return [(s, e) for s, e in zip(starts, starts[1:] + [length])]


def _line_starts(text: str) -> list[tuple[int, str]]:
    """(start offset, content) of each line, newline excluded."""
    out = []
    for match in _LINE.finditer(text):
        if match.start() == len(text) and not match.group():
            break
        out.append((match.start(), match.group().rstrip("\n")))
    return out


def split_steps(text: str, segmenter: Segmenter = "line") -> list[Span]:
    """Character spans of the reasoning steps of ``text``.

    Args:
        text: the decoded completion.
        segmenter: ``"line"`` (default: one step per non-blank line), ``"paragraph"`` (blocks
            separated by blank lines), ``"step_marker"`` (a step starts at each "Step k:" line and
            at the "Answer:" line; no marker -> the whole text is one step), or a callable
            ``text -> spans`` (checked: sorted, non-overlapping, inside the text).

    Returns:
        ``[(start, end), ...]`` end exclusive, tiling ``[0, len(text))`` for the built-ins (see
        the module docstring for the boundary rule); ``[]`` for whitespace-only text.
    """
    if callable(segmenter):
        spans = [(int(s), int(e)) for s, e in segmenter(text)]
        previous_end = 0
        for s, e in spans:
            if not previous_end <= s <= e <= len(text):
                raise ValueError(f"segmenter returned bad span {(s, e)} (sorted, non-overlapping, within "
                                 f"the {len(text)} characters)")
            previous_end = e
        return spans
    if segmenter not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {segmenter!r}; valid: {', '.join(SEGMENTERS)} or a callable")
    if not text.strip():
        return []
    lines = _line_starts(text)
    if segmenter == "line":
        starts = [start for start, content in lines if content.strip()]
    elif segmenter == "paragraph":
        starts, previous_blank = [], True
        for start, content in lines:
            blank = not content.strip()
            if not blank and previous_blank:
                starts.append(start)
            previous_blank = blank
    else:  # step_marker
        starts = [m.start() for m in _STEP_MARKER.finditer(text)] or [0]
    return _tile(starts, len(text))
