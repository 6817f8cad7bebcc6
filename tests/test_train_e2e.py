"""End to end: `verifrl train` on the embedded default (shrunk), then resume and eval, all real."""

import json

import pytest

from tests.conftest import tiny_model_overrides
from verifrl.cli import main

pytestmark = pytest.mark.slow


def _train_args(tmp_path, *extra):
    return ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "trainer.steps=3",
            "rollout.num_prompts=4", "rollout.group_size=4", "rollout.max_new_tokens=24", "data.num_test=16",
            "data.num_train=200", "checkpoint.every_steps=2", f"logging.output_dir={tmp_path}",
            "logging.run_name=e2e", "logging.wandb=offline", "logging.sample_table_every=1", *extra]


def test_train_writes_summary_metrics_checkpoint_and_wandb_offline_run(tmp_path, capsys):
    assert main(_train_args(tmp_path)) == 0
    run = tmp_path / "e2e"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("eval_before", "eval_after"):
        assert set(summary[key]) >= {"accuracy", "mean_reward", "n"}
        assert summary[key]["n"] == 16
    assert summary["wall_seconds"] > 0
    assert summary["config"]["rollout"]["group_size"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["step"] >= 0 and "reward/mean" in r]
    assert [r["step"] for r in steps] == [0, 1, 2]
    for key in ("reward/mean", "reward/std", "reward/accuracy", "entropy", "clip_frac", "lr",
                "completion/mean_length", "time/generation", "time/verification", "time/update", "tokens_per_second"):
        assert key in steps[0], key
    assert (run / "checkpoints" / "latest").read_text() == "step-3"
    assert (run / "checkpoints" / "step-2" / "model.safetensors").exists()
    assert (run / "final_model" / "config.json").exists()
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    assert (run / "samples.jsonl").exists()
    out = capsys.readouterr().out
    assert "before RL" in out and "after RL" in out and "greedy accuracy" in out


def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    assert main(_train_args(tmp_path, "trainer.steps=2")) == 0
    assert main(_train_args(tmp_path, "trainer.steps=4") + ["--resume"]) == 0
    run = tmp_path / "e2e"
    assert (run / "checkpoints" / "latest").read_text() == "step-4"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "reward/mean" in r] == [0, 1, 2, 3]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_before"] is not None  # carried over from the first run's checkpoint


def test_eval_command_reads_a_checkpoint(tmp_path, capsys):
    assert main(_train_args(tmp_path, "trainer.steps=1")) == 0
    capsys.readouterr()
    assert main(["eval", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "data.num_test=8",
                 "rollout.max_new_tokens=16", "--checkpoint", str(tmp_path / "e2e"), "--pass-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 8 and 0.0 <= result["accuracy"] <= 1.0 and "pass@2" in result


@pytest.mark.parametrize("override, message", [
    ("reward.verifiers=[{name: nosuch}]", "unknown verifier 'nosuch'"),
    ("data.source=json", "data.path: source 'json' needs a hub name or a local file"),
    ("trainer.stepz=3", "unknown config key 'trainer.stepz'"),
])
def test_cli_config_errors_are_one_line_and_exit_2(tmp_path, capsys, override, message):
    assert main(["train", "recipes/tiny-arith.yaml", override, f"logging.output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("*/summary.json"))


def test_process_supervision_recipe_trains_and_logs_step_metrics(tmp_path):
    args = ["train", "recipes/tiny-arith-process.yaml", *tiny_model_overrides(), "trainer.steps=2",
            "rollout.num_prompts=3", "rollout.group_size=4", "rollout.max_new_tokens=24", "data.num_test=8",
            "data.num_train=100", f"logging.output_dir={tmp_path}", "logging.run_name=ps", "logging.wandb=disabled",
            "checkpoint.every_steps=0"]
    assert main(args) == 0
    records = [json.loads(line) for line in (tmp_path / "ps" / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in records if "reward/mean" in r)
    for key in ("steps/per_completion", "steps/accuracy", "steps/all_correct_rate", "steps/first_wrong_position"):
        assert key in step, key
    assert step["steps/per_completion"] > 0
