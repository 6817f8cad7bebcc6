"""Reward shaping: DAPO overlong penalty, KL-in-reward helpers."""

from __future__ import annotations

import math

import pytest
import torch

from verifrl.rewards import (
    kl_penalized_sequence_rewards,
    kl_penalized_token_rewards,
    overlong_penalty,
    returns_to_go,
)


def test_overlong_penalty_dapo_eq13():
    # max 20, cache 4: safe zone <= 16 -> 0 ; 17 -> (16-17)/4 = -.25 ; 20 -> -1 ; 21 -> -1
    lengths = torch.tensor([3, 16, 17, 18, 20, 21])
    torch.testing.assert_close(overlong_penalty(lengths, 20, 4), torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0]))
    # no ramp: only lengths past the budget are punished
    torch.testing.assert_close(overlong_penalty(lengths, 20, 0), torch.tensor([0.0, 0, 0, 0, 0, -1]))
    with pytest.raises(ValueError):
        overlong_penalty(lengths, 20, 30)


def test_kl_penalized_token_rewards_and_returns():
    # row 0: 3 tokens, k1 = logp - ref = [.1, -.2, .3]; beta .5 -> [-.05, .1, -.15] + reward 1 on t2
    # row 1: 1 token (padding holds NaN garbage), k1 = .4 -> -.2 + reward 0
    logp = torch.tensor([[0.1, -0.2, 0.3], [0.4, float("nan"), float("inf")]])
    ref = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rewards = torch.tensor([1.0, 0.0])
    tok = kl_penalized_token_rewards(rewards, logp, ref, mask, beta=0.5)
    torch.testing.assert_close(tok, torch.tensor([[-0.05, 0.1, 0.85], [-0.2, 0.0, 0.0]]))
    torch.testing.assert_close(kl_penalized_sequence_rewards(rewards, logp, ref, mask, 0.5), torch.tensor([0.9, -0.2]))
    # undiscounted return-to-go: row 0 [.9, .95, .85]
    torch.testing.assert_close(returns_to_go(tok, mask), torch.tensor([[0.9, 0.95, 0.85], [-0.2, 0.0, 0.0]]))
    # gamma .5: G2 = .85 ; G1 = .1 + .425 = .525 ; G0 = -.05 + .2625 = .2125
    torch.testing.assert_close(returns_to_go(tok, mask, gamma=0.5)[0], torch.tensor([0.2125, 0.525, 0.85]))


def test_empty_row_gets_no_reward():
    tok = kl_penalized_token_rewards(torch.tensor([1.0]), torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), 0.1)
    assert torch.equal(tok, torch.zeros(1, 2))


def test_sequence_kl_penalty_is_unbiased_reverse_kl_in_expectation():
    # E_{x~pi}[sum k1] over a categorical equals KL(pi || ref): the penalty in the reward is the true KL
    probs = torch.tensor([0.5, 0.3, 0.2])
    ref = torch.tensor([0.2, 0.5, 0.3])
    pen = kl_penalized_sequence_rewards(torch.zeros(3), probs.log()[:, None], ref.log()[:, None], torch.ones(3, 1), 1.0)
    kl = sum(p * math.log(p / q) for p, q in zip(probs.tolist(), ref.tolist()))
    assert float((probs * -pen).sum()) == pytest.approx(kl, rel=1e-6)
