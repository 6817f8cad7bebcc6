"""Resume is exact with tools on: 4 steps straight == 2 steps, checkpoint, resume to 4 (bitwise)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from verifrl.tasks.arithmetic import generate_problems
from tests.test_tool_rollout import ids, transcript
from tests.tool_script import ScriptedLM
from verifrl import trainer
from verifrl.config_loading import load_config
from verifrl.embedded import prompt_text


def _scripted_policy(tok):
    """Every train/test question of the run gets a transcript that calls python; peak 9 leaves the
    sampler room to deviate (broken code, wrong digits), so rewards and calls vary between samples."""
    scripts = {}
    for split in ("train", "test"):
        for problem in generate_problems(8, split, seed=0):
            script, _ = transcript(tok, problem.expression, str(problem.answer), str(problem.answer))
            scripts[prompt_text(problem.question)] = script
    return lambda *args, **kwargs: (ScriptedLM(tok, scripts, peak=9.0), tok)


def _cfg(steps):
    return load_config("recipes/tiny-arith.yaml", [
        f"trainer.steps={steps}", "rollout.tools=[python]", "rollout.num_prompts=2", "rollout.group_size=4",
        "rollout.max_new_tokens=40", "data.num_train=8", "data.num_test=2", "trainer.lr=0.5",
        "loss.beta=0.04", "reward.tool_error_penalty=0.1", "eval.pass_k=2", "checkpoint.every_steps=2",
        "checkpoint.keep_last=0", "checkpoint.save_final_model=false", "logging.wandb=disabled",
        "logging.progress=false", "trainer.threads=1"])


@pytest.fixture()
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_resume_with_tools_is_bitwise_equal_to_a_straight_run(tmp_path, tiny_tokenizer, monkeypatch,
                                                              _restore_threads):
    monkeypatch.setattr(trainer, "load_policy", _scripted_policy(tiny_tokenizer))
    quiet = lambda *a, **k: None  # noqa: E731
    straight = trainer.train(_cfg(4), run_dir=tmp_path / "straight", log=quiet)
    trainer.train(_cfg(2), run_dir=tmp_path / "resumed", log=quiet)
    resumed = trainer.train(_cfg(4), run_dir=tmp_path / "resumed", resume=True, log=quiet)

    def weights(run):
        return load_file(tmp_path / run / "checkpoints" / "step-4" / "model.safetensors")

    a, b = weights("straight"), weights("resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["bias"], torch.zeros_like(a["bias"]))  # it did train

    def step_metrics(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r for r in map(json.loads, lines) if r["step"] >= 0 and "reward/mean" in r}

    ma, mb = step_metrics("straight"), step_metrics("resumed")
    assert sum(ma[s]["tool/calls_per_completion"] for s in range(4)) > 0  # the tool was really called
    for step in (2, 3):
        for key in ("reward/mean", "loss", "tool/calls_per_completion", "tool/error_rate", "tool/observation_tokens"):
            assert ma[step][key] == mb[step][key], (step, key)
    assert straight["eval_after"] == resumed["eval_after"]
    assert "tool_calls_per_completion" in straight["eval_before"]
