"""PPO's critic pieces and CISPO, checked against hand-computed numbers: GAE (gamma 1 and < 1,
lambda 0 and 1, ragged and interior masks), batch whitening, the clipped value loss, CISPO's
value and gradient, the critic's token rewards, tool observation tokens skipped by GAE, and the
option registries."""

import math

import pytest
import torch

from verifrl.advantages import ADVANTAGE_ESTIMATORS, CRITIC_ESTIMATORS, gae, masked_whiten, token_advantages
from verifrl.config import Config, ConfigError, CriticConfig, TrainerConfig
from verifrl.config_loading import load_config
from verifrl.critic import Critic, ValueModel, explained_variance, ppo_advantages, value_loss
from verifrl.losses import POLICY_OBJECTIVES, policy_loss
from verifrl.rewards import critic_token_rewards, kl_token_penalty
from verifrl.rollout import RolloutBatch

NAN = float("nan")


def _t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# --- GAE -------------------------------------------------------------------------------------


def test_gae_gamma_1_lambda_1_is_return_minus_value():
    # rewards 0, 0, 1: every token's return is 1, advantage 1 - V
    adv, ret = gae(_t([0, 0, 1]), _t([0.5, 0.2, 0.9]), _t([1, 1, 1]), gamma=1.0, lam=1.0)
    assert torch.allclose(adv, _t([0.5, 0.8, 0.1]))
    assert torch.allclose(ret, _t([1, 1, 1]))


def test_gae_lambda_0_is_the_one_step_td_error():
    # delta_t = r_t + V_{t+1} - V_t, V after the last token 0: 0.5-0.2, 0.7-0.5, 1-0.7
    adv, ret = gae(_t([0, 0, 1]), _t([0.2, 0.5, 0.7]), _t([1, 1, 1]), gamma=1.0, lam=0.0)
    assert torch.allclose(adv, _t([0.3, 0.2, 0.3]))
    assert torch.allclose(ret, _t([0.5, 0.7, 1.0]))


def test_gae_discounted():
    # gamma 0.9, lambda 0.5 (gamma * lambda 0.45):
    # delta2 = 1 - 0.7 = 0.3                 A2 = 0.3
    # delta1 = 0.9 * 0.7 - 0.5 = 0.13        A1 = 0.13 + 0.45 * 0.3 = 0.265
    # delta0 = 0.9 * 0.5 - 0.2 = 0.25        A0 = 0.25 + 0.45 * 0.265 = 0.36925
    adv, ret = gae(_t([0, 0, 1]), _t([0.2, 0.5, 0.7]), _t([1, 1, 1]), gamma=0.9, lam=0.5)
    assert torch.allclose(adv, _t([0.36925, 0.265, 0.3]))
    assert torch.allclose(ret, _t([0.56925, 0.765, 1.0]))


def test_gae_ragged_rows_ignore_padding_garbage():
    # row 0: full; row 1: two tokens, NaN in the padding; gamma 1, lambda 0.95
    # row 1: delta1 = 1 - 0.6 = 0.4, A1 = 0.4; delta0 = 0.6 - 0.4 = 0.2, A0 = 0.2 + 0.95 * 0.4 = 0.58
    rewards = _t([0, 0, 1], [0, 1, NAN])
    values = _t([0.5, 0.5, 0.5], [0.4, 0.6, NAN])
    mask = _t([1, 1, 1], [1, 1, 0])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # row 0: delta = [0, 0, 0.5], A2 = 0.5, A1 = 0.475, A0 = 0.45125
    assert torch.allclose(adv, _t([0.45125, 0.475, 0.5], [0.58, 0.4, 0.0]))
    assert torch.allclose(ret, _t([0.95125, 0.975, 1.0], [0.98, 1.0, 0.0]))


def test_gae_skips_masked_positions_inside_a_row_as_if_absent():
    # a tool observation token at position 1: its reward, value and discount step do not exist
    # valid 0 and 2: delta2 = 1 - 0.7 = 0.3; delta0 = 0.9 * 0.7 - 0.2 = 0.43, A0 = 0.43 + 0.45 * 0.3
    adv, ret = gae(_t([0, 5, 1]), _t([0.2, 9, 0.7]), _t([1, 0, 1]), gamma=0.9, lam=0.5)
    assert torch.allclose(adv, _t([0.565, 0.0, 0.3]))
    assert torch.allclose(ret, _t([0.765, 0.0, 1.0]))
    compact, _ = gae(_t([0, 1]), _t([0.2, 0.7]), _t([1, 1]), gamma=0.9, lam=0.5)
    assert torch.allclose(adv[:, [0, 2]], compact)


