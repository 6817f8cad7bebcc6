"""PPO with a critic end to end on the tiny model: exact resume (critic weights and optimizer in the
checkpoint), LoRA (the critic's own adapter), and the critic update on 2 gloo ranks equal to one
process with the whole batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.conftest import TEST_MODEL, tiny_model_overrides
from verifrl import distributed
from verifrl.cli import main
from verifrl.config import CriticConfig, TrainerConfig
from verifrl.critic import Critic, ValueModel
from verifrl.embedded import build_model

STEPS = 4


def _args(run_dir: Path, *extra: str) -> list[str]:
    return ["train", "recipes/tiny-arith-process.yaml", *tiny_model_overrides(),
            f"trainer.steps={STEPS}", "rollout.num_prompts=2", "rollout.group_size=3", "rollout.max_new_tokens=10",
            "data.num_train=50", "data.num_test=2", "trainer.threads=1", "eval.before=false",
            # PPO: critic, dense step rewards with the outcome, per-token KL in the reward, a
            # critic-only first step, two epochs per batch
            "advantage.estimator=gae", "advantage.mode=outcome+process", "critic.lr=1e-3", "critic.warmup_steps=1",
            "critic.clip_range=0.2", "loss.beta=0.05", "loss.kl_placement=reward", "trainer.num_iterations=2",
            "trainer.lr_schedule=cosine", "checkpoint.every_steps=2", "checkpoint.keep_last=0",
            "checkpoint.save_final_model=false", "logging.wandb=disabled", "logging.progress=false",
            "--run-dir", str(run_dir), *extra]


def _step(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step}"


def _critic_files(run_dir: Path, step: int) -> tuple[dict, dict, int]:
    """The critic's weights, optimizer state and update count in checkpoint ``step``, each read
    the way resume reads them (safetensors, weights_only, JSON)."""
    directory = _step(run_dir, step) / "critic"
    return (load_file(str(directory / "model.safetensors")),
            torch.load(directory / "optimizer.pt", weights_only=True),
            json.loads((directory / "critic_state.json").read_text())["updates"])


def _metrics(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if r["step"] >= 0 and "reward/mean" in r}


@pytest.fixture()
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_ppo_with_a_critic_resumes_exactly(tmp_path, _restore_threads):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_args(straight)) == 0
    assert main(_args(resumed, f"trainer.steps={STEPS // 2}")) == 0
    assert main(_args(resumed, "--resume")) == 0

    policy_a = load_file(str(_step(straight, STEPS) / "model.safetensors"))
    policy_b = load_file(str(_step(resumed, STEPS) / "model.safetensors"))
    assert policy_a.keys() == policy_b.keys() and all(torch.equal(policy_a[k], policy_b[k]) for k in policy_a)
    (weights_a, optim_a, updates_a), (weights_b, optim_b, updates_b) = (
        _critic_files(straight, STEPS), _critic_files(resumed, STEPS))
    assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert updates_a == updates_b == STEPS * 2  # two epochs a step
    assert optim_a["state"].keys() == optim_b["state"].keys()
    assert all(torch.equal(optim_a["state"][i]["exp_avg_sq"], optim_b["state"][i]["exp_avg_sq"])
               for i in optim_a["state"])
    # the critic trained: its head moved off its zero initialisation
    assert weights_a["value_head.weight"].abs().sum() > 0

    ma, mb = _metrics(straight), _metrics(resumed)
    assert ma[0]["critic/warmup"] == 1.0 and "pg_loss" not in ma[0]  # step 0 trains only the critic
    assert all(ma[s]["critic/warmup"] == 0.0 and "pg_loss" in ma[s] for s in range(1, STEPS))
    for step in range(STEPS // 2, STEPS):
        for key in ("reward/mean", "loss", "critic/value_loss", "critic/explained_variance", "critic/values_mean"):
            assert ma[step][key] == mb[step][key], (step, key)
    for key in ("critic/value_loss", "critic/value_clip_fraction", "critic/explained_variance", "critic/values_mean"):
        assert key in ma[STEPS - 1]


@pytest.mark.slow
def test_lora_policy_gets_a_critic_with_its_own_adapter(tmp_path, _restore_threads):
    run = tmp_path / "lora"
    assert main(_args(run, "trainer.steps=2", "model.lora.r=4", "critic.warmup_steps=0")) == 0
    weights, _, _ = _critic_files(run, 2)
    # adapter and value head only: the frozen base comes from the model again on resume
    assert "value_head.weight" in weights and any("lora_" in k for k in weights)
    assert not any("lora_" not in k and not k.startswith("value_head") for k in weights)
    assert main(_args(run, "trainer.steps=3", "model.lora.r=4", "critic.warmup_steps=0", "--resume")) == 0


# --- data parallel critic update -------------------------------------------------------------

N, LP, LC = 6, 4, 5


def _batch(vocab: int):
    g = torch.Generator().manual_seed(3)
    prompt_lengths = torch.tensor([4, 2, 3, 4, 1, 2])
    prompt_mask = (torch.arange(LP)[None] >= LP - prompt_lengths[:, None]).long()
    completion_mask = (torch.arange(LC)[None] < torch.randint(1, LC + 1, (N,), generator=g)[:, None]).long()
    prompt_ids = torch.randint(2, vocab, (N, LP), generator=g) * prompt_mask
    completion_ids = torch.randint(2, vocab, (N, LC), generator=g) * completion_mask
    old_values = torch.randn(N, LC, generator=g) * completion_mask
    returns = torch.randn(N, LC, generator=g) * completion_mask
    return prompt_ids, prompt_mask, completion_ids, completion_mask, old_values, returns


def _update(critic: Critic, tensors, rows) -> dict[str, torch.Tensor]:
    p_ids, p_mask, c_ids, c_mask, old, ret = (t[rows] for t in tensors)
    critic.update(p_ids, p_mask, c_ids, c_mask, c_mask, old, ret)
    return {k: v.detach().clone() for k, v in critic.model.state_dict().items()}


def _critic(tokenizer) -> Critic:
    torch.manual_seed(0)
    language_model = build_model(TEST_MODEL, tokenizer)
    critic = Critic(ValueModel(language_model.base_model, TEST_MODEL.hidden_size),
                    CriticConfig(lr=1.0, clip_range=0.3), TrainerConfig(micro_batch_size=2))
    # SGD: the weight change is the gradient itself (Adam's first step would amplify rounding)
    critic.optimizer = torch.optim.SGD([p for p in critic.model.parameters() if p.requires_grad], lr=1.0)
    return critic


def _rank_worker(rank: int, port: int, tokenizer, expected: dict, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init("gloo")
    try:
        critic = _critic(tokenizer)
        tensors = _batch(len(tokenizer))
        state = _update(critic, tensors, torch.arange(rank, N, 2))
        queue.put((rank, max(float((state[k] - expected[k]).abs().max()) for k in expected)))
    finally:
        distributed.destroy()


@pytest.mark.slow
def test_critic_update_on_two_gloo_ranks_matches_one_process(tiny_tokenizer):
    expected = _update(_critic(tiny_tokenizer), _batch(len(tiny_tokenizer)), torch.arange(N))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_worker, args=(r, port, tiny_tokenizer, expected, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[0] < 1e-5 and results[1] < 1e-5, results
    # a rank with half the batch alone differs: the test would catch a missing all-reduce
    alone = _update(_critic(tiny_tokenizer), _batch(len(tiny_tokenizer)), torch.arange(0, N, 2))
    assert max(float((alone[k] - expected[k]).abs().max()) for k in expected) > 1e-4


# --- tool use with a critic --------------------------------------------------------------------


def test_rl_step_with_tools_and_a_critic_gives_observations_no_advantage(tiny_model, tiny_tokenizer, monkeypatch):
    """A real python tool call inside the completion: the observation tokens are context for the
    policy and the critic, but get advantage 0; the critic trains on the model's tokens."""
    from tests.test_tool_rollout import PROMPT_B, transcript
    from tests.tool_script import ScriptedLM
    from verifrl import trainer
    from verifrl.config_loading import load_config
    from verifrl.groups import build_tools
    from verifrl.scoring import build_verifiers

    script, _ = transcript(tiny_tokenizer, "3 + 4", "7", "7")
    policy = ScriptedLM(tiny_tokenizer, {PROMPT_B: script})
    cfg = load_config("recipes/tiny-arith.yaml", [
        "rollout.tools=[python]", "rollout.num_prompts=1", "rollout.group_size=2", "rollout.max_new_tokens=40",
        "reward.overlap_verification=false", "advantage.estimator=gae", "advantage.whiten=false",
        "trainer.micro_batch_size=0"])
    captured = {}

    def capture(model, optimizer, batch, *args, **kwargs):
        captured["batch"] = batch
        return {}

    monkeypatch.setattr(trainer, "update_policy", capture)
    torch.manual_seed(0)
    critic = Critic(ValueModel(tiny_model.base_model, tiny_model.config.hidden_size), cfg.critic, cfg.trainer)
    torch.nn.init.normal_(critic.model.value_head.weight, std=0.1)
    tools = build_tools(cfg)
    try:
        metrics, _ = trainer.rl_step(cfg, policy, None, tiny_tokenizer, None, build_verifiers(cfg.reward.verifiers),
                                     [{"question": "Compute 3 + 4.", "answer": "7"}], tools=tools, critic=critic)
    finally:
        tools.close()
    batch = captured["batch"]
    observation = batch.context_mask.bool() & ~batch.completion_mask.bool()  # (2, Lc)
    assert int(observation.sum()) > 0
    assert (batch.advantages[observation] == 0).all()
    own = batch.completion_mask.bool()
    assert (batch.advantages[own] != 0).all()  # outcome 1 on the last token, a nonzero critic everywhere
    assert critic.updates == 1 and metrics["critic/value_loss"] > 0
