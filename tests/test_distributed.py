"""Data parallelism: 2 gloo ranks x B prompts give the same update as 1 process x 2B prompts."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests.conftest import TEST_MODEL
from verifrl import distributed
from verifrl.config import LossConfig
from verifrl.embedded import build_model
from verifrl.update import TrainBatch, update_policy

P, G, LP, LC = 4, 3, 5, 6  # prompts, group size, prompt width, completion width


def _fixed_batch(vocab: int) -> TrainBatch:
    """A rollout batch with ragged prompts/completions, one zero-advantage group, fixed by a seed."""
    g = torch.Generator().manual_seed(1)
    n = P * G
    prompt_lengths = torch.tensor([5, 3, 4, 2]).repeat_interleave(G)
    prompt_mask = (torch.arange(LP)[None] >= LP - prompt_lengths[:, None]).long()
    completion_lengths = torch.randint(1, LC + 1, (n,), generator=g)
    completion_mask = (torch.arange(LC)[None] < completion_lengths[:, None]).long()
    prompt_ids = torch.randint(2, vocab, (n, LP), generator=g) * prompt_mask
    completion_ids = torch.randint(2, vocab, (n, LC), generator=g) * completion_mask
    old_logprobs = (-torch.rand(n, LC, generator=g) * 3) * completion_mask
    advantages = torch.randn(n, 1, generator=g).expand(n, LC).clone() * completion_mask
    advantages[G:2 * G] = 0.0  # prompt 1: an all-equal group
    ref_logprobs = (-torch.rand(n, LC, generator=g) * 3) * completion_mask
    return TrainBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, old_logprobs, advantages, ref_logprobs)


def _shard(batch: TrainBatch, rank: int, world: int) -> TrainBatch:
    """Prompts rank, rank+world, ... with their whole groups (what distributed.shard_rows keeps)."""
    prompts = list(range(P))[rank::world]
    rows = torch.tensor([p * G + j for p in prompts for j in range(G)])
    return TrainBatch(*(None if t is None else t[rows] for t in (
        batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask, batch.old_logprobs,
        batch.advantages, batch.ref_logprobs)))


CASES = [LossConfig(type="dapo", epsilon_high=0.28), LossConfig(type="grpo"), LossConfig(type="dr_grpo"),
         LossConfig(type="dapo", beta=0.05)]


def _train_once(model, batch: TrainBatch, loss_cfg: LossConfig, micro_batch_size: int) -> dict:
    model = copy.deepcopy(model)
    # SGD: the weight change is the (clipped) gradient itself; Adam's first step, g / (|g| + eps),
    # would amplify float rounding in near-zero gradients into visible differences
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    update_policy(model, optimizer, batch, loss_cfg, temperature=1.0, micro_batch_size=micro_batch_size,
                  max_grad_norm=1.0, max_completion_length=LC)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, model, batch: TrainBatch, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init("gloo")
    assert distributed.world_size() == world and distributed.rank() == rank
    local = _shard(batch, rank, world)
    results = [_train_once(model, local, cfg, micro_batch_size=2) for cfg in CASES]
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    distributed.destroy()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_process_then_two_ranks(worker, tiny_tokenizer, tmp_path, *extra):
    """Train every case in this process with the whole batch, then run ``worker`` on 2 gloo ranks.
    Returns the initial model, the single-process results and each rank's saved results."""
    torch.manual_seed(0)
    model = build_model(TEST_MODEL, tiny_tokenizer)
    batch = _fixed_batch(len(tiny_tokenizer))
    single = [_train_once(model, batch, cfg, micro_batch_size=0) for cfg in CASES]
    mp.start_processes(worker, args=(2, _free_port(), model, batch, *extra, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    return model, single, [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_whole_batch(tiny_tokenizer, tmp_path):
    model, single, ranks = _one_process_then_two_ranks(_worker, tiny_tokenizer, tmp_path)
    initial = model.state_dict()
    for case, cfg in enumerate(CASES):
        moved = False
        for name, expected in single[case].items():
            for r in range(2):
                assert torch.allclose(ranks[r][case][name], expected, atol=1e-6, rtol=1e-5), (cfg.type, cfg.beta, name, r)
            moved |= not torch.equal(expected, initial[name])
        assert moved, cfg  # the step did change the weights, so equality is not trivial


def _train_sharded(model, batch: TrainBatch, loss_cfg: LossConfig, micro_batch_size: int) -> dict:
    """_train_once under FSDP2: shard a copy, step, and gather the full weights (on rank 0)."""
    model = distributed.shard_model(copy.deepcopy(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    update_policy(model, optimizer, batch, loss_cfg, temperature=1.0, micro_batch_size=micro_batch_size,
                  max_grad_norm=1.0, max_completion_length=LC)
    return {k: v.clone() for k, v in distributed.full_model_state(model).items()}


def _fsdp_worker(rank: int, world: int, port: int, model, batch: TrainBatch, tokenizer, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init("gloo")
    local = _shard(batch, rank, world)
    # micro-batches of 2 rows: rank 0 (prompts 0 and 2: 6 active rows, 3 passes) and rank 1 (prompt 1's
    # zero-advantage rows are skipped: 3 active rows, 2 passes) run different numbers of passes
    results = [_train_sharded(model, local, cfg, micro_batch_size=2) for cfg in CASES]
    # generation issues no collectives: ranks sample different numbers of tokens, then still update
    # in step (a collective inside generation would pair up wrongly and hang or fail)
    from verifrl.rollout import generate

    sharded = distributed.shard_model(copy.deepcopy(model))
    generated = generate(sharded, tokenizer, ["12+3=", "7+8="], group_size=2, max_new_tokens=2 + 5 * rank,
                         greedy=False, temperature=1.0)
    optimizer = torch.optim.AdamW(sharded.parameters(), lr=1e-3)
    update_policy(sharded, optimizer, local, CASES[0], temperature=1.0, micro_batch_size=1 + rank,
                  max_grad_norm=1.0, max_completion_length=LC)
    # a full optimizer state saved by rank 0 and loaded back by every rank restores the same shards
    saved_model = distributed.full_model_state(sharded)
    saved_optimizer = distributed.full_optimizer_state(sharded, optimizer)
    if rank == 0:
        torch.save((saved_model, saved_optimizer), os.path.join(out_dir, "full.pt"))
    distributed.barrier()
    full_model, full_optimizer = torch.load(os.path.join(out_dir, "full.pt"), weights_only=False)
    restored = distributed.shard_model(copy.deepcopy(model))
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    distributed.load_full_model_state(restored, full_model)
    distributed.load_full_optimizer_state(restored, restored_optimizer, full_optimizer)
    same = all(torch.equal(a.to_local(), b.to_local()) for a, b in zip(sharded.parameters(), restored.parameters()))
    moments = [restored_optimizer.state[p]["exp_avg"].to_local() for p in restored.parameters()]
    same &= all(torch.equal(a, optimizer.state[p]["exp_avg"].to_local()) for a, p in zip(moments, sharded.parameters()))
    torch.save({"results": results, "tokens": generated.completion_ids.shape[1], "restored": same},
               os.path.join(out_dir, f"rank{rank}.pt"))
    distributed.destroy()


@pytest.mark.slow
def test_two_fsdp_gloo_ranks_match_one_process_with_the_whole_batch(tiny_tokenizer, tmp_path):
    """trainer.parallel=fsdp: 2 sharded ranks x B prompts == 1 process x 2B, with unequal pass counts."""
    model, single, ranks = _one_process_then_two_ranks(_fsdp_worker, tiny_tokenizer, tmp_path, tiny_tokenizer)
    initial = model.state_dict()
    for case, cfg in enumerate(CASES):
        gathered = ranks[0]["results"][case]  # full weights live on rank 0 (cpu_offload)
        assert set(gathered) == set(single[case])
        moved = False
        for name, expected in single[case].items():
            assert torch.allclose(gathered[name], expected, atol=1e-6, rtol=1e-5), (cfg.type, cfg.beta, name)
            moved |= not torch.equal(expected, initial[name])
        assert moved, cfg
    assert [r["tokens"] for r in ranks] == [2, 7]
    assert all(r["restored"] for r in ranks)


def test_a_rank_with_half_the_batch_alone_differs(tiny_tokenizer):
    """Without the global normalisers/all-reduce, a shard's step is not the full batch's step."""
    torch.manual_seed(0)
    model = build_model(TEST_MODEL, tiny_tokenizer)
    batch = _fixed_batch(len(tiny_tokenizer))
    full = _train_once(model, batch, CASES[0], micro_batch_size=0)
    half = _train_once(model, _shard(batch, 0, 2), CASES[0], micro_batch_size=0)
    assert any(not torch.allclose(full[k], half[k], atol=1e-6) for k in full)


def test_skipping_zero_advantage_rows_keeps_the_update(tiny_tokenizer):
    """beta=0: zero-advantage rows are skipped, yet the step equals the one computed with them."""
    torch.manual_seed(0)
    model = build_model(TEST_MODEL, tiny_tokenizer)
    batch = _fixed_batch(len(tiny_tokenizer))
    skipped = _train_once(model, batch, CASES[0], micro_batch_size=4)
    # bnpo never skips; with the dapo normaliser passed explicitly it is the same token-mean loss
    # over the whole batch, so force every row through by giving skipped rows a zero-but-present KL
    tiny_beta = LossConfig(type="dapo", epsilon_high=0.28, beta=1e-30)
    kept = _train_once(model, batch, tiny_beta, micro_batch_size=4)
    for k in skipped:
        assert torch.allclose(skipped[k], kept[k], atol=1e-6), k


def test_shard_rows_keeps_whole_prompts_per_rank(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.shard_rows(list("abcdef"), 6) == ["b", "d", "f"]
    with pytest.raises(ValueError, match="divisible"):
        distributed.shard_rows(list("abc"), 3)


def varied_reward(completion: str, example: dict):
    """A test verifier whose reward varies within a group, so the tiny model gets a gradient."""
    from verifiers import VerifyResult

    return VerifyResult(score=(sum(map(ord, completion)) % 5) / 4)


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_two_ranks_trains_resumes_and_only_rank0_writes(tmp_path, parallel):
    """``torchrun --nproc_per_node 2 -m verifrl train``: one run directory, one line per step, resume.

    fsdp also runs with a (sharded) reference model, beta > 0, and checks that the checkpoint and
    ``final_model`` hold the full weights.
    """
    import json
    import subprocess
    import sys

    from tests.conftest import tiny_model_overrides

    options = [f"trainer.parallel={parallel}"]
    if parallel == "fsdp":
        options += ["loss.beta=0.04", "trainer.micro_batch_size=1",
                    "reward.verifiers=[{name: 'tests.test_distributed:varied_reward'}]"]
    run_dir = tmp_path / "run"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}

    def launch(steps: int, *extra: str) -> None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "verifrl", "train", "recipes/tiny-arith.yaml", *tiny_model_overrides(),
               f"trainer.steps={steps}", "trainer.threads=1", "rollout.num_prompts=2", "rollout.group_size=2",
               "rollout.max_new_tokens=8", "data.num_train=200", "data.num_test=4", "eval.before=false",
               "checkpoint.every_steps=1", "logging.wandb=disabled", "logging.progress=false",
               "logging.sample_table_every=0", *options, "--run-dir", str(run_dir), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    launch(2)
    launch(3, "--resume")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = sorted(line["step"] for line in lines if "reward/mean" in line)
    assert train_steps == [0, 1, 2]  # rank 0 alone wrote each step once, and the resume continued at 2
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3
    assert (run_dir / "checkpoints").is_dir()
    assert not list(scratch.glob("verifrl-rank*"))  # rank 1's scratch run directory was removed
    if parallel == "fsdp":  # full (unsharded) weights in the checkpoint and in final_model
        from transformers import AutoModelForCausalLM

        weights = torch.load(run_dir / "checkpoints" / "step-3" / "model.pt", weights_only=True)
        final = AutoModelForCausalLM.from_pretrained(run_dir / "final_model").state_dict()
        reference = torch.load(run_dir / "checkpoints" / "reference.pt", weights_only=True)
        assert set(final) <= set(weights) and set(weights) == set(reference)
        for name, tensor in final.items():
            assert torch.equal(tensor, weights[name]), name
        assert any(not torch.equal(weights[k], reference[k]) for k in weights)  # it did train


def test_fsdp_rejects_lora_and_dynamic_sampling():
    from verifrl.config import ConfigError
    from verifrl.config_loading import load_config

    with pytest.raises(ConfigError, match="model.lora"):
        load_config("recipes/tiny-arith.yaml", ["trainer.parallel=fsdp", "model.lora.r=8"])
    for mode in ("drop", "refill"):
        with pytest.raises(ConfigError, match="dynamic_sampling=off"):
            load_config("recipes/tiny-arith.yaml", ["trainer.parallel=fsdp", f"rollout.dynamic_sampling={mode}"])
    assert load_config("recipes/tiny-arith.yaml", ["trainer.parallel=fsdp"]).trainer.parallel == "fsdp"


def reward_that_ties_on_rank_1(completion: str, example: dict) -> float:
    """Rank 1's groups all tie (nothing to learn there), rank 0's rewards vary."""
    return 0.5 if os.environ.get("RANK") == "1" else (sum(map(ord, completion)) % 5) / 4


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["drop", "refill"])
def test_dynamic_sampling_under_torchrun_when_one_rank_has_nothing_to_learn(tmp_path, mode):
    """Rank 1 never has an informative group: it must still take part in rank 0's update (and, in
    refill mode, in the lockstep refill rounds) instead of hanging the gradient all-reduce."""
    import json
    import subprocess
    import sys

    from tests.conftest import tiny_model_overrides

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "verifrl", "train", "recipes/tiny-arith.yaml", *tiny_model_overrides(),
           "trainer.steps=3", "trainer.threads=1", "rollout.num_prompts=4", "rollout.group_size=2",
           "rollout.max_new_tokens=8", "data.num_train=200", "data.num_test=4", "eval.before=false",
           f"rollout.dynamic_sampling={mode}", "rollout.max_refill_rounds=2", "logging.wandb=disabled",
           "logging.progress=false", "logging.sample_table_every=0",
           "reward.verifiers=[{name: 'tests.test_distributed:reward_that_ties_on_rank_1'}]", "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "rollout/kept_groups" in line]
    assert [line["step"] for line in steps] == [0, 1, 2]
    for line in steps:  # averaged over the two ranks: rank 1 skipped, rank 0 trained
        assert line["update/skipped"] == 0.5 and "loss" in line
        if mode == "refill":
            assert line["rollout/refill_rounds"] == 2  # rank 1 kept asking; both ranks drew in step