def test_gae_empty_row_and_shape_check():
    adv, ret = gae(_t([1, 1]), _t([1, 1]), _t([0, 0]))
    assert adv.abs().sum() == 0 and ret.abs().sum() == 0
    with pytest.raises(ValueError, match="shape"):
        gae(_t([1, 1]), _t([1, 1, 1]), _t([1, 1]))


def test_gae_is_registered_as_a_critic_estimator():
    assert ADVANTAGE_ESTIMATORS["gae"] is gae and CRITIC_ESTIMATORS == {"gae"}
    with pytest.raises(ValueError, match="critic"):
        token_advantages(_t([1, 0]), torch.tensor([[2, 2]]), 2, estimator="gae")


# --- whitening -------------------------------------------------------------------------------


def test_masked_whiten_uses_only_masked_values_and_unbiased_variance():
    # [2, 4, 6]: mean 4, unbiased variance 4 -> [-1, 0, 1]; the masked NaN stays out
    x, mask = _t([2, 4, 6, NAN]), _t([1, 1, 1, 0])
    assert torch.allclose(masked_whiten(x, mask), _t([-1, 0, 1, 0]), atol=1e-6)
    assert torch.allclose(masked_whiten(x, mask, shift_mean=False), _t([3, 4, 5, 0]), atol=1e-6)


def test_masked_whiten_with_statistics_summed_over_ranks():
    # another rank holds [0, 8]: global [2, 4, 6, 0, 8], mean 4, variance 40 / 4 = 10
    other = torch.tensor([2.0, 8.0, 64.0], dtype=torch.float64)  # count, sum, sum of squares
    out = masked_whiten(_t([2, 4, 6]), _t([1, 1, 1]), sum_across=lambda m: m + other)
    assert torch.allclose(out, _t([-2, 0, 2]) / math.sqrt(10), atol=1e-6)


def test_masked_whiten_of_nothing_is_zero():
    assert masked_whiten(_t([1, 2]), _t([0, 0])).abs().sum() == 0


# --- value loss ------------------------------------------------------------------------------


def test_value_loss_clipped_by_hand():
    # c = 0.05. token 0: V 1.0 -> clipped 0.55, (0.55-0)^2 = 0.3025 < 1: unclipped 1 wins.
    # token 1: V 0 -> 0.45, (0.45-1)^2 = 0.3025 < 1: 1. token 2: V 0.6 -> 0.55, (0.55-2)^2 = 2.1025
    # > (0.6-2)^2 = 1.96: the clip acts. loss = 0.5 * (1 + 1 + 2.1025) / 3
    values = _t([1.0, 0.0, 0.6, NAN]).requires_grad_()
    old, returns, mask = _t([0.5, 0.5, 0.5, NAN]), _t([0, 1, 2, NAN]), _t([1, 1, 1, 0])
    loss, metrics = value_loss(values, old, returns, mask, clip_range=0.05)
    assert loss.item() == pytest.approx(0.5 * 4.1025 / 3)
    assert metrics["value_clip_fraction"] == pytest.approx(1 / 3)
    loss.backward()
    # d/dV 0.5 (V - R)^2 / 3 = (V - R) / 3 where unclipped wins; 0 where the clipped term wins
    assert torch.allclose(values.grad, _t([1 / 3, -1 / 3, 0, 0]))


def test_value_loss_unclipped_and_global_normaliser():
    values = _t([0.6]).requires_grad_()
    loss, metrics = value_loss(values, _t([0.5]), _t([2.0]), _t([1]), clip_range=None)
    assert loss.item() == pytest.approx(0.5 * 1.96) and metrics["value_clip_fraction"] == 0
    loss.backward()
    assert values.grad.item() == pytest.approx(-1.4)
    halved, _ = value_loss(_t([0.6]), _t([0.5]), _t([2.0]), _t([1]), clip_range=None, num_tokens=2)
    assert halved.item() == pytest.approx(0.49)


