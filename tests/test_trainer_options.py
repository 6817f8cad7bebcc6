"""Trainer machinery on the real tiny model: LoRA (peft), gradient checkpointing, dynamic sampling."""

import json

import pytest
import torch

from tests.conftest import tiny_model_overrides
from verifrl.checkpoint import latest_checkpoint, load_checkpoint
from verifrl.cli import main
from verifrl.config_loading import load_config
from verifrl.models import load_policy, reference_model
from verifrl.rollout import generate
from verifrl.update import TrainBatch, completion_logprobs, update_policy

PROMPTS = ["Question: 12 + 7 = ?\nSolution:\n", "Question: 3 * 4 = ?\nSolution:\n"]


def _cfg(*overrides):
    return load_config("recipes/tiny-arith.yaml", [*tiny_model_overrides(), *overrides])


def _batch(policy, tokenizer, seed=0):
    torch.manual_seed(seed)
    rollout = generate(policy, tokenizer, PROMPTS, group_size=2, max_new_tokens=8)
    advantages = torch.linspace(-1, 1, rollout.num_completions)[:, None].expand_as(rollout.completion_mask).clone()
    return rollout, TrainBatch(rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                               rollout.completion_mask, rollout.sampler_logprobs, advantages)


def _logprobs(model, rollout):
    with torch.no_grad():
        return completion_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                   rollout.completion_mask)[0]


def test_gradient_checkpointing_recomputes_layers_and_gives_the_same_update():
    cfg = _cfg()
    plain, tokenizer = load_policy(cfg.model, log=lambda *a: None)
    cfg.model.gradient_checkpointing = True
    checkpointed, _ = load_policy(cfg.model, log=lambda *a: None)
    rollout, batch = _batch(plain, tokenizer)
    grads = {}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        calls = []
        # a pre-hook inside the layer: the layer's own hooks stay outside the checkpoint, and torch's
        # recomputation stops early once the saved tensors are rebuilt (before post-hooks would fire)
        hook = model.model.layers[0].mlp.register_forward_pre_hook(lambda *a: calls.append(1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        metrics = update_policy(model, optimizer, batch, cfg.loss, temperature=1.0, micro_batch_size=2,
                                max_grad_norm=0.0, max_completion_length=8)
        hook.remove()
        assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()}
        # 2 micro-batches; checkpointing runs each layer's forward again in the backward pass
        assert len(calls) == (2 if name == "plain" else 4), name
    for n, g in grads["plain"].items():
        torch.testing.assert_close(grads["checkpointed"][n], g, rtol=1e-5, atol=1e-6, msg=n)


def test_lora_reference_is_the_adapter_disabled_base_without_a_copy():
    pytest.importorskip("peft")
    cfg = _cfg("model.lora.r=4", "model.lora.alpha=8")
    policy, tokenizer = load_policy(cfg.model, log=lambda *a: None)
    base, _ = load_policy(_cfg().model, log=lambda *a: None)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    reference = reference_model(policy)
    assert {id(p) for p in reference.parameters()} == {id(p) for p in policy.parameters()}  # no second copy
    rollout, batch = _batch(policy, tokenizer)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        update_policy(policy, optimizer, batch, cfg.loss, temperature=1.0, micro_batch_size=0,
                      max_grad_norm=1.0, max_completion_length=8)
    policy.train()  # the reference must not depend on the policy's mode
    ref, base_lp, pol = _logprobs(reference, rollout), _logprobs(base, rollout), _logprobs(policy, rollout)
    assert torch.equal(ref, base_lp)
    assert not torch.allclose(pol, base_lp)  # the adapters did change the policy
    assert policy.training


@pytest.mark.slow
def test_lora_train_step_with_kl_saves_and_resumes_the_adapter(tmp_path):
    pytest.importorskip("peft")
    args = ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "model.lora.r=4", "loss.beta=0.04",
            "trainer.steps=1", "rollout.num_prompts=2", "rollout.group_size=4", "rollout.max_new_tokens=8",
            "reward.overlong_cache_length=6", "data.num_train=50", "data.num_test=2", "eval.before=false",
            "checkpoint.every_steps=1", "logging.wandb=disabled", "logging.progress=false",
            f"logging.output_dir={tmp_path}", "logging.run_name=lora"]
    assert main(args) == 0
    run = tmp_path / "lora"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 1 and all(r["kl"] >= 0 for r in steps)
    saved = torch.load(run / "checkpoints" / "step-1" / "model.pt", weights_only=True)
    assert saved and all("lora_" in k for k in saved)  # the adapter only, not the base weights
    assert torch.load(run / "checkpoints" / "reference.pt", weights_only=True) == {}
    assert (run / "final_model" / "adapter_config.json").exists()
    cfg = _cfg("model.lora.r=4")
    fresh, _ = load_policy(cfg.model, log=lambda *a: None)
    load_checkpoint(latest_checkpoint(run), fresh)
    for k, v in fresh.state_dict().items():
        if "lora_B" in k:
            assert v.abs().sum() > 0  # trained (lora_B starts at zero)
    i = args.index("trainer.steps=1")
    assert main(args[:i] + ["trainer.steps=2"] + args[i + 1:] + ["--resume"]) == 0
    assert (run / "checkpoints" / "latest").read_text() == "step-2"
    # final_model/merged is a plain model computing what the trained adapter model computes
    from transformers import AutoModelForCausalLM

    load_checkpoint(latest_checkpoint(run), fresh)
    merged = AutoModelForCausalLM.from_pretrained(run / "final_model" / "merged")
    assert not any("lora" in name for name in merged.state_dict())
    ids = torch.tensor([[5, 9, 17, 3, 11, 2]])
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, fresh(input_ids=ids).logits, atol=1e-4)


