"""The CUDA paths: sampler log-probs, the cb engine, bf16 training, torchrun with nccl.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with
``python -m pytest -q tests/test_gpu.py``. docs/speed.md records the last such run.
``VERIFRL_TEST_DEVICE=cpu`` runs the same checks on the CPU (gloo instead of nccl), to try them
without a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import tiny_model_overrides
from verifrl.rollout import generate
from verifrl.update import completion_logprobs
from verifrl.hf_export import load_exported_weights

DEVICE = os.environ.get("VERIFRL_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")

PROMPTS = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens and buys 12 more.\nSolution:\n"]


def _logprob_gap(model, tokenizer, engine: str) -> tuple[torch.Tensor, torch.Tensor]:
    """|sampler log-prob - policy forward log-prob| on every sampled token, and the batch."""
    torch.manual_seed(0)
    batch = generate(model, tokenizer, PROMPTS, group_size=4, max_new_tokens=16, temperature=0.7, engine=engine)
    device = next(model.parameters()).device
    recomputed, _ = completion_logprobs(model, batch.prompt_ids.to(device), batch.prompt_mask.to(device),
                                        batch.completion_ids.to(device), batch.completion_mask.to(device),
                                        temperature=0.7)
    mask = batch.completion_mask.bool()
    return (batch.sampler_logprobs[mask] - recomputed.detach().float().cpu()[mask]).abs(), batch


@pytest.mark.parametrize("engine", ["loop", "hf", "cb"])
def test_sampled_logprobs_equal_the_policys_forward_in_float32(tiny_model, tiny_tokenizer, engine):
    if engine == "cb" and not hasattr(tiny_model, "generate_batch"):
        pytest.skip("this transformers has no continuous batching")
    gap, batch = _logprob_gap(tiny_model.to(DEVICE), tiny_tokenizer, engine)
    assert batch.completion_ids.shape[0] == 8
    assert gap.max() < 1e-3, f"{engine}: max |sampler - forward| = {gap.max():.2e}"


def test_bf16_sampler_logprobs_stay_close_to_the_forward(tiny_model, tiny_tokenizer):
    """bf16 KV-cache decoding and the full forward round differently; the gap must stay small."""
    gap, _ = _logprob_gap(tiny_model.to(DEVICE, torch.bfloat16), tiny_tokenizer, "loop")
    print(f"bf16 |sampler - forward|: mean {gap.mean():.4f}, max {gap.max():.4f}")
    assert gap.mean() < 0.05 and gap.max() < 0.5


def varied_reward(completion: str, example: dict) -> float:
    """Reward that varies within a group, so even an untrained model gets a gradient."""
    return (sum(map(ord, completion)) % 5) / 4


def _train_command(run_dir, *extra: str) -> list[str]:
    return ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "trainer.steps=3", "rollout.num_prompts=4",
            "rollout.group_size=4", "rollout.max_new_tokens=16", "data.num_train=200", "data.num_test=8",
            "checkpoint.every_steps=3", "logging.wandb=disabled", "logging.progress=false",
            "reward.verifiers=[{name: 'tests.test_gpu:varied_reward'}]", f"model.device={DEVICE}", *extra,
            "--run-dir", str(run_dir)]


def test_training_in_bf16_updates_the_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    from verifrl.cli import main

    dtype = "auto" if DEVICE == "cuda" else "bfloat16"  # auto is bf16 on a GPU that supports it
    assert main(_train_command(tmp_path / "run", f"model.dtype={dtype}", "loss.beta=0.04")) == 0
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "reward/mean" in line]
    assert len(steps) == 3 and all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final_model")
    assert final.config.dtype == torch.bfloat16
    # the frozen reference is the starting policy: the trained weights must have left it
    reference = torch.load(tmp_path / "run" / "checkpoints" / "reference.pt", weights_only=True, map_location="cpu")
    weights = load_exported_weights(tmp_path / "run" / "checkpoints" / "step-3")
    assert all(t.dtype == torch.bfloat16 for t in weights.values() if t.is_floating_point())
    assert any(not torch.equal(weights[k], reference[k]) for k in weights)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_with_one_rank_on_the_device(tmp_path, parallel):
    """One rank on cuda:0 with the nccl backend: process group, sharding and rank-0 writes."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "verifrl",
           *_train_command(run_dir, f"trainer.parallel={parallel}", "eval.before=false", "loss.beta=0.04")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(line["step"] for line in lines if "reward/mean" in line) == [0, 1, 2]
