"""Sampler/trainer gap: correction weights (TRL's four modes) by hand, gap and staleness metrics,
the correction on tool-use rollouts (model tokens only), the resolved defaults per engine and
dtype, and the config checks."""

import math

import pytest
import torch

from verifrl.config import ConfigError
from verifrl.config_loading import load_config
from verifrl.losses import policy_loss, rollout_correction_weights
from verifrl.offpolicy import (correction_metrics, forward_gap_metrics, old_logprobs_from_forward, resolve_off_policy,
                               sampler_gap_metrics, stale_groups, staleness_metrics)
from verifrl.rollout import RolloutBatch
from verifrl.update import TrainBatch, completion_logprobs, update_policy

LN = math.log
NAN = float("nan")
# row 0: token ratios old/sampler = 2, 1/4, 1 (product 1/2); row 1: 4, 1 and a padded position
# holding garbage (product 4)
OLD = torch.tensor([[LN(2), LN(0.5), 0.0], [LN(4), 0.0, NAN]])
SAMPLER = torch.tensor([[0.0, LN(2), 0.0], [0.0, 0.0, NAN]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize("mode, level, clip_min, clip_max, expected", [
    # token level: each token its own ratio
    ("truncate", "token", 0.5, 3.0, [[2, 0.5, 1], [3, 1, 0]]),
    ("truncate", "token", None, 3.0, [[2, 0.25, 1], [3, 1, 0]]),
    ("truncate", "token", 0.5, None, [[2, 0.5, 1], [4, 1, 0]]),
    ("truncate", "token", None, None, [[2, 0.25, 1], [4, 1, 0]]),
    ("mask", "token", 0.5, 3.0, [[2, 0, 1], [0, 1, 0]]),
    ("mask", "token", None, 3.0, [[2, 0.25, 1], [0, 1, 0]]),
    ("mask", "token", 0.5, None, [[2, 0, 1], [4, 1, 0]]),
    # sequence level: the row's product of ratios on each of its tokens
    ("truncate", "sequence", 0.6, 3.0, [[0.6, 0.6, 0.6], [3, 3, 0]]),
    ("truncate", "sequence", None, 3.0, [[0.5, 0.5, 0.5], [3, 3, 0]]),
    ("truncate", "sequence", 0.6, None, [[0.6, 0.6, 0.6], [4, 4, 0]]),
    ("mask", "sequence", 0.6, 3.0, [[0, 0, 0], [0, 0, 0]]),
    ("mask", "sequence", None, 3.0, [[0.5, 0.5, 0.5], [0, 0, 0]]),
    ("mask", "sequence", 0.6, None, [[0, 0, 0], [4, 4, 0]]),
    ("mask", "sequence", None, None, [[0.5, 0.5, 0.5], [4, 4, 0]]),
    ("none", "sequence", 0.6, 3.0, [[1, 1, 1], [1, 1, 0]]),
    ("none", "token", None, None, [[1, 1, 1], [1, 1, 0]]),
])
def test_correction_weights_by_hand(mode, level, clip_min, clip_max, expected):
    weights = rollout_correction_weights(OLD, SAMPLER, MASK, mode=mode, level=level, clip_min=clip_min,
                                         clip_max=clip_max)
    assert weights.shape == (2, 3)
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float32))


def test_correction_weights_reject_unknown_names_and_carry_no_gradient():
    old = OLD.clone().nan_to_num().requires_grad_()
    assert not rollout_correction_weights(old, SAMPLER, MASK, mode="mask", level="token").requires_grad
    with pytest.raises(ValueError, match="mode"):
        rollout_correction_weights(OLD, SAMPLER, MASK, mode="clip", level="token")
    with pytest.raises(ValueError, match="level"):
        rollout_correction_weights(OLD, SAMPLER, MASK, mode="mask", level="row")


