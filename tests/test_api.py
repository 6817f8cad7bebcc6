"""The Python API: load_config / train / evaluate on the (shrunk) embedded default, with on_step."""

import json
import subprocess
import sys

import pytest

from tests.conftest import tiny_model_overrides


def _config(tmp_path, steps: int, run_name: str, *extra: str):
    from verifrl import load_config

    return load_config("recipes/tiny-arith.yaml", [
        *tiny_model_overrides(), f"trainer.steps={steps}", "rollout.num_prompts=4", "rollout.group_size=4",
        "rollout.max_new_tokens=16", "data.num_test=8", "data.num_train=100",
        f"logging.output_dir={tmp_path}", f"logging.run_name={run_name}", "logging.wandb=disabled", *extra])


def test_import_verifrl_is_light():
    code = "import sys, verifrl; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


@pytest.mark.slow
def test_train_calls_on_step_and_returns_the_summary_then_evaluate_reads_the_run(tmp_path):
    from verifrl import evaluate, train

    seen = []
    summary = train(_config(tmp_path, 2, "api", "eval.every_steps=1"), on_step=lambda step, metrics: seen.append((step, metrics)))
    assert [step for step, _ in seen] == [0, 1]
    assert {"reward/mean", "reward/accuracy", "entropy", "lr"} <= set(seen[0][1])
    assert "eval/accuracy" in seen[0][1]  # eval.every_steps=1: the periodic evaluation reaches the callback
    assert summary["steps"] == 2 and summary["stopped_at"] is None
    assert summary == {**json.loads((tmp_path / "api" / "summary.json").read_text()), "config": summary["config"]}
    result = evaluate(_config(tmp_path, 2, "api"), checkpoint=summary["run_dir"], pass_k=2)
    assert result["checkpoint"].endswith("step-2") and result["n"] == 8
    assert result["accuracy"] == summary["eval_after"]["accuracy"]  # the same weights, greedy, same rows
    assert 0.0 <= result["pass@2"] <= 1.0


@pytest.mark.slow
def test_on_step_stops_the_run_cleanly_and_the_run_resumes(tmp_path):
    from verifrl import StopTraining, train

    def stop_after_first(step, metrics):
        if step == 0:
            raise StopTraining

    summary = train(_config(tmp_path, 3, "stopped"), on_step=stop_after_first)
    run = tmp_path / "stopped"
    assert summary["stopped_at"] == 1 and summary["eval_after"]["n"] == 8
    assert (run / "checkpoints" / "latest").read_text() == "step-1"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [-1, 0, 1]  # eval before, one step, eval after (logged at the step it stopped at)
    resumed = train(_config(tmp_path, 3, "stopped"), resume=True, on_step=lambda step, metrics: step < 1)
    assert resumed["stopped_at"] == 2
    assert (run / "checkpoints" / "latest").read_text() == "step-2"
