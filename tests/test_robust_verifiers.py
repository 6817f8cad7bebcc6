"""Hostile verifiers: one that never returns or is slow cannot hang training (reward.verifier_timeout),
a huge score is an error (reward.max_abs_score), and all-error or unparsed-reference steps are loud."""

import json
import threading
import time

import pytest

from tests.conftest import tiny_model_overrides
from verifrl.cli import main
from verifrl.scoring import (MAX_STUCK_CALLS, NamedVerifier, VerifierFailure, build_verifiers, rate_warnings,
                             score_rollouts)

_FOREVER = threading.Event()  # never set


def never_returns(completion: str, example: dict) -> float:
    _FOREVER.wait()
    return 1.0


class NeverReturnsBatch:
    def __call__(self, completion, example):
        return 1.0

    def verify_batch(self, completions, examples):
        _FOREVER.wait()


def huge_score(completion: str, example: dict) -> float:
    return 1e300 if "7" in completion else 1.0


def _score_in_thread(*args, **kwargs):
    """score_rollouts on a thread that the test can give up on, so a regression fails, not hangs."""
    box = {}

    def run():
        try:
            box["value"] = score_rollouts(*args, **kwargs)
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "scoring hung on a verifier that never returns"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("verifier", [never_returns, NeverReturnsBatch()])
def test_a_verifier_that_never_returns_times_out_and_is_scored_as_an_error(verifier):
    named = [NamedVerifier("stuck", 1.0, verifier, timeout=0.2)]
    texts, examples = ["a", "b", "c", "d", "e", "f"], [{}] * 6
    scored = _score_in_thread(texts, examples, named, on_error="zero")
    assert scored.rewards.tolist() == [0.0] * 6
    assert scored.metrics["reward/verifier_timeouts"] == 6
    assert scored.metrics["verifier/stuck/verifier_timeout_rate"] == 1.0
    assert scored.metrics["reward/verifier_error_rate"] == 1.0
    assert all(r.info["reason"] == "verifier_timeout" for r in scored.results[0])
    assert len(named[0].stuck) <= MAX_STUCK_CALLS  # abandoned calls are bounded, not one per row
    with pytest.raises(VerifierFailure, match="reward.verifier_timeout=0.2s"):
        _score_in_thread(texts, examples, [NamedVerifier("stuck2", 1.0, verifier, timeout=0.2)], on_error="raise")


def test_a_slow_verifier_costs_at_most_its_stuck_calls_per_batch():
    calls = []

    def slow(completion, example):
        calls.append(completion)
        time.sleep(5)
        return 1.0

    named = [NamedVerifier("slow", 1.0, slow, timeout=0.1)]
    scored = _score_in_thread([str(i) for i in range(20)], [{}] * 20, named, on_error="zero")
    assert scored.metrics["reward/verifier_timeouts"] == 20
    assert len(calls) == MAX_STUCK_CALLS  # then it is no longer called while those are still running


def test_a_fast_verifier_under_a_deadline_scores_as_without_one():
    verifiers = build_verifiers([type("Spec", (), {"name": "math", "weight": 1.0, "kwargs": {}})()], timeout=30)
    try:
        scored = score_rollouts(["Answer: 4", "Answer: 5"], [{"answer": "4"}] * 2, verifiers)
    finally:
        verifiers[0].close()
    assert scored.rewards.tolist() == [1.0, 0.0] and scored.metrics["reward/verifier_error_rate"] == 0.0


def test_a_score_beyond_max_abs_score_is_a_verifier_error():
    named = [NamedVerifier("huge", 1.0, huge_score, max_abs_score=1e6)]
    texts, examples = ["1", "7", "2"], [{}] * 3
    with pytest.raises(VerifierFailure, match="reward.max_abs_score"):
        score_rollouts(texts, examples, named, on_error="raise")
    scored = score_rollouts(texts, examples, named, on_error="zero")
    assert scored.rewards.tolist() == [1.0, 0.0, 1.0]
    assert scored.metrics["verifier/huge/error_rate"] == pytest.approx(1 / 3)


def test_an_unparseable_reference_is_reported_and_warned_about():
    verifiers = build_verifiers([type("Spec", (), {"name": "math", "weight": 1.0, "kwargs": {}})()], timeout=30)
    try:
        scored = score_rollouts(["Answer: 2", "Answer: 3"], [{"answer": "the answer is clearly two"}] * 2, verifiers)
    finally:
        verifiers[0].close()
    assert [r.info["reason"] for r in scored.results[0]] == ["unparseable_reference"] * 2
    assert scored.metrics["reward/unparsed_reference_rate"] == 1.0
    assert any("reference answers could not be parsed" in w for w in rate_warnings(scored.metrics, 0.5))
    assert not rate_warnings({"reward/verifier_error_rate": 0.5, "reward/unparsed_reference_rate": 0.1}, 0.5)


@pytest.mark.slow
def test_training_with_a_verifier_that_never_returns_finishes_loudly(tmp_path, capsys):
    args = ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "trainer.steps=2", "rollout.num_prompts=2",
            "rollout.group_size=2", "rollout.max_new_tokens=4", "data.num_train=20", "data.num_test=2",
            "reward.verifiers=[{name: 'tests.test_robust_verifiers:never_returns'}]", "reward.verifier_timeout=0.2",
            "reward.on_verifier_error=zero", "logging.wandb=disabled", "logging.progress=false",
            "checkpoint.save_final_model=false", "--run-dir", str(tmp_path / "run")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "warning: step 0: 100% of verifier calls failed (4 timed out)" in out
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "reward/mean" in r]
    assert [r["reward/verifier_timeouts"] for r in steps] == [4, 4]
    assert all(r["reward/verifier_error_rate"] == 1.0 for r in steps)
