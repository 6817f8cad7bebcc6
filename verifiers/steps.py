"""Rule-based checks of each reasoning step: completion -> one reward per step (process supervision).

Place in the data flow: prompts -> rollouts -> **verifier results** (``step_scores`` and
``step_spans``) -> rewards -> advantages (``advantage.mode = process``) -> loss -> update -> logging.

``MathStepVerifier`` (registered as ``"math_steps"``) cuts the completion into steps with
:func:`verifiers.segments.split_steps`, finds the arithmetic claims each step makes and checks them
exactly (sympy Rationals, by :mod:`verifiers.claims`, a small parser: model text is never passed to
``eval``/``sympify``, and literal sizes, exponents and intermediate results are bounded so hostile
input cannot hang the checker).

Claims found in a step (a line, by default):
    - equality chains ``a op b = c``, ``a + b - c = d``, ``x = 3 + 4 = 7``; words around a chain
      are ignored ("He has 12 + 5 = 17 apples" claims 12 + 5 = 17);
    - substitutions: ``x = expr`` binds a one-letter variable, used by later claims (``2x = 14``);
    - simplifications ``expr1 = expr2``, fractions ``3/4 = 0.75``, powers ``2^5 = 32``;
    - percentages ``20% of 50 = 10`` (``%`` is /100, "of" is *), ``×``/``·``/``x`` between numbers
      is *, ``÷`` is /, thousands separators are dropped;
    - a decimal result is accepted when it is the exact value correctly rounded to the digits
      written (``10 / 3 = 3.33``).
    An equation with an unknown (``3x + 2 = 11``) is not a checkable claim.

Established values (``strict=True``): the numbers written in ``example["question"]`` (digits and
the number words zero..twenty), ``constants`` (default 0, 1, 100), the values of the true claims
of earlier steps and of earlier claims of the same step, and bound variables. Numbers that only
appear in prose or in false claims are not established. With ``strict`` a claim whose operand is
not established is *unsupported* and fails the step, which stops "1 + 1 = 2" padding from earning
step reward. Results written after ``=`` are checked, so they need not be established.

Scores: a step scores 1 when all its claims hold, 0 when one is false (or unsupported under
``strict``), and ``neutral_score`` (default 0.5) when it makes no checkable claim. 0.5, not 1:
DeepSeekMath's advantage sums the normalised rewards of all later steps, so a neutral score above
the group's mean would reward padding a solution with prose lines, and one at 0 would punish
explanations. The final-answer step ("Answer: N", "The answer is N", ``\\boxed{}``, ``#### N``) scores
whether the answer is right (``verifiers.math.extract_answer`` on the answer step's text, without
the last-number fallback, and ``answers_equal`` against ``example["answer"]``), which is also the
sequence-level ``score``. Text after the answer is
merged into the answer step (junk after the answer is not a free extra step). When there is no
answer, the answer step is the unfinished last line (no trailing newline: probably cut by the
length limit, so it is not checked) or, if the text ends on a newline, an empty step at the end;
it scores 0, so a completion without an answer is never gradient-free.

``step_spans`` are therefore :func:`split_steps`'s spans with the post-answer steps merged and,
when needed, that empty answer step appended.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import sympy

from verifiers.base import VerifyResult, register
from verifiers.claims import check_step, numbers_in
from verifiers.segments import split_steps

# "answer:" anywhere in a step, as verifiers.math.extract_answer reads it ("6 -Answer: 5" is an answer)
_ANSWER_LINE = re.compile(r"\banswer\s*(?:\*\*)?\s*[:=]|the\s+(?:final\s+)?answer\s+is|\\boxed\s*\{|^\s*####",
                          re.IGNORECASE)


def _answer_correct(answer_text: str, gold: Any) -> tuple[bool, str]:
    """Check the answer step against the reference with the math verifier (imported lazily so
    that this module does not need it at import time). Only the answer step's own text is read,
    and without the last-number fallback, so the answer step and the sequence score agree."""
    from verifiers.math import answers_equal, extract_answer, reference_answer  # noqa: PLC0415

    predicted = extract_answer(answer_text, last_number_fallback=False)
    if predicted is None or not predicted.strip():
        return False, "no_answer"
    return (True, "correct") if answers_equal(predicted, reference_answer(gold)) else (False, "wrong")


@register("math_steps")
class MathStepVerifier:
    """Per-step arithmetic checks plus final-answer correctness (see the module docstring).

    Args:
        segmenter: how to cut steps (``verifiers.segments.split_steps``): line, step_marker,
            paragraph, or a callable.
        neutral_score: score of a step with no checkable claim.
        strict: flag claims whose operands were not established before.
        constants: numbers always established under ``strict``.
    """

    def __init__(self, segmenter: str | Callable = "line", neutral_score: float = 0.5, strict: bool = False,
                 constants: Sequence[float] = (0, 1, 100)) -> None:
        self.segmenter = segmenter
        self.neutral_score = float(neutral_score)
        self.strict = bool(strict)
        self.constants = {sympy.Rational(str(c)) for c in constants}

    def __call__(self, completion: str, example: dict) -> VerifyResult:
        spans = split_steps(completion, self.segmenter)
        answer_index = next((k for k, (s, e) in enumerate(spans) if _ANSWER_LINE.search(completion[s:e])), None)
        if answer_index is not None:  # text after the answer belongs to the answer step
            spans = spans[:answer_index] + [(spans[answer_index][0], len(completion))]
        elif spans and not completion.endswith("\n"):
            answer_index = len(spans) - 1  # unfinished last line: taken as the (missing) answer step
        else:
            spans = spans + [(len(completion), len(completion))]
            answer_index = len(spans) - 1

        established = numbers_in(str(example.get("question", ""))) | set(self.constants)
        env: dict[str, sympy.Rational] = {}
        step_scores: list[float] = []
        details: list[dict[str, Any]] = []
        for k, (s, e) in enumerate(spans[:answer_index]):
            verdict, claims = check_step(completion[s:e], established, env, self.strict)
            score = self.neutral_score if verdict is None else float(verdict)
            failed = next((c for c in claims if c["ok"] is False), None)
            details.append({"step": k, "score": score, "claims": claims,
                            "failed": None if failed is None else failed["claim"],
                            "reason": None if failed is None else failed["reason"]})
            step_scores.append(score)

        answer_start, answer_end = spans[answer_index]
        if answer_end > answer_start and _ANSWER_LINE.search(completion[answer_start:answer_end]):
            correct, reason = _answer_correct(completion[answer_start:answer_end], example.get("answer", ""))
        else:
            correct, reason = False, "no_answer"
        step_scores.append(float(correct))
        details.append({"step": answer_index, "score": float(correct), "answer": True, "reason": reason})
        info: dict[str, Any] = {"steps": details}
        if not correct:
            info["reason"] = reason
        return VerifyResult(float(correct), step_scores, spans, info)