@pytest.mark.slow
def test_dynamic_sampling_refill_in_the_trainer_logs_dropped_groups(tmp_path):
    # drop mode is the same path without extra rounds (unit-tested in test_dynamic_sampling.py)
    args = ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "rollout.dynamic_sampling=refill",
            "rollout.max_refill_rounds=2", "trainer.steps=2", "rollout.num_prompts=3", "rollout.group_size=3",
            "rollout.max_new_tokens=10", "reward.overlong_cache_length=6", "data.num_train=60", "data.num_test=2",
            "eval.before=false", "logging.wandb=disabled", "logging.progress=false",
            f"logging.output_dir={tmp_path}", "logging.run_name=ds"]
    assert main(args) == 0
    records = [json.loads(line) for line in (tmp_path / "ds" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "rollout/dropped_groups" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["rollout/kept_groups"] + r["rollout/dropped_groups"] + r["rollout/surplus_groups"] \
            == r["rollout/sampled_groups"]
        assert r["rollout/kept_groups"] <= 3
        if r["rollout/kept_groups"] < 3:
            assert r["rollout/refill_rounds"] == 2  # refilled up to the bound
    assert any("loss" in r for r in steps)


def test_tokens_per_second_counts_every_refill_round(monkeypatch):
    """Refill rounds take generation time, so their tokens count too (not only the kept batch's)."""
    import verifrl.groups as groups

    sampled = []
    real_generate = groups.generate

    def spy(*args, **kwargs):
        batch = real_generate(*args, **kwargs)
        sampled.append(int(batch.lengths.sum()))
        return batch

    monkeypatch.setattr(groups, "generate", spy)
    steps = _steps_metrics("rollout.dynamic_sampling=refill", "rollout.chunk_size=5", "rollout.group_size=2",
                           "reward.overlong_cache_length=4")
    rounds = [int(metrics["rollout/refill_rounds"]) for metrics, _ in steps]
    assert any(rounds) and len(sampled) == sum(1 + r for r in rounds)
    assert [metrics["completion/generated_tokens"] for metrics, _ in steps] == \
        [sum(sampled[:1 + rounds[0]]), sum(sampled[1 + rounds[0]:])]


@pytest.mark.parametrize("engine, expected_calls", [("hf", {"generate"}), ("loop", set()), ("cb", {"generate_batch"})])
def test_rollout_engine_option_picks_the_sampler(tmp_path, monkeypatch, engine, expected_calls):
    from transformers import GenerationMixin

    if engine == "cb" and not hasattr(GenerationMixin, "generate_batch"):
        pytest.skip("this transformers has no continuous batching")
    calls = set()
    for name in ("generate", "generate_batch"):
        original = getattr(GenerationMixin, name, None)
        if original is not None:
            monkeypatch.setattr(GenerationMixin, name,
                                lambda self, *a, _n=name, _o=original, **k: calls.add(_n) or _o(self, *a, **k))
    args = ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), f"rollout.engine={engine}", "trainer.steps=1",
            "rollout.num_prompts=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "data.num_train=20",
            "data.num_test=2", "eval.before=false", "logging.wandb=disabled", "logging.progress=false",
            f"logging.output_dir={tmp_path}", "logging.run_name=e"]
    assert main(args) == 0
    assert calls == expected_calls
    assert "reward/mean" in (tmp_path / "e" / "metrics.jsonl").read_text()


