"""The trainer with the code verifier: real GRPO steps on the toy code task, tiny embedded model,
rewards from the real sandbox (no stubs)."""

import json

import pytest

from verifrl.tasks.code import toy_code_rows, write_jsonl
from tests.conftest import tiny_model_overrides
from verifrl.cli import main

pytestmark = pytest.mark.slow


def test_code_recipe_trains_with_sandboxed_rewards(tmp_path):
    data = tmp_path / "data"
    write_jsonl(toy_code_rows(64, seed=0), data / "train.jsonl")
    write_jsonl(toy_code_rows(8, seed=1), data / "test.jsonl")
    args = ["train", "recipes/code-toy.yaml", *tiny_model_overrides(), "trainer.steps=2", "rollout.num_prompts=4",
            "rollout.group_size=4", "data.num_test=8", f"data.path={data}", f"logging.output_dir={tmp_path}",
            "logging.run_name=code", "logging.wandb=disabled", "logging.sample_table_every=1",
            "checkpoint.every_steps=100"]
    assert main(args) == 0
    run = tmp_path / "code"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["step"] >= 0 and "reward/mean" in r]
    assert [r["step"] for r in steps] == [0, 1]
    for r in steps:
        assert 0.0 <= r["reward/mean"] <= 1.0 and r["time/verification"] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_after"]["n"] == 8


def test_code_toy_recipe_verifier_pays_the_reference_answers():
    """The recipe's verifier options (first-line pattern + code_prefix) give reward 1 to correct
    completions, so a policy that learns the task is paid; the tiny model above mostly is not."""
    import yaml

    from verifiers import get_verifier

    spec = yaml.safe_load(open("recipes/code-toy.yaml"))["reward"]["verifiers"][0]
    verifier = get_verifier(spec["name"], **spec["kwargs"])
    try:
        rows = toy_code_rows(6, seed=2)
        completions = [r["answer"] + "\nQuestion: junk after the first line" for r in rows]
        assert [r.score for r in verifier.verify_batch(completions, rows)] == [1.0] * 6
        assert [r.score for r in verifier.verify_batch(["x +", "Ans 4"], rows[:2])] == [0.0, 0.0]
    finally:
        verifier.close()