def test_token_weights_scale_only_the_policy_gradient_term():
    # one row, two tokens, on-policy (ratio 1), advantage 1, dapo over 2 tokens: pg_t = -1 each
    logp = torch.zeros(1, 2, requires_grad=True)
    ref = torch.full((1, 2), -1.0)
    mask = torch.ones(1, 2)
    weights = torch.tensor([[0.5, 0.0]])
    loss, metrics = policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), mask, loss_type="dapo", beta=0.1,
                                ref_logp=ref, kl_estimator="k1", token_weights=weights)
    # pg: (-1 * 0.5 + -1 * 0) / 2 = -0.25; KL k1 = logp - ref = 1 per token, unweighted: 0.1 * 2 / 2
    assert metrics["pg_loss"] == pytest.approx(-0.25)
    assert float(loss.detach()) == pytest.approx(-0.25 + 0.1)
    loss.backward()
    # d/dlogp: pg term -w_t * ratio (ratio' = ratio = 1) / 2, KL term +0.1 / 2
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.25 + 0.05, 0.0 + 0.05]]))


def test_gap_metrics_by_hand():
    metrics = sampler_gap_metrics(OLD, SAMPLER, MASK)
    # |log ratio| over the 5 tokens: ln2, 2 ln2, 0, 2 ln2, 0
    assert metrics["offpolicy/log_ratio_abs_mean"] == pytest.approx(5 * LN(2) / 5)
    assert metrics["offpolicy/log_ratio_abs_max"] == pytest.approx(2 * LN(2))
    # k3 = (r - 1) - ln r with r = 2, 1/4, 1, 4, 1
    k3 = [(2 - 1) - LN(2), (0.25 - 1) - LN(0.25), 0, (4 - 1) - LN(4), 0]
    assert metrics["offpolicy/kl_sampler_trainer"] == pytest.approx(sum(k3) / 5, rel=1e-5)
    # outside [1/2, 2]: 1/4 and 4 (2 itself is inside)
    assert metrics["offpolicy/ratio_outside_half_two"] == pytest.approx(2 / 5)
    weights = rollout_correction_weights(OLD, SAMPLER, MASK, mode="mask", level="token", clip_max=3.0)
    assert correction_metrics(weights, MASK) == pytest.approx(
        {"offpolicy/correction_weight_mean": (2 + 0.25 + 1 + 0 + 1) / 5, "offpolicy/correction_zeroed_frac": 1 / 5})


def test_stale_groups_and_staleness_metrics_by_hand():
    # 3 groups of 2 rows, sampled by versions 5, 3 and (4, 5); the trainer is at version 6, bound 2
    versions = torch.tensor([5, 5, 3, 3, 4, 5])
    assert stale_groups(versions, 6, 2, 2).tolist() == [False, True, False]
    assert stale_groups(versions, 6, 1, 2).tolist() == [False, True, True]
    metrics = staleness_metrics(versions, 6, dropped_rows=2)
    assert metrics == pytest.approx({"offpolicy/staleness_mean": (1 + 1 + 3 + 3 + 2 + 1) / 6, "offpolicy/staleness_max": 3.0,
                       "offpolicy/dropped_rows": 2.0})


@pytest.mark.parametrize("overrides, dtype, mode, recompute", [
    ([], torch.float32, "none", False),  # the main job: loop engine in float32, numbers unchanged
    (["rollout.engine=hf"], torch.float32, "none", False),
    (["rollout.engine=cb"], torch.float32, "none", False),
    ([], torch.bfloat16, "mask", True),  # bf16 decode vs full forward round differently
    (["rollout.engine=hf"], torch.bfloat16, "mask", True),
    (["rollout.engine=cb"], torch.float16, "mask", True),
    (["trainer.off_policy_steps=1"], torch.float32, "mask", True),  # stale weights
    (["trainer.recompute_old_logprobs=true"], torch.float32, "none", True),  # measure only
    (["trainer.recompute_old_logprobs=false"], torch.bfloat16, "none", False),  # the user said no
    (["loss.rollout_correction.mode=truncate"], torch.float32, "truncate", True),
])
def test_resolved_correction_defaults(overrides, dtype, mode, recompute):
    cfg = load_config("recipes/tiny-arith.yaml", overrides)
    resolve_off_policy(cfg, dtype)
    assert cfg.loss.rollout_correction.mode == mode
    assert cfg.trainer.recompute_old_logprobs is recompute
    # the resolved "on" default is TRL's: one ratio per sequence, masked above 3
    assert (cfg.loss.rollout_correction.level, cfg.loss.rollout_correction.clip_min,
            cfg.loss.rollout_correction.clip_max) == ("sequence", None, 3.0)