def test_explained_variance():
    returns, mask = _t([1, 2, 3, 99]), _t([1, 1, 1, 0])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 4), 2.0), returns, mask) == pytest.approx(0.0)
    # residual [1, 1, -1]: var 4/3 against var(R) = 1
    assert explained_variance(_t([0, 1, 4, 0]), returns, mask) == pytest.approx(1 - 4 / 3)


# --- CISPO -----------------------------------------------------------------------------------


def test_cispo_value_and_gradient_by_hand():
    # token 0: r = 0.5/0.4 = 1.25 > 1 + 0.2 -> weight 1.2, A = 2: loss -1.2 * 2 * log 0.5, grad -2.4
    # token 1: r = 1, A = -1: loss log 0.5... -1 * -1 * log 0.5, grad -w A = +1 (with a weight
    #          that carried gradient it would be -A (r log p + r) = log 0.5 + 1 = 0.307)
    # token 2: r = 0.1/0.5 = 0.2, A = -1: no lower bound, weight 0.2, grad +0.2 (ppo_clip: 0)
    logp = torch.log(_t([0.5, 0.5, 0.1])).requires_grad_()
    old = torch.log(_t([0.4, 0.5, 0.5]))
    adv, mask = _t([2.0, -1.0, -1.0]), _t([1, 1, 1])
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="bnpo", objective="cispo", epsilon_high=0.2)
    per_token = [-1.2 * 2 * math.log(0.5), math.log(0.5), 0.2 * math.log(0.1)]
    assert loss.item() == pytest.approx(sum(per_token) / 3, rel=1e-5)
    loss.backward()
    assert torch.allclose(logp.grad, _t([-2.4, 1.0, 0.2]) / 3, atol=1e-6)
    assert metrics["clip_frac_high"] == pytest.approx(1 / 3) and metrics["clip_frac_low"] == 0

    logp_ppo = torch.log(_t([0.5, 0.5, 0.1])).requires_grad_()
    policy_loss(logp_ppo, old, adv, mask, loss_type="bnpo", epsilon_high=0.2)[0].backward()
    assert logp_ppo.grad[0, 0] == 0 and logp_ppo.grad[0, 2] == 0  # the tokens PPO's clip drops


def test_cispo_aggregates_by_loss_type_and_ignores_padding():
    logp = torch.log(_t([0.5, 0.5], [0.25, NAN]))
    adv, mask = _t([1.0, 1.0], [1.0, 1.0]), _t([1, 1], [1, 0])
    grpo, _ = policy_loss(logp, logp, adv, mask, loss_type="grpo", objective="cispo")
    dapo, _ = policy_loss(logp, logp, adv, mask, loss_type="dapo", objective="cispo")
    # grpo: mean of row means (-log .5, -log .25); dapo: token mean over 3 tokens
    assert grpo.item() == pytest.approx((-math.log(0.5) - math.log(0.25)) / 2)
    assert dapo.item() == pytest.approx((-2 * math.log(0.5) - math.log(0.25)) / 3)
    assert set(POLICY_OBJECTIVES) == {"ppo_clip", "cispo", "sapo"}
    with pytest.raises(ValueError, match="objective"):
        policy_loss(logp, logp, adv, mask, objective="spo")


def test_sapo_soft_gate_value_and_gradient_by_hand():
    # token 0: r = 1, A = 1, tau 1: -sigmoid(0) * 4 * 1 = -2; gradient -A * 4 s (1 - s) r = -1
    # token 1: r = 1.25, A = -1, tau 1.05: s = sigmoid(0.2625) = 0.565248...; value s * 4 / 1.05,
    #          gradient 4 s (1 - s) * 1.25
    logp = torch.log(_t([0.5, 0.5])).requires_grad_()
    old = torch.log(_t([0.5, 0.4]))
    loss, metrics = policy_loss(logp, old, _t([1.0, -1.0]), _t([1, 1]), loss_type="bnpo", objective="sapo")
    s = 1 / (1 + math.exp(-0.2625))
    assert loss.item() == pytest.approx((-2 + s * 4 / 1.05) / 2, rel=1e-5)
    loss.backward()
    assert torch.allclose(logp.grad, _t([-1.0, 4 * s * (1 - s) * 1.25]) / 2, atol=1e-6)
    assert metrics["clip_frac"] == 0


# --- the critic's token rewards and value model ----------------------------------------------


