"""Sampler ranks under torchrun (gloo): the last rank samples while the others train.

One trainer + one sampler rank must give exactly the single-device pipeline's run (same schedule,
same seeds, same weights), also across a resume; two trainers + one sampler train, resume and
write once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_model_overrides

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(run_dir: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), f"trainer.steps={steps}",
            "rollout.num_prompts=4", "rollout.group_size=4", "rollout.max_new_tokens=12", "data.num_train=100",
            "data.num_test=4", "trainer.threads=1", "trainer.sampler_threads=1", "eval.before=false",
            "reward.overlong_cache_length=8",
            "trainer.off_policy_steps=1", "checkpoint.every_steps=2", "checkpoint.keep_last=0",
            "logging.wandb=disabled", "logging.progress=false", "logging.sample_table_every=0",
            "--run-dir", str(run_dir), *extra]


def _run(args: list[str], tmp_path: Path, nproc: int = 1) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "TMPDIR": str(tmp_path)}
    launcher = [sys.executable] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
        str(_free_port())]
    proc = subprocess.run([*launcher, "-m", "verifrl", *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final_model" / "model.safetensors"))


def _train_steps(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["step"] >= 0 and "reward/mean" in r]


def test_one_sampler_rank_equals_the_single_device_pipeline_across_a_resume(tmp_path):
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    for run_dir, nproc, extra in ((single, 1, ()), (ranks, 2, ("trainer.sampler_ranks=1",))):
        _run(_args(run_dir, 2, *extra), tmp_path, nproc=nproc)
        log = _run(_args(run_dir, 4, *extra, "--resume"), tmp_path, nproc=nproc)
    assert "sampler rank 1: sampled 2 batch parts" in log  # batches 2 and 3, after the resume
    a, b = _weights(single), _weights(ranks)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)  # bitwise, on one machine
    steps_a, steps_b = _train_steps(single), _train_steps(ranks)
    assert [r["step"] for r in steps_b] == [0, 1, 2, 3]
    # each run sampled batch s with version max(v0, s - 1): v0 = 0, then 2 after the resume
    assert [r["offpolicy/staleness_max"] for r in steps_b] == [0.0, 1.0, 0.0, 1.0]
    for x, y in zip(steps_a, steps_b):
        assert (x["reward/mean"], x["loss"], x["grad_norm"]) == (y["reward/mean"], y["loss"], y["grad_norm"])


def test_two_trainer_ranks_and_one_sampler_rank_train_and_resume(tmp_path):
    run = tmp_path / "run"
    _run(_args(run, 2, "trainer.sampler_ranks=1"), tmp_path, nproc=3)
    _run(_args(run, 3, "trainer.sampler_ranks=1", "--resume"), tmp_path, nproc=3)
    steps = _train_steps(run)
    assert [r["step"] for r in steps] == [0, 1, 2]  # rank 0 alone wrote each step once
    assert all(r["completion/generated_tokens"] > 0 for r in steps)
    start = load_file(str(run / "checkpoints" / "step-2" / "model.safetensors"))
    final = _weights(run)
    assert any(not torch.equal(start[k], final[k]) for k in final)  # step 3 trained
    assert not list(tmp_path.glob("verifrl-rank*"))


@pytest.mark.parametrize("world, overrides, message", [
    ("1", ["trainer.sampler_ranks=1"], "trainer.sampler_ranks > 0 splits torchrun's ranks into samplers and trainers: "
     "it needs trainer.off_policy_steps > 0"),
    ("2", ["trainer.off_policy_steps=1"], "trainer.off_policy_steps > 0 under torchrun samples on ranks of its own: "
     "set trainer.sampler_ranks"),
    ("2", ["trainer.off_policy_steps=1", "trainer.sampler_ranks=2"], "trainer.sampler_ranks=2 needs torchrun with "
     "more ranks than that (WORLD_SIZE=2)"),
    ("3", ["trainer.off_policy_steps=1", "trainer.sampler_ranks=1", "trainer.parallel=fsdp"],
     "trainer.sampler_ranks works with trainer.parallel=ddp"),
])
def test_impossible_rank_splits_fail_at_load(monkeypatch, world, overrides, message):
    from verifrl.config import ConfigError
    from verifrl.config_loading import load_config

    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ConfigError) as error:
        load_config("recipes/tiny-arith.yaml", overrides)
    assert str(error.value).startswith(message)