def _shape(completion: str, example: dict):
    """A verifier that the tiny model's text always varies on (math alone scores all rows 0 here):
    score from the length, one step per line scored by the line's length, so a row mixed up with
    another changes rewards, advantages and step metrics."""
    from verifiers import VerifyResult

    spans, start = [], 0
    for line in completion.splitlines(keepends=True) or [""]:
        spans.append((start, start + len(line)))
        start += len(line)
    return VerifyResult(score=(len(completion) % 3) / 2, step_scores=[float((b - a) % 2) for a, b in spans],
                        step_spans=spans)


def _steps_metrics(*overrides, steps=2):
    """Metrics of ``steps`` rl_steps from a fresh policy and seed, without the wall times."""
    from verifrl.scoring import NamedVerifier, build_verifiers
    from verifrl.models import seed_everything
    from verifrl.prompts import prepare_task
    from verifrl.trainer import rl_step

    cfg = _cfg("data.num_train=60", "data.num_test=2", "rollout.num_prompts=3", "rollout.group_size=4",
               "rollout.max_new_tokens=12", *overrides)
    seed_everything(cfg.trainer.seed)
    policy, tokenizer = load_policy(cfg.model, log=lambda *a: None)
    task = prepare_task(cfg, tokenizer)
    verifiers = [*build_verifiers(cfg.reward.verifiers), NamedVerifier("shape", 0.5, _shape)]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.trainer.lr)
    out = []
    try:
        for _ in range(steps):
            metrics, samples = rl_step(cfg, policy, None, tokenizer, optimizer, verifiers,
                                       task.sampler.next_rows(cfg.rollout.num_prompts),
                                       next_rows=task.sampler.next_rows)
            assert metrics["time/verification"] >= 0
            out.append(({k: v for k, v in metrics.items() if not k.startswith("time/") and k != "tokens_per_second"},
                        samples))
    finally:
        for named in verifiers:
            named.close()
    return out


@pytest.mark.parametrize("setting, expected", [(None, 0), ("true", 1), ("false", 0)])
def test_overlap_default_is_off_for_a_policy_on_the_cpu(monkeypatch, setting, expected):
    import verifrl.groups as groups

    built = []

    class Counting(groups.StreamingScorer):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(groups, "StreamingScorer", Counting)
    _steps_metrics(*([f"reward.overlap_verification={setting}"] if setting else []), steps=1)
    assert len(built) == expected


@pytest.mark.parametrize("extra", [("advantage.mode=outcome+process",),
                                   ("rollout.dynamic_sampling=refill", "rollout.chunk_size=5",
                                    "rollout.group_size=2", "reward.overlong_cache_length=4")])
def test_overlapped_verification_trains_exactly_like_verifying_after_sampling(extra):
    overlapped = _steps_metrics("reward.overlap_verification=true", *extra)
    after = _steps_metrics("reward.overlap_verification=false", *extra)
    assert overlapped == after
    for metrics, _ in after:  # a real update on rewards that differ between rows
        assert metrics["reward/std"] > 0 and metrics["grad_norm"] > 0
    if "rollout.dynamic_sampling=refill" in extra:
        assert any(metrics["rollout/refill_rounds"] > 0 for metrics, _ in after)
    else:
        assert all(metrics["steps/per_completion"] > 1 for metrics, _ in after)