def test_critic_token_rewards_outcome_on_last_model_token_and_step_penalties():
    # row 0: 4 tokens, outcome 1, steps end at 1 (score 1: no penalty) and 3 (score 0: -2).
    # row 1: a masked (tool) token at 1, so the last model token is 2; outcome 0; neutral step at 0
    mask = _t([1, 1, 1, 1], [1, 0, 1, 0])
    out = critic_token_rewards(torch.tensor([1.0, 0.0]), mask, step_scores=[[1.0, 0.0], [0.5]], step_ends=[[1, 3], [0]],
                               step_weight=2.0)
    assert torch.equal(out, _t([0, 0, 0, 1 - 2], [-1, 0, 0, 0]))
    outcome_only = critic_token_rewards(torch.tensor([1.0, 0.5]), mask)
    assert torch.equal(outcome_only, _t([0, 0, 0, 1], [0, 0, 0.5, 0]))
    assert torch.equal(critic_token_rewards(torch.tensor([3.0]), _t([0, 0])), _t([0, 0]))


def test_kl_token_penalty_is_minus_beta_k1_per_token():
    out = kl_token_penalty(_t([-1.0, -2.0, NAN]), _t([-1.5, -1.0, NAN]), _t([1, 1, 0]), beta=0.1)
    assert torch.allclose(out, _t([-0.05, 0.1, 0.0]))


# --- tool observations inside a completion: skipped by GAE as if absent ---------------------


def _tool_batch(values_in_hole: float = 9.0) -> tuple[RolloutBatch, torch.Tensor]:
    """One completion of 6 tokens + 1 padding: model, model, observation, observation, model,
    model (the last one EOS). The tool's observation (tokens 2-3) was spliced in, not sampled."""
    completion_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0]])
    tool_mask = torch.tensor([[False, False, True, True, False, False, False]])
    batch = RolloutBatch(prompt_ids=torch.tensor([[5, 6]]), prompt_mask=torch.ones(1, 2, dtype=torch.long),
                         completion_ids=torch.tensor([[7, 8, 9, 9, 8, 1, 0]]), completion_mask=completion_mask,
                         sampler_logprobs=torch.zeros(1, 7), lengths=torch.tensor([6]),
                         truncated=torch.tensor([False]), texts=["..."], group_size=1, tool_mask=tool_mask)
    values = _t([0.2, 0.4, values_in_hole, values_in_hole, 0.5, 0.8, 0.0])
    return batch, values


def test_gae_skips_tool_observation_tokens_by_hand():
    # model tokens 0, 1, 4, 5 with V 0.2, 0.4, 0.5, 0.8; outcome 1 on token 5 (the last model
    # token); gamma 0.9, lambda 0.5 (gamma * lambda 0.45), the observation tokens 2-3 absent:
    # delta5 = 1 - 0.8 = 0.2                     A5 = 0.2
    # delta4 = 0.9 * 0.8 - 0.5 = 0.22            A4 = 0.22 + 0.45 * 0.2 = 0.31
    # delta1 = 0.9 * 0.5 - 0.4 = 0.05            A1 = 0.05 + 0.45 * 0.31 = 0.1895
    # delta0 = 0.9 * 0.4 - 0.2 = 0.16            A0 = 0.16 + 0.45 * 0.1895 = 0.245275
    batch, values = _tool_batch()
    mask = batch.model_mask
    rewards = critic_token_rewards(torch.tensor([1.0]), mask)
    assert torch.equal(rewards, _t([0, 0, 0, 0, 0, 1, 0]))
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert torch.allclose(adv, _t([0.245275, 0.1895, 0, 0, 0.31, 0.2, 0]))
    assert torch.allclose(ret, _t([0.445275, 0.5895, 0, 0, 0.81, 1.0, 0]))
    # what the critic says inside the observation does not matter
    other, _ = gae(rewards, _tool_batch(values_in_hole=-50.0)[1], mask, gamma=0.9, lam=0.5)
    assert torch.equal(adv, other)
    # and the value loss ignores the observation tokens: only tokens 0, 1, 4, 5 count
    # (V - R)^2 / 2 there: (0.2 - 0.445275)^2, (0.4 - 0.5895)^2, (0.5 - 0.81)^2, (0.8 - 1)^2, mean
    loss, _ = value_loss(values, values, ret, mask, clip_range=None)
    expected = 0.5 * (0.245275 ** 2 + 0.1895 ** 2 + 0.31 ** 2 + 0.2 ** 2) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ppo_advantages_run_gae_over_the_model_tokens_only(tiny_model):
    # the trainer's call with a real value model: the observation tokens get advantage 0, and the
    # model tokens get exactly the GAE of the compacted sequence (observations removed)
    batch, _ = _tool_batch()
    torch.manual_seed(0)
    critic = Critic(ValueModel(tiny_model.base_model, tiny_model.config.hidden_size), CriticConfig(), TrainerConfig())
    torch.nn.init.normal_(critic.model.value_head.weight, std=0.1)
    cfg = Config()
    cfg.advantage.estimator, cfg.advantage.gamma, cfg.advantage.lam, cfg.advantage.whiten = "gae", 0.9, 0.5, False
    values, adv, ret = ppo_advantages(critic, cfg, batch, torch.tensor([1.0]), batch.model_mask, None)
    model_tokens = torch.tensor([0, 1, 4, 5])
    compact_adv, compact_ret = gae(_t([0, 0, 0, 1]), values[:, model_tokens], torch.ones(1, 4), gamma=0.9, lam=0.5)
    assert torch.equal(adv[:, [2, 3, 6]], torch.zeros(1, 3)) and torch.equal(ret[:, [2, 3, 6]], torch.zeros(1, 3))
    assert torch.allclose(adv[:, model_tokens], compact_adv) and torch.allclose(ret[:, model_tokens], compact_ret)
    assert values[0, 2] != 0  # the critic did read the observation tokens (as context)


