"""A user's own verifier plugs in by import path, mixes with weights, and is trained on."""

import json

import pytest

from examples.custom_verifier import concise_answer
from tests.conftest import tiny_model_overrides
from verifiers import get_verifier
from verifrl.cli import main


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
