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


def test_two_sampler_ranks_share_the_prompts_of_one_trainer(tmp_path):
    run = tmp_path / "run"
    log = _run(_args(run, 3, "trainer.sampler_ranks=2"), tmp_path, nproc=3)
    # 3 batches of 4 prompts: each sampler sampled its 2 prompts of every batch
    assert "sampler rank 1: sampled 3 batch parts" in log and "sampler rank 2: sampled 3 batch parts" in log
    steps = _train_steps(run)
    assert [r["step"] for r in steps] == [0, 1, 2]
    assert [r["offpolicy/staleness_max"] for r in steps] == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("world, overrides, message", [
    ("1", ["trainer.sampler_ranks=1"], "trainer.sampler_ranks > 0 splits torchrun's ranks into samplers and trainers: "
     "it needs trainer.off_policy_steps > 0"),
    ("2", ["trainer.off_policy_steps=1"], "trainer.off_policy_steps > 0 under torchrun samples on ranks of its own: "
     "set trainer.sampler_ranks"),
    ("2", ["trainer.off_policy_steps=1", "trainer.sampler_ranks=2"], "trainer.sampler_ranks=2 needs torchrun with "
     "more ranks than that (WORLD_SIZE=2)"),
    ("3", ["trainer.off_policy_steps=1", "trainer.sampler_ranks=1", "trainer.parallel=fsdp"],
     "trainer.sampler_ranks works with trainer.parallel=ddp"),
    ("4", ["trainer.off_policy_steps=1", "trainer.sampler_ranks=2", "rollout.num_prompts=3"],
     "rollout.num_prompts=3 must be divisible by the 2 trainer ranks and at least the 2 sampler ranks"),
])
def test_impossible_rank_splits_fail_at_load(monkeypatch, world, overrides, message):
    from verifrl.config import ConfigError
    from verifrl.config_loading import load_config

    monkeypatch.setenv("WORLD_SIZE", world)
    with pytest.raises(ConfigError) as error:
        load_config("recipes/tiny-arith.yaml", overrides)
    assert str(error.value).startswith(message)


def _part(prompt_numbers: list[int], width: int, group_size: int = 2):
    """A sampler's part: each prompt's id is its number; completion g of prompt n is [n*10+g]*width."""
    from verifrl.rollout import RolloutBatch

    rows = [n for n in prompt_numbers for _ in range(group_size)]
    completions = torch.tensor([[n * 10 + g] * width for n in prompt_numbers for g in range(group_size)])
    ones = torch.ones_like(completions)
    return RolloutBatch(torch.tensor(rows)[:, None], torch.ones(len(rows), 1, dtype=torch.long), completions, ones,
                        -ones.float(), torch.full((len(rows),), width), torch.zeros(len(rows), dtype=torch.bool),
                        [f"{n}" for n in rows], group_size)


def test_merge_parts_keeps_every_prompt_row_with_its_own_completions():
    from verifrl.sampler_ranks import merge_parts

    rows = [{"n": n} for n in range(5)]
    # 2 samplers: sampler 0 sampled prompts 0, 2, 4 (completions 3 wide), sampler 1 prompts 1, 3 (2 wide)
    merged_rows, batch = merge_parts(rows, [_part([0, 2, 4], width=3), _part([1, 3], width=2)], pad_id=99)
    assert [r["n"] for r in merged_rows] == [0, 2, 4, 1, 3]
    for p, row in enumerate(merged_rows):  # prompt p of the merged batch is the row in position p
        for g in range(2):
            i = p * 2 + g
            assert int(batch.prompt_ids[i, 0]) == row["n"] and batch.texts[i] == str(row["n"])
            assert int(batch.completion_ids[i, 0]) == row["n"] * 10 + g
    assert batch.completion_ids.shape == (10, 3)
    assert batch.completion_ids[6:, 2].tolist() == [99] * 4 and batch.completion_mask[6:, 2].tolist() == [0] * 4
    one_rows, one = merge_parts(rows, [_part([0, 1, 2, 3, 4], width=2)], pad_id=99)
    assert one_rows == rows and one.completion_ids.shape == (10, 2)
