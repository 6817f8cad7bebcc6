"""`verifrl report RUN_DIR`: a PNG of a run's curves from metrics.jsonl (a real tiny run, and hand-made files)."""

import json
import sys

import pytest

from tests.conftest import tiny_model_overrides
from verifrl.cli import main
from verifrl.report import ReportError, _panels, read_metrics, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write_metrics(run, records):
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_read_metrics_places_eval_points_and_keeps_the_last_record_of_a_resumed_step(tmp_path):
    _write_metrics(tmp_path, [
        {"step": -1, "eval/accuracy": 0.25, "eval/n": 8},
        {"step": 0, "reward/mean": 0.1, "entropy": 1.5, "kl": 0.0, "tool/calls": 2},
        {"step": 1, "reward/mean": 0.2, "entropy": None, "kl": 0.0, "tool/calls": 3, "eval/accuracy": 0.5},
        {"step": 1, "reward/mean": 0.3, "entropy": 1.2, "kl": 0.0, "tool/calls": 1},  # resumed: step 1 again
        {"step": 2, "eval/accuracy": 0.75},
    ])
    metrics = read_metrics(tmp_path / "metrics.jsonl")
    assert metrics.train["reward/mean"] == ([1, 2], [0.1, 0.3])
    assert metrics.train["entropy"] == ([1, 2], [1.5, 1.2])
    assert metrics.eval["eval/accuracy"] == ([0, 2], [0.25, 0.75])  # before RL at 0; the resumed step 1 had none
    titles = [title for title, _, _ in _panels(metrics)]
    assert titles == ["reward", "accuracy", "entropy", "tool calls"]  # KL all zero (beta=0): skipped


def test_a_run_with_a_critic_gets_its_panels(tmp_path):
    _write_metrics(tmp_path, [
        {"step": 0, "reward/mean": 0.1, "critic/value_loss": 0.4, "critic/explained_variance": -0.2,
         "critic/value_clip_fraction": 0.0},
        {"step": 1, "reward/mean": 0.2, "critic/value_loss": 0.3, "critic/explained_variance": 0.1,
         "critic/value_clip_fraction": 0.1},
    ])
    panels = {title: train for title, train, _ in _panels(read_metrics(tmp_path / "metrics.jsonl"))}
    assert panels["critic value loss"] == ["critic/value_loss"]
    assert panels["critic fit"] == ["critic/explained_variance", "critic/value_clip_fraction"]


def test_report_errors_are_one_line(tmp_path, monkeypatch, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    _write_metrics(tmp_path, [{"step": 0, "lr": 1e-3}])
    with pytest.raises(ReportError, match="nothing|no training"):
        write_report(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ReportError, match=r"pip install 'verifrl\[report\]'"):
        write_report(tmp_path)


@pytest.mark.slow
def test_report_of_a_real_tiny_run_writes_a_valid_png(tmp_path, capsys):
    import matplotlib.image

    assert main(["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "trainer.steps=3",
                 "rollout.num_prompts=4", "rollout.group_size=4", "rollout.max_new_tokens=12", "data.num_test=4",
                 "data.num_train=100", "eval.every_steps=2", f"logging.output_dir={tmp_path}",
                 "logging.run_name=r", "logging.wandb=disabled"]) == 0
    capsys.readouterr()
    out = tmp_path / "plots" / "curves.png"
    assert main(["report", str(tmp_path / "r"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(out).shape
    assert width > 600 and height > 200
    metrics = read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert metrics.eval["eval/accuracy"][0] == [0, 2, 3]  # before RL, the periodic one, after RL
    assert [t for t, _, _ in _panels(metrics)][:5] == ["reward", "accuracy", "completion length (tokens)",
                                                       "entropy", "clip fraction"]
    assert write_report(tmp_path / "r") == tmp_path / "r" / "report.png"  # the default place
