"""Rewards: verifier scores -> one scalar (or per-token) reward per completion.

Place in the data flow: prompts -> rollouts -> verifier results -> **rewards** -> advantages ->
loss -> update -> logging.

Pure functions on tensors. ``N`` completions, ``V`` verifiers, ``T`` completion token positions.

- :func:`overlong_penalty`: DAPO soft overlong punishment (arXiv 2503.14476, eq. 13), added to the
  reward before the advantages.
- KL in the reward (``loss.kl_placement = "reward"``), the PPO / InstructGPT placement
  (DeepSeekMath eq. 2: ``r_t = r_phi(q, o_<=t) - beta * log(pi(o_t) / pi_ref(o_t))``):

  * with outcome advantages (GRPO, RLOO, REINFORCE++-baseline), the trainer subtracts the
    completion's summed k1, :func:`kl_penalized_sequence_rewards`, from the reward *before*
    :func:`verifrl.advantages.token_advantages` and passes ``beta=0`` to the loss (the KL then
    acts through the score function, whose expected gradient is that of KL(pi || ref)); this is
    TRL's RLOOTrainer and OpenRLHF's default. Note that group z-scoring rescales the penalty by
    1/std of the penalised rewards (the reason DeepSeekMath moved KL into the loss, §4.1);
  * :func:`kl_penalized_token_rewards` + :func:`returns_to_go` give the per-token form (reward
    -beta*k1 on every token, the sequence reward on the last one, undiscounted return-to-go), for
    REINFORCE++-style token advantages; the sum over a row of the token rewards equals
    :func:`kl_penalized_sequence_rewards`.

  * with ``advantage.estimator: gae`` the KL is per token in the critic's token rewards
    (:func:`kl_token_penalty`, added to :func:`critic_token_rewards`), as in verl's PPO.

  The log-probs used here are those of the sampler (``old``) and are not differentiated.

- :func:`critic_token_rewards`: the token rewards PPO's critic learns from: the outcome reward on
  the last model token and, with a step verifier, each step's reward on the step's last token.
"""

from __future__ import annotations

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, max_length: int, cache_length: int) -> Tensor:
    """DAPO soft overlong punishment (arXiv 2503.14476, eq. 13; TRL ``get_soft_overlong_punishment``).

    ``R(L) = 0`` if ``L <= max - cache``; ``((max - cache) - L) / cache`` if
    ``max - cache < L <= max`` (a linear ramp from 0 to -1); ``-1`` if ``L > max``.

    Args:
        lengths: (N,) completion lengths in tokens.
        max_length: L_max, the generation budget.
        cache_length: L_cache, the width of the ramp (0: only lengths above L_max are punished).

    Returns:
        (N,) float penalties in [-1, 0], to add to the reward.
    """
    if cache_length < 0 or cache_length > max_length:
        raise ValueError(f"need 0 <= cache_length ({cache_length}) <= max_length ({max_length})")
    lengths = lengths.float()
    safe_zone = max_length - cache_length
    if cache_length > 0:
        ramp = (safe_zone - lengths) / cache_length  # (N,)
    else:
        ramp = torch.zeros_like(lengths)
    penalty = torch.where(lengths <= safe_zone, torch.zeros_like(lengths), ramp)
    return torch.where(lengths > max_length, torch.full_like(lengths, -1.0), penalty)  # (N,)


def kl_penalized_token_rewards(
    rewards: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, beta: float
) -> Tensor:
    """Per-token rewards with the KL penalty inside (PPO / InstructGPT; DeepSeekMath eq. 2).

    ``token_reward[i, t] = -beta * (logp[i, t] - ref_logp[i, t])`` (k1) on every completion token,
    plus ``rewards[i]`` on the completion's last token.

    Args:
        rewards: (N,) sequence rewards.
        logp: (N, T) sampler log-probs of the completion tokens.
        ref_logp: (N, T) reference log-probs of the same tokens.
        mask: (N, T) 1 on completion tokens; padding may hold garbage.
        beta: KL coefficient.

    Returns:
        (N, T) token rewards, 0 on padding. A row with no tokens carries no reward.
    """
    keep = mask.bool()  # (N, T)
    zero = torch.zeros_like(logp, dtype=torch.float32)
    k1 = torch.where(keep, logp.detach().float() - ref_logp.detach().float(), zero)  # (N, T)
    token_rewards = -beta * k1  # (N, T)
    lengths = keep.sum(-1)  # (N,)
    last = (lengths - 1).clamp(min=0)  # (N,) index of the last completion token
    outcome = torch.where(lengths > 0, rewards.float(), torch.zeros_like(rewards, dtype=torch.float32))  # (N,)
    return token_rewards.scatter_add(1, last.unsqueeze(1), outcome.unsqueeze(1))