def test_value_model_reads_the_state_before_each_completion_token(tiny_model):
    torch.manual_seed(0)
    critic = ValueModel(tiny_model.base_model, tiny_model.config.hidden_size)
    torch.nn.init.normal_(critic.value_head.weight)
    prompt, completion = torch.tensor([[0, 5, 6]]), torch.tensor([[7, 8, 9]])
    values = critic(prompt, torch.tensor([[0, 1, 1]]), completion, torch.ones(1, 3, dtype=torch.long))
    # the value of completion token t only sees the prompt and tokens < t: changing token 2 leaves
    # the values of tokens 0..2 unchanged (token 2's state is the prefix before it)
    changed = critic(prompt, torch.tensor([[0, 1, 1]]), torch.tensor([[7, 8, 3]]), torch.ones(1, 3, dtype=torch.long))
    assert values.shape == (1, 3) and torch.allclose(values, changed)
    other_prefix = critic(prompt, torch.tensor([[0, 1, 1]]), torch.tensor([[4, 8, 9]]), torch.ones(1, 3, dtype=torch.long))
    assert torch.allclose(values[0, 0], other_prefix[0, 0]) and not torch.allclose(values[0, 1:], other_prefix[0, 1:])


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["critic.lr=1e-3"], "need advantage.estimator=gae"),
    (["advantage.estimator=gae", "rollout.dynamic_sampling=drop"], "dynamic_sampling=off"),
    (["advantage.estimator=gae", "trainer.parallel=fsdp"], "fsdp"),
    (["advantage.estimator=gae", "advantage.lam=1.5"], "advantage.lam"),
    (["advantage.estimator=gae", "critic.clip_range=0"], "critic.clip_range"),
    (["loss.objective=ppo"], "loss.objective"),
    (["advantage.estimator=ppo"], "advantage.estimator"),
    (["data.difficulties=[0]"], "data.difficulties"),
    (["model.embedded.difficulties=[8]"], "model.embedded.difficulties"),
    (["advantage.estimator=gae", "critic.model=/nonexistent/critic"], "critic.model: no model directory"),
    (["advantage.estimator=gae", "critic.model=embedded:tiny-arith"], "critic.model: leave it empty"),
])
def test_config_rejects_bad_credit_assignment_options(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("recipes/tiny-arith.yaml", overrides)


def test_long_chain_recipe_loads():
    # the long chain is level 7: 5 and 6 are the tool-use levels (two-digit products)
    cfg = load_config("recipes/tiny-arith-long.yaml")
    assert cfg.data.difficulties == [7] and 7 in cfg.model.embedded.difficulties
    assert not {5, 6} & set(cfg.model.embedded.difficulties)
    assert load_config("recipes/tiny-arith.yaml").data.difficulties == []  # empty: the default mix 1-4
