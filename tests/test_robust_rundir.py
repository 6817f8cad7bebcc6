"""Run directories under careless hands: one run at a time (two real processes), no silent
overwrite, and a resume after a kill between checkpoints that never repeats a step."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_model_overrides
from verifrl.checkpoint import save_checkpoint
from verifrl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _args(run_dir: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), f"trainer.steps={steps}",
            "rollout.num_prompts=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "data.num_train=50",
            "data.num_test=2", "eval.before=false", "checkpoint.save_final_model=false", "logging.wandb=disabled",
            "logging.progress=false", "logging.sample_table_every=1", "trainer.threads=1", "--run-dir", str(run_dir),
            *extra]


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "verifrl", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"process ended before {what}: {process.stderr.read()[-2000:]}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _lock_holder(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow
def test_a_second_run_on_the_same_directory_fails_fast_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = _start(_args(run_dir, 10_000))
    try:
        _wait_for(lambda: _lock_holder(run_dir) == first.pid, first, "the first run to lock its directory")
        second = _start(_args(run_dir, 1))
        _, err = second.communicate(timeout=240)
        assert second.returncode == 2
        assert f"in use by pid {first.pid}" in err and "--run-dir" in err
        assert first.poll() is None  # the first run is untouched
    finally:
        first.kill()
        first.wait()
    assert _lock_holder(run_dir) == first.pid  # SIGKILL: the lock file stays behind, its flock is gone
    assert main(_args(run_dir, 1, "--overwrite")) == 0
    out = capsys.readouterr().out
    assert f"took over the lock left by pid {first.pid}" in out
    assert (run_dir / ".lock").read_text() == ""  # released at the end


@pytest.mark.slow
def test_reusing_a_run_directory_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(_args(run_dir, 3, "checkpoint.every_steps=1", "checkpoint.keep_last=0")) == 0
    metrics_before = (run_dir / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(_args(run_dir, 1)) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (run_dir / "metrics.jsonl").read_text() == metrics_before  # nothing was touched
    assert main(_args(run_dir, 1, "--resume", "--overwrite")) == 2
    assert main(_args(run_dir, 1, "--overwrite")) == 0
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step-*")) == ["step-1"]  # no stale step-2/3
    assert [r["step"] for r in _records(run_dir / "metrics.jsonl") if "reward/mean" in r] == [0]


@pytest.mark.slow
def test_resume_after_a_kill_between_checkpoints_never_repeats_a_step(tmp_path, capsys):
    run_dir, steps = tmp_path / "run", 6
    args = _args(run_dir, steps, "checkpoint.every_steps=2", "checkpoint.keep_last=0")
    process = _start(args)
    metrics = run_dir / "metrics.jsonl"

    def logged(step: int) -> bool:
        return metrics.exists() and f'"step": {step},' in metrics.read_text()

    try:
        _wait_for(lambda: logged(2), process, "step 2 to be logged")  # after checkpoint step-2, before step-4
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-2"
    assert max(r["step"] for r in _records(metrics)) >= 2  # steps the checkpoint does not have
    with open(metrics, "a") as f:
        f.write('{"step": 3, "reward/me')  # a line cut in half by the kill
    # a checkpoint write interrupted by a kill leaves its staging directory and pointer behind
    stale = run_dir / "checkpoints" / ".step-4-k1ll3d"
    stale.mkdir()
    (stale / "model.pt").write_bytes(b"PK\x03\x04")
    (run_dir / "checkpoints" / ".latest.tmp").write_text("step-")

    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "removed .step-4-k1ll3d" in out and "metrics.jsonl: dropped" in out
    assert not stale.exists() and not (run_dir / "checkpoints" / ".latest.tmp").exists()
    train_steps = [r["step"] for r in _records(metrics) if "reward/mean" in r]
    assert train_steps == list(range(steps))  # strictly increasing and complete
    sample_steps = [r["step"] for r in _records(run_dir / "samples.jsonl")]
    assert sample_steps == sorted(sample_steps) and sorted(set(sample_steps)) == list(range(steps))


def test_truncating_step_logs_keeps_earlier_steps_and_the_pre_rl_evaluation(tmp_path):
    from verifrl.rundir import truncate_step_logs

    lines = [{"step": -1, "eval/accuracy": 0.1}, {"step": 0}, {"step": 1}, {"step": 2}, {"step": 3}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "lo')
    assert truncate_step_logs(tmp_path, 2) == {"metrics.jsonl": 3}
    assert _records(tmp_path / "metrics.jsonl") == lines[:3]


def test_stale_staging_is_removed_and_a_step_moved_aside_is_restored(tmp_path):
    from verifrl.checkpoint import remove_stale_staging

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    for step in (2, 3):
        save_checkpoint(tmp_path, step, model, optimizer, None, {"sampler": {}}, {}, keep_last=0)
    root = tmp_path / "checkpoints"
    (root / ".step-5-abc").mkdir()
    (root / ".old-step-3-xyz").mkdir()
    (root / "step-3").rename(root / ".old-step-3-xyz" / "step-3")  # killed mid re-save of step 3
    removed = remove_stale_staging(tmp_path)
    assert sorted(removed) == [".old-step-3-xyz (restored as step-3)", ".step-5-abc"]
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-2", "step-3"]
