"""Exact resume: N steps straight == k steps, SIGKILL, --resume to N (bitwise, on CPU); and a crash
in the middle of writing a checkpoint never corrupts ``latest``."""

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
from verifrl.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from verifrl.cli import main
from verifrl.hf_export import load_exported_weights

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4


def _args(run_dir: Path, *extra: str) -> list[str]:
    return ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(),
            f"trainer.steps={STEPS}", "rollout.num_prompts=3", "rollout.group_size=4", "rollout.max_new_tokens=12",
            "data.num_train=100", "data.num_test=3", "trainer.threads=1",
            # everything that carries state across a step: schedule, KL reference, refill's extra
            # prompts, pass@k sampling inside periodic evaluation, several updates per batch
            "trainer.lr_schedule=cosine", "trainer.warmup_steps=2", "loss.beta=0.04", "trainer.num_iterations=2",
            "rollout.dynamic_sampling=refill", "rollout.max_refill_rounds=1",
            # the shrunk test model is never right: the overlong penalty gives the groups reward spread
            "reward.overlong_cache_length=10",
            "eval.every_steps=2", "eval.pass_k=2", "checkpoint.every_steps=2", "checkpoint.keep_last=0",
            "checkpoint.save_final_model=false", "logging.wandb=disabled", "logging.progress=false",
            "--run-dir", str(run_dir), *extra]


@pytest.fixture()
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_exported_weights(run_dir / "checkpoints" / f"step-{step}")


def _step_metrics(run_dir: Path) -> dict[int, dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records if r["step"] >= 0 and "reward/mean" in r}


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal_to_a_straight_run(tmp_path, _restore_threads):
    # the straight run and the resume run in this process (imports cost ~10 s a process on this
    # machine); the run that gets killed is a real `python -m verifrl train` process
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(_args(straight)) == 0

    process = subprocess.Popen([sys.executable, "-m", "verifrl", *_args(killed)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pointer = killed / "checkpoints" / "latest"
    deadline = time.time() + 240
    while not pointer.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    resumed_from = int(pointer.read_text().split("-")[1])
    assert 0 < resumed_from < STEPS
    assert not (killed / "summary.json").exists()

    assert main(_args(killed, "--resume")) == 0
    a, b = _weights(straight, STEPS), _weights(killed, STEPS)
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ after resume from step {resumed_from}: {differing[:5]}"
    # the steps after the resume point saw the same samples and rewards, and they did train
    ma, mb = _step_metrics(straight), _step_metrics(killed)
    assert all("loss" in ma[step] for step in range(STEPS))
    assert not all(torch.equal(a[k], _weights(straight, resumed_from)[k]) for k in a)
    for step in range(resumed_from, STEPS):
        for key in ("reward/mean", "loss", "grad_norm", "rollout/sampled_groups", "lr"):
            assert ma[step].get(key) == mb[step].get(key), (step, key)
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((killed / "summary.json").read_text())
    assert sa["eval_after"] == sb["eval_after"] and sa["eval_before"] == sb["eval_before"]


def _tiny_state(value: float):
    model = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(model.weight, value)
    optimizer = torch.optim.AdamW(model.parameters())
    return model, optimizer


def test_a_crash_mid_write_never_corrupts_latest(tmp_path):
    model, optimizer = _tiny_state(1.0)
    save_checkpoint(tmp_path, 2, model, optimizer, None, {"sampler": {}}, {}, keep_last=0)
    root = tmp_path / "checkpoints"
    # a writer killed while staging step 4: a temp dir with a truncated model file, a half-written pointer
    stray = root / ".step-4-abc123"
    stray.mkdir()
    (stray / "model.pt").write_bytes(b"PK\x03\x04trunc")
    (stray / "state.pt").write_bytes(b"")
    (root / ".latest.tmp").write_text("step-")
    assert latest_checkpoint(tmp_path) == root / "step-2"
    restored, _ = _tiny_state(0.0)
    load_checkpoint(latest_checkpoint(tmp_path), restored)
    assert torch.equal(restored.weight, model.weight)

    # killed while re-saving the same step: the old copy was moved aside, the new one not yet in place
    save_checkpoint(tmp_path, 3, model, optimizer, None, {"sampler": {}}, {}, keep_last=0)
    (root / "step-3").rename(root / ".old-step-3-xyz")
    assert (root / "latest").read_text() == "step-3"
    assert latest_checkpoint(tmp_path) == root / "step-2"  # the newest complete one
    (root / "latest").write_text("")  # a pointer emptied by a non-atomic filesystem
    assert latest_checkpoint(tmp_path) == root / "step-2"

    # the next save still works and ignores the debris
    model2, optimizer2 = _tiny_state(2.0)
    save_checkpoint(tmp_path, 4, model2, optimizer2, None, {"sampler": {}}, {}, keep_last=1)
    assert latest_checkpoint(tmp_path) == root / "step-4"
    assert [p.name for p in root.glob("step-*")] == ["step-4"]
    assert stray.exists()  # left for inspection, never loaded


def test_resaving_a_step_replaces_it(tmp_path):
    model, optimizer = _tiny_state(1.0)
    save_checkpoint(tmp_path, 5, model, optimizer, None, {"sampler": {}}, {})
    torch.nn.init.constant_(model.weight, 3.0)
    save_checkpoint(tmp_path, 5, model, optimizer, None, {"sampler": {}}, {})
    restored, _ = _tiny_state(0.0)
    load_checkpoint(latest_checkpoint(tmp_path), restored)
    assert torch.equal(restored.weight, torch.full((2, 2), 3.0))
    assert not list((tmp_path / "checkpoints").glob(".old-step-*"))
