"""StreamingScorer: rows verified as they are submitted give exactly what score_rollouts gives, and
verification really starts while the sampler is still running."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from verifiers import VerifyResult, register
from verifrl.config import VerifierSpec
from verifrl.rollout import generate
from verifrl.scoring import NamedVerifier, StreamingScorer, VerifierFailure, build_verifiers, score_rollouts

# answers the fast path decides, ones the sympy worker decides, and rows without an answer
MATH_ROWS = [
    ("3 + 4 = 7\nAnswer: 7", "7"),
    ("Answer: 8", "7"),
    ("so the result is \\boxed{\\frac{1}{2}}", "0.5"),
    ("Answer: 2/4", "1/2"),
    ("Answer: \\sqrt{8}", "2\\sqrt{2}"),
    ("Answer: x^2 - 1", "(x-1)(x+1)"),
    ("I do not know", "12"),
    ("", "3"),
    ("Answer: 1,000", "1000"),
    ("12 - 5 = 7\nAnswer: 6", "7"),
]


def _lines(completion: str, example: dict) -> VerifyResult:
    """A step scorer: each line is a step, 1 when it contains the reference answer, else 0."""
    spans, start = [], 0
    for line in completion.splitlines(keepends=True) or [""]:
        spans.append((start, start + len(line)))
        start += len(line)
    scores = [float(str(example["answer"]) in completion[a:b]) for a, b in spans]
    return VerifyResult(score=sum(scores) / len(scores), step_scores=scores, step_spans=spans,
                        info={"reason": "lines"})


def _streamed(verifiers, texts, examples, order, on_error="raise", size=3):
    """Submit ``texts`` in the given row order, ``size`` rows per call, and gather."""
    with StreamingScorer(verifiers, examples, on_error) as scorer:
        for k in range(0, len(order), size):
            rows = order[k:k + size]
            scorer.submit(rows, [texts[r] for r in rows])
        return scorer.result()


def _assert_same(a, b):
    assert torch.equal(a.scores, b.scores) and torch.equal(a.rewards, b.rewards)
    assert a.metrics == b.metrics
    assert [[(r.score, r.step_scores, r.step_spans, r.info) for r in rs] for rs in a.results] == \
        [[(r.score, r.step_scores, r.step_spans, r.info) for r in rs] for rs in b.results]
    assert a.step_scores == b.step_scores and a.step_spans == b.step_spans


@pytest.fixture()
def math_and_lines():
    verifiers = [*build_verifiers([VerifierSpec("math", 1.0)]), NamedVerifier("lines", 0.5, _lines)]
    yield verifiers
    for named in verifiers:
        named.close()


def test_streamed_rows_score_exactly_like_the_whole_batch(math_and_lines):
    texts = [t for t, _ in MATH_ROWS]
    examples = [{"answer": a} for _, a in MATH_ROWS]
    whole = score_rollouts(texts, examples, math_and_lines)
    # hand-checked: math is right on rows 0, 2, 3, 4, 5, 8; rows 6 and 7 have no answer
    assert whole.scores[:, 0].tolist() == [1, 0, 1, 1, 1, 1, 0, 0, 1, 0]
    assert whole.metrics["verifier/math/no_answer_rate"] == pytest.approx(0.2)
    assert whole.step_scores[9] == [1.0, 0.0]  # "12 - 5 = 7\n" holds the answer 7, "Answer: 6" does not
    # row 8: math equal, but its one line "Answer: 1,000" does not contain the text "1000"
    assert whole.rewards.tolist()[8:] == [1.0 + 0.5 * 0.0, 0.0 + 0.5 * 0.5]
    for order in (list(range(10)), [9, 4, 0, 7, 2, 8, 1, 6, 3, 5]):
        _assert_same(_streamed(math_and_lines, texts, examples, order), whole)
    _assert_same(_streamed(math_and_lines, texts, examples, list(range(10)), size=10), whole)


def test_a_failing_verifier_surfaces_from_result_with_the_same_message():
    def picky(completion: str, example: dict) -> float:
        if "boom" in completion:
            raise ZeroDivisionError("no boom allowed")
        return 1.0

    verifiers = [NamedVerifier("picky", 1.0, picky)]
    texts = ["fine", "boom here", "fine too"]
    examples = [{"answer": "1"}] * 3
    with pytest.raises(VerifierFailure) as whole:
        score_rollouts(texts, examples, verifiers)
    with pytest.raises(VerifierFailure) as streamed:
        _streamed(verifiers, texts, examples, [0, 1, 2], size=1)
    assert str(streamed.value) == str(whole.value) and "no boom allowed" in str(whole.value)
    # on_error=zero: the row scores 0 and the error rate is the same
    zero = score_rollouts(texts, examples, verifiers, "zero")
    assert zero.metrics["verifier/picky/error_rate"] == pytest.approx(1 / 3)
    _assert_same(_streamed(verifiers, texts, examples, [2, 1, 0], on_error="zero", size=1), zero)


def test_rows_submitted_twice_or_missing_are_refused_and_the_thread_stops():
    verifiers = [NamedVerifier("one", 1.0, lambda c, e: 1.0)]
    with StreamingScorer(verifiers, [{}] * 3) as scorer:
        scorer.submit([0, 2], ["a", "c"])
        with pytest.raises(ValueError, match="row 2 was submitted twice"):
            scorer.submit([2], ["c"])
        with pytest.raises(IndexError, match="row 3"):
            scorer.submit([3], ["d"])
        with pytest.raises(ValueError, match=r"1 of 3 rows were never submitted \(first: \[1\]\)"):
            scorer.result()
        scorer.submit([1], ["b"])
        assert scorer.result().rewards.tolist() == [1.0, 1.0, 1.0]
        thread_names = {t.name for t in threading.enumerate()}
        assert any(name.startswith("verifrl-verify") for name in thread_names)
    assert not any(t.name.startswith("verifrl-verify") for t in threading.enumerate())


# --------------------------------------------------------------------------------------------
# Real overlap with the sampler: a slow verifier registered by name

EVENTS: list[tuple[str, object]] = []
STARTED = threading.Event()


@register("test_sleepy")
def _sleepy(completion: str, example: dict) -> float:
    EVENTS.append(("verify", completion))
    STARTED.set()
    time.sleep(0.05)
    return float(len(completion) % 2)


def test_verification_of_early_rows_starts_before_generation_ends(tiny_model, tiny_tokenizer):
    stops = [tiny_tokenizer.eos_token_id] + [tiny_tokenizer.convert_tokens_to_ids(d) for d in "0123456789"]
    tiny_model.generation_config.eos_token_id = stops
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens.\nSolution:\n"]
    verifiers = build_verifiers([VerifierSpec("test_sleepy")])
    examples = [{"answer": "7"}] * 6 + [{"answer": "5"}] * 6
    EVENTS.clear()
    STARTED.clear()

    def on_finished(rows, texts):
        EVENTS.append(("finished", tuple(rows)))
        scorer.submit(rows, texts)
        # the first rows wait until their check has begun, so the ordering below does not depend on
        # how the threads happen to be scheduled; the sampler itself still runs on
        STARTED.wait(timeout=30)

    torch.manual_seed(1)
    with StreamingScorer(verifiers, examples) as scorer:
        batch = generate(tiny_model, tiny_tokenizer, prompts, group_size=6, max_new_tokens=16, temperature=1.5,
                         on_finished=on_finished)
        EVENTS.append(("generate returned", None))
        streamed = scorer.result()
    kinds = [kind for kind, _ in EVENTS]
    first_verify, last_finished = kinds.index("verify"), len(kinds) - 1 - kinds[::-1].index("finished")
    assert first_verify < last_finished < kinds.index("generate returned")  # checked while others were sampled
    assert kinds.count("finished") > 1
    assert kinds.count("verify") == 12
    EVENTS.clear()
    _assert_same(streamed, score_rollouts(batch.texts, examples, verifiers))