def kl_penalized_sequence_rewards(
    rewards: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, beta: float
) -> Tensor:
    """Sequence reward minus the summed per-token k1 (TRL RLOOTrainer): ``r - beta * sum_t k1``.

    Args:
        rewards: (N,); logp, ref_logp, mask: (N, T) as in :func:`kl_penalized_token_rewards`.
        beta: KL coefficient.

    Returns:
        (N,) penalised rewards, to feed to the outcome advantage estimators.
    """
    return kl_penalized_token_rewards(rewards, logp, ref_logp, mask, beta).sum(-1)


def returns_to_go(token_rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Discounted return from each token: ``G[t] = r[t] + gamma * G[t + 1]``, 0 on padding.

    Args:
        token_rewards: (N, T).
        mask: (N, T) 1 on completion tokens (right padding).
        gamma: discount (1.0: the undiscounted suffix sum of DeepSeekMath process supervision).

    Returns:
        (N, T) returns.
    """
    keep = mask.bool()
    rewards = torch.where(keep, token_rewards.float(), torch.zeros_like(token_rewards, dtype=torch.float32))
    out = torch.zeros_like(rewards)  # (N, T)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)  # (N,)
    for t in range(rewards.shape[1] - 1, -1, -1):  # T is a few hundred: a loop is clear and cheap
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return torch.where(keep, out, torch.zeros_like(out))


def kl_token_penalty(logp: Tensor, ref_logp: Tensor, mask: Tensor, beta: float) -> Tensor:
    """``-beta * k1 = -beta * (logp - ref_logp)`` on every masked token, 0 elsewhere. (N, T)."""
    return kl_penalized_token_rewards(torch.zeros(logp.shape[0]), logp, ref_logp, mask, beta)


def critic_token_rewards(
    outcome: Tensor | None,
    mask: Tensor,
    step_scores: Sequence[Sequence[float]] | None = None,
    step_ends: Sequence[Sequence[int]] | None = None,
    step_weight: float = 1.0,
) -> Tensor:
    """Per-token rewards for GAE: sparse (outcome) and dense (per step).

    - ``outcome[i]`` sits on the last token of row i where ``mask`` is set (the last token the
      model chose: tool observations after it, masked out, do not move it); None: no outcome term.
    - each step j of row i adds ``step_weight * (step_scores[i][j] - 1)`` on its last token
      ``step_ends[i][j]``: 0 for a step whose claims all check out, ``-step_weight`` for a false
      one (``-step_weight / 2`` for math_steps' neutral 0.5). A penalty, not a bonus: with
      undiscounted returns a positive per-step reward would pay for writing extra (true) steps.
      math_steps' last step is the answer step, scored by correctness, so with ``outcome=None``
      the answer still counts (as ``-step_weight`` when wrong).

    Args:
        outcome: (N,) sequence rewards, or None.
        mask: (N, T) 1 on the model's completion tokens.
        step_scores: N lists of step scores in [0, 1] (None: no step term).
        step_ends: N lists of 0-based step-end token indices, one per score.
        step_weight: scale of the step penalties.

    Returns:
        (N, T) float32 token rewards, 0 outside the mask. A row with no masked token gets nothing.
    """
    keep = mask.bool()  # (N, T)
    N, T = keep.shape
    out = torch.zeros(N, T, dtype=torch.float32)
    has_tokens = keep.any(1)  # (N,)
    if outcome is not None:
        positions = torch.arange(T).expand(N, T)
        last = torch.where(keep, positions, torch.full_like(positions, -1)).amax(1).clamp(min=0)  # (N,)
        value = torch.where(has_tokens, outcome.detach().float().cpu(), torch.zeros(N))
        out.scatter_add_(1, last.unsqueeze(1), value.unsqueeze(1))
    if step_scores is not None:
        if step_ends is None or len(step_scores) != N or len(step_ends) != N:
            raise ValueError(f"step_scores/step_ends need one list per row ({N})")
        for i, (scores, ends) in enumerate(zip(step_scores, step_ends)):
            if len(scores) != len(ends):
                raise ValueError(f"row {i}: {len(scores)} step scores but {len(ends)} step ends")
            for score, end in zip(scores, ends):
                if not 0 <= int(end) < T:
                    raise ValueError(f"row {i}: step end {end} outside the {T} token positions")
                out[i, int(end)] += step_weight * (float(score) - 1.0)
    return torch.where(keep, out, torch.zeros_like(out))
