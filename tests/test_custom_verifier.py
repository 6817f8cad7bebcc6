"""A user's own verifier plugs in by import path, mixes with weights, and is trained on."""

import json

import pytest
import torch

from examples.custom_verifier import concise_answer
from tests.conftest import tiny_model_overrides
from verifiers import get_verifier
from verifrl.cli import main
from verifrl.hf_export import load_exported_weights


def test_custom_verifier_scores_by_its_rule():
    example = {"answer": "14"}
    assert concise_answer("12 + 2 = 14\nAnswer: 14", example).score == 1.0
    assert concise_answer("12 + 2 = 15\nAnswer: 15", example).score == 0.0
    assert concise_answer("a\nb\nc\nd\nAnswer: 14", example).score == 0.0  # five lines > max_lines
    bound = get_verifier("examples.custom_verifier:concise_answer", max_lines=10)
    assert bound("a\nb\nc\nd\nAnswer: 14", example).score == 1.0


@pytest.mark.slow
def test_training_with_a_weighted_custom_verifier_logs_it_separately(tmp_path):
    verifiers = ("reward.verifiers=[{name: math, weight: 1.0}, "
                 "{name: 'examples.custom_verifier:concise_answer', weight: 0.5, kwargs: {max_lines: 3}}]")
    args = ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), verifiers, "trainer.steps=2",
            "rollout.num_prompts=3", "rollout.group_size=4", "rollout.max_new_tokens=20", "data.num_test=8",
            "data.num_train=100", f"logging.output_dir={tmp_path}", "logging.run_name=custom", "logging.wandb=disabled"]
    assert main(args) == 0
    records = [json.loads(line) for line in (tmp_path / "custom" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if "reward/mean" in r)
    assert "verifier/math/mean_score" in step
    assert "verifier/examples.custom_verifier.concise_answer/mean_score" in step


def nan_on_odd_length(completion: str, example: dict) -> float:
    return float("nan") if len(completion) % 2 else 1.0


def test_a_nan_score_is_a_verifier_error_not_a_reward():
    """NaN would spread to every advantage of its group: stop (raise) or score 0 and count (zero)."""
    from verifrl.scoring import NamedVerifier, VerifierFailure, score_rollouts

    verifiers = [NamedVerifier("nan", 1.0, nan_on_odd_length)]
    texts, examples = ["ab", "abc", "abcd"], [{}] * 3
    with pytest.raises(VerifierFailure, match="non-finite score"):
        score_rollouts(texts, examples, verifiers, on_error="raise")
    scored = score_rollouts(texts, examples, verifiers, on_error="zero")
    assert scored.rewards.tolist() == [1.0, 0.0, 1.0]
    assert scored.metrics["verifier/nan/error_rate"] == pytest.approx(1 / 3)


def test_training_stops_clearly_after_repeated_nonfinite_updates(tmp_path, capsys, monkeypatch):
    """From step 1 on every loss is NaN (as with a float16 overflow): those updates are skipped and
    counted, the weights stay finite, and the second skip in a row ends the run with an error."""
    import verifrl.update as update

    real_loss, calls = update.policy_loss, []

    def nan_after_the_first_step(*args, **kwargs):
        loss, metrics = real_loss(*args, **kwargs)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 1 else loss), metrics

    monkeypatch.setattr(update, "policy_loss", nan_after_the_first_step)
    args = ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "trainer.steps=6",
            "trainer.max_nonfinite_updates=2", "rollout.num_prompts=2", "rollout.group_size=4",
            "rollout.max_new_tokens=8", "data.num_train=50", "data.num_test=2", "eval.before=false",
            "reward.verifiers=[{name: 'tests.test_distributed:varied_reward'}]", "logging.wandb=disabled",
            "logging.progress=false", f"logging.output_dir={tmp_path}", "logging.run_name=nan"]
    assert main(args) == 2
    assert "NaN/inf gradient" in capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [r["update/nonfinite_skipped"] for r in records if "update/nonfinite_skipped" in r] == [0.0, 1.0, 1.0]
    # nothing lost: the last finite weights are a checkpoint the run can resume from
    assert (tmp_path / "nan" / "checkpoints" / "latest").read_text() == "step-3"
    weights = load_exported_weights(tmp_path / "nan" / "checkpoints" / "step-3")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_diverged_weights_stop_the_run_with_a_clear_error(tmp_path, capsys):
    """lr 1e30 sends the weights to ~1e30 after one step: the next rollout's logits are inf, which
    is reported as such instead of a sampling failure deep in the loop."""
    args = ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "trainer.lr=1e30", "trainer.steps=4",
            "rollout.num_prompts=2", "rollout.group_size=4", "rollout.max_new_tokens=8", "data.num_train=50",
            "data.num_test=2", "eval.before=false", "reward.verifiers=[{name: 'tests.test_distributed:varied_reward'}]",
            "logging.wandb=disabled", "logging.progress=false", f"logging.output_dir={tmp_path}", "logging.run_name=d"]
    assert main(args) == 2
    assert "logits contain NaN/inf" in capsys.readouterr().err