def test_vllm_always_gets_the_correction():
    cfg = load_config("recipes/tiny-arith.yaml")
    cfg.rollout.engine = "vllm"  # set directly: loading a vllm recipe needs vLLM installed
    resolve_off_policy(cfg, torch.float32)
    assert cfg.loss.rollout_correction.mode == "mask" and cfg.trainer.recompute_old_logprobs


@pytest.mark.parametrize("overrides, message", [
    (["loss.rollout_correction.mode=mask", "trainer.recompute_old_logprobs=false"], "recompute_old_logprobs"),
    (["loss.rollout_correction.clip_max=0"], "clip_max must be > 0"),
    (["loss.rollout_correction.clip_min=4", "loss.rollout_correction.clip_max=3"], "clip_min must be <= clip_max"),
    (["loss.rollout_correction.mode=clip"], "must be one of"),
    (["trainer.off_policy_steps=-1"], "off_policy_steps must be >= 0"),
    (["trainer.off_policy_steps=1", "rollout.dynamic_sampling=refill"], "refill"),
    (["trainer.off_policy_steps=1", "rollout.tools=[python]"], "not with rollout.tools"),
])
def test_bad_off_policy_options_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("recipes/tiny-arith.yaml", overrides)


def test_off_policy_is_refused_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="torchrun"):
        load_config("recipes/tiny-arith.yaml", ["trainer.off_policy_steps=1"])


@pytest.mark.parametrize("mode", ["truncate", "mask"])
def test_with_tools_the_correction_reads_model_tokens_only(tiny_model, tiny_tokenizer, mode):
    from tests.test_tool_training import _hand_built

    prompt_ids, prompt_mask, completion, context, tool_mask = _hand_built(tiny_tokenizer)
    own = context * (~tool_mask).long()  # (2, Lc) model tokens; row 0 holds a 4-token observation
    n0, n1 = int(own[0].sum()), int(own[1].sum())
    trainer_logp, _ = completion_logprobs(tiny_model, prompt_ids, prompt_mask, completion, context)
    trainer_logp = trainer_logp.detach()
    # the sampler's log-probs: row 0 lower by ln2 / n0 on each model token (its ratio 2), row 1 higher
    # by ln4 / n1 (ratio 1/4); on the observation tokens off by 5 each: were they counted, row 0's
    # sequence ratio would be 2 * e^20 and its weight clipped or masked
    shift = torch.stack([torch.full_like(trainer_logp[0], LN(2) / n0), torch.full_like(trainer_logp[1], -LN(4) / n1)])
    shift = torch.where(tool_mask, torch.full_like(shift, 5.0), shift)
    batch = RolloutBatch(prompt_ids, prompt_mask, completion, context, trainer_logp - shift, context.sum(1),
                         torch.zeros(2, dtype=torch.bool), ["", ""], 2, tool_mask=tool_mask,
                         tool_calls=torch.tensor([1, 0]), tool_errors=torch.tensor([0, 0]))
    cfg = load_config("recipes/tiny-arith.yaml", [
        f"loss.rollout_correction.mode={mode}", "loss.rollout_correction.level=sequence",
        "loss.rollout_correction.clip_max=3", "rollout.temperature=1.0", "trainer.micro_batch_size=0"])
    # pi_old and the weights come from the update's own forward (no separate pass): buffers it fills
    old, weights, source = old_logprobs_from_forward(cfg, batch)
    assert bool(old.isnan().all()) and weights is not None
    # the update: ratio 1, advantage 1 (garbage on observations), dapo over the model tokens only
    advantages = torch.where(tool_mask, torch.full_like(old, 100.0), torch.ones_like(old))
    train_batch = TrainBatch(prompt_ids, prompt_mask, completion, own, old, advantages, context_mask=context,
                             token_weights=weights, old_from_forward=source)
    out = update_policy(tiny_model, torch.optim.SGD(tiny_model.parameters(), lr=0.0), train_batch,
                        cfg.loss, temperature=1.0, micro_batch_size=0, max_grad_norm=0.0, max_completion_length=40)
    # pi_old is the trainer's forward with the observations in the context
    torch.testing.assert_close(old * context, trainer_logp * context)
    expected = torch.stack([torch.full_like(old[0], 2.0), torch.full_like(old[1], 0.25)]) * own
    torch.testing.assert_close(weights, expected, rtol=1e-4, atol=1e-5)  # 0 on observation tokens
    metrics = forward_gap_metrics(old, weights, batch.sampler_logprobs, batch.model_mask)
    assert metrics["offpolicy/log_ratio_abs_max"] == pytest.approx(max(LN(2) / n0, LN(4) / n1), rel=1e-4)
    assert metrics["offpolicy/correction_zeroed_frac"] == 0.0
    assert cfg.loss.type == "dapo"
    assert out["pg_loss"] == pytest.approx(-(2.0 * n0 + 0.25 * n1) / (n0 + n1), rel=1e-4)


