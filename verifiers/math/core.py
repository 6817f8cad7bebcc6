"""The unguarded check of one (prediction, reference) pair of answer strings.

Place: called by :mod:`guard` inside the worker process (with a deadline) and by the fast path in
:mod:`fastpath` never (that one needs no sympy). Returns ``(equal, reason)`` where reason is
``"correct"``, ``"wrong"`` or ``"unparseable"`` (the prediction has no mathematical reading; an
unparseable *reference* is compared as text only; a mathematical prediction that does not match a
reference with no mathematical reading says ``"unparseable_reference"`` instead of ``"wrong"``, so a
dataset whose answers never parse shows up in the metrics instead of as silent zeros).
"""

from __future__ import annotations

from verifiers.math.compare import readings_equal
from verifiers.math.normalize import strip_wrappers
from verifiers.math.nodes import Text
from verifiers.math.policy import Policy
from verifiers.math.reading import Reading, Unparseable, read_answer


def _readings(s: str, policy: Policy) -> tuple[Reading, ...] | None:
    try:
        return read_answer(s, policy.max_answer_chars)
    except Unparseable:
        return None


def check(pred: str, gold: str, policy: Policy) -> tuple[bool, str]:
    if pred is None:
        return False, "no_answer"
    if len(pred) > policy.max_answer_chars:
        return False, "unparseable"
    if strip_wrappers(pred) == strip_wrappers(gold) and strip_wrappers(gold):
        return True, "correct"
    gr = _readings(gold, policy)
    pr = _readings(pred, policy)
    if pr is None:
        return False, "unparseable"
    if gr is None:
        gr = (Reading(Text(" ".join(gold.lower().split()))),)
    for g in gr:
        for p in pr:
            if readings_equal(g, p, policy):
                return True, "correct"
    # a mathematical prediction against a reference that only reads as words ("the answer is
    # clearly two"): it can never match, which says more about the reference than the prediction
    gold_is_math = any(not isinstance(g.node, Text) for g in gr)
    pred_is_math = any(not isinstance(p.node, Text) for p in pr)
    return False, "wrong" if gold_is_math or not pred_is_math else "unparseable_reference"