def test_pi_old_from_the_first_forward_equals_a_separate_pass(tiny_model, tiny_tokenizer):
    """Two updates on one batch (num_iterations 2) with pi_old read from the first update's forward
    give the weights of the same updates with pi_old from a separate no-grad pass; a row with
    all-zero advantages is never run, stays NaN and is left out of the gap metrics."""
    import copy

    from tests.test_tool_training import _hand_built
    from verifrl.update import batched_logprobs

    prompt_ids, prompt_mask, completion, context, _ = _hand_built(tiny_tokenizer)
    prompt_ids, prompt_mask = prompt_ids.repeat(2, 1), prompt_mask.repeat(2, 1)
    completion, context = completion.repeat(2, 1), context.repeat(2, 1)  # (4, Lc)
    advantages = torch.tensor([1.0, -0.5, 0.0, 2.0])[:, None] * context  # row 2: nothing to learn
    sampler = batched_logprobs(tiny_model, prompt_ids, prompt_mask, completion, context, 1.0) - 0.1 * context
    batch = RolloutBatch(prompt_ids, prompt_mask, completion, context, sampler, context.sum(1),
                         torch.zeros(4, dtype=torch.bool), [""] * 4, 2)
    cfg = load_config("recipes/tiny-arith.yaml", ["loss.rollout_correction.mode=truncate",
                                                  "loss.rollout_correction.level=token"])

    def two_updates(model, old, weights, source):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        train_batch = TrainBatch(prompt_ids, prompt_mask, completion, context, old, advantages,
                                 token_weights=weights, old_from_forward=source)
        for _ in range(2):
            update_policy(model, optimizer, train_batch, cfg.loss, temperature=1.0, micro_batch_size=1,
                          max_grad_norm=0.0, max_completion_length=40)

    separate = copy.deepcopy(tiny_model)
    old_separate = batched_logprobs(separate, prompt_ids, prompt_mask, completion, context, 1.0)
    weights_separate = rollout_correction_weights(old_separate, sampler, context, mode="truncate", level="token",
                                                  clip_max=3.0)
    two_updates(separate, old_separate, weights_separate, None)

    fused = copy.deepcopy(tiny_model)
    old, weights, source = old_logprobs_from_forward(cfg, batch)
    two_updates(fused, old, weights, source)

    assert bool(old[2].isnan().all()) and not bool(old[[0, 1, 3]].isnan().any())
    torch.testing.assert_close(old[[0, 1, 3]] * context[[0, 1, 3]], old_separate[[0, 1, 3]] * context[[0, 1, 3]])
    torch.testing.assert_close(weights[[0, 1, 3]], weights_separate[[0, 1, 3]])
    for a, b in zip(fused.parameters(), separate.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    metrics = forward_gap_metrics(old, weights, sampler, context)
    assert metrics["offpolicy/log_ratio_abs_mean"] == pytest.approx(0.1, abs=1e-5)
