"""Advantages: rewards of a group of completions -> one advantage per completion token.

Place in the data flow: prompts -> rollouts -> verifier results -> rewards -> **advantages** ->
loss -> update -> logging.

Pure functions on tensors. Shapes: ``P`` prompts, ``G`` completions per prompt (a *group*),
``N = P * G`` rows ordered prompt-major (row ``p * G + g`` is completion ``g`` of prompt ``p``),
``T`` = ``width`` completion token positions, 0-based (the first generated token is 0).

Two kinds of signal (DeepSeekMath, arXiv 2402.03300, §4.1.2-4.1.3):

- *outcome*: one reward per completion, turned into one advantage per completion by a registered
  estimator (``ADVANTAGE_ESTIMATORS``: ``grpo``, ``rloo``, ``reinforce_pp``) and broadcast over
  its tokens;
- *critic* (``gae``, PPO's actor-critic): per-token rewards and a value model's per-token values,
  turned into per-token advantages and value targets by generalised advantage estimation
  (:func:`gae`), then whitened over the batch (:func:`masked_whiten`); the trainer calls these
  through :mod:`verifrl.critic`, which owns the value model;
- *process*: one reward per reasoning step; each step reward is z-scored against all steps of the
  group and every token gets the sum of the normalised rewards of the steps ending at or after it
  (:func:`process_supervision_advantages`).

Conventions: sample std (Bessel, ddof=1, as ``torch.std`` and TRL's
``nanstd``), ``eps`` added to the std (not the variance), so an all-equal group gives exactly 0;
a std over fewer than two values is taken as 0 (so a one-completion group gets outcome advantage 0).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from verifrl.registry import Registry

SCALES = ("group", "batch", "none")
MODES = ("outcome", "process", "outcome+process")


def _std(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Sample std (ddof=1); 0 where fewer than two values (torch would give NaN)."""
    n = x.numel() if dim is None else x.shape[dim]
    if n < 2:
        shape = () if dim is None else (x.sum(dim, keepdim=keepdim)).shape
        return torch.zeros(shape, dtype=x.dtype, device=x.device)
    std = x.std() if dim is None else x.std(dim, keepdim=keepdim)
    # All-equal values have std 0 exactly; float rounding of their mean would otherwise leave a
    # ~1e-7 std that turns zero-signal groups into +-0.8 advantages when eps = 0.
    constant = (x.amax() == x.amin()) if dim is None else (x.amax(dim, keepdim=keepdim) == x.amin(dim, keepdim=keepdim))
    return torch.where(constant, torch.zeros_like(std), std)


def _scale_by_std(centred: Tensor, std: Tensor, eps: float) -> Tensor:
    """``centred / (std + eps)``, and exactly 0 where std is 0 (also when eps = 0, not NaN)."""
    return torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred))


def group_advantages(rewards: Tensor, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """GRPO outcome advantages: reward minus its group mean, optionally divided by a std.

    ``A[p, g] = (r[p, g] - mean_g r[p]) / (s + eps)`` with ``s`` the sample std of the group
    (``scale="group"``, DeepSeekMath §4.1.2), of all ``P * G`` rewards of the batch
    (``scale="batch"``, TRL "batch": mean still per group, std over the batch), or no division
    (``scale="none"``, Dr. GRPO arXiv 2503.20783, which removes the difficulty bias of 1/std).

    Args:
        rewards: (P, G) one reward per completion.
        scale: ``"group"``, ``"batch"`` or ``"none"``.
        eps: added to the std.

    Returns:
        (P, G) advantages; all zeros when G == 1 (no group to compare with).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    rewards = rewards.float()
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (P, G)
    if scale == "none":
        return centred
    std = _std(rewards, dim=1, keepdim=True) if scale == "group" else _std(rewards)  # (P, 1) or ()
    return _scale_by_std(centred, std, eps)


def rloo_advantages(rewards: Tensor) -> Tensor:
    """REINFORCE leave-one-out (Ahmadian et al., arXiv 2402.14740).

    ``A[p, g] = r[p, g] - mean_{h != g} r[p, h] = G / (G - 1) * (r[p, g] - mean_g r[p])``: the
    baseline does not contain the completion's own reward, so it is unbiased. No std scaling.

    Args:
        rewards: (P, G).

    Returns:
        (P, G) advantages; zeros when G == 1.
    """
    rewards = rewards.float()
    G = rewards.shape[1]
    if G < 2:
        return torch.zeros_like(rewards)
    return (rewards - rewards.mean(dim=1, keepdim=True)) * (G / (G - 1))  # (P, G)


def reinforce_pp_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """REINFORCE++-baseline (arXiv 2501.03262): group-centred, then batch-std normalised.

    ``c[p, g] = r[p, g] - mean_g r[p]``; ``A = c / (std(c over all P * G) + eps)``. The global std
    avoids the per-group difficulty reweighting of GRPO's 1/std.

    Args:
        rewards: (P, G).
        eps: added to the batch std.

    Returns:
        (P, G) advantages; zeros when G == 1.
    """
    rewards = rewards.float()
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (P, G)
    return _scale_by_std(centred, _std(centred), eps)


# --- estimator registry (verl ``register_adv_est`` style) --------------------------------------
# Two kinds share one registry (the single source of ``advantage.estimator`` names):
# - group estimators map (rewards (P, G), *, scale, eps) -> (P, G). ``scale`` is GRPO's option:
#   rloo and reinforce_pp fix their own scaling, so token_advantages rejects a non-default scale
#   with them instead of ignoring it;
# - critic estimators (``needs_critic=True``, listed in CRITIC_ESTIMATORS) map (token_rewards
#   (B, T), values (B, T), mask (B, T), *, gamma, lam) -> (advantages, returns); the trainer
#   builds a value model for them (verifrl.critic) and token_advantages refuses them.

AdvantageEstimator = Callable[..., Any]
ADVANTAGE_ESTIMATORS: Registry = Registry("advantage estimator", "advantage.estimator")
CRITIC_ESTIMATORS: set[str] = set()
"""Estimators that need a value model (the trainer builds verifrl.critic for them)."""
SCALE_FREE_ESTIMATORS = {"rloo", "reinforce_pp"}
"""Estimators that fix their own scaling: ``advantage.scale_rewards`` must stay ``group`` with them."""


def register_advantage_estimator(
    name: str, needs_critic: bool = False
) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Decorator adding an estimator: a group one ``fn(rewards (P, G), *, scale, eps) -> (P, G)``,
    or with ``needs_critic`` a token one ``fn(token_rewards, values, mask, *, gamma, lam)``."""
    register = ADVANTAGE_ESTIMATORS.register(name)

    def decorator(fn: AdvantageEstimator) -> AdvantageEstimator:
        register(fn)
        if needs_critic:
            CRITIC_ESTIMATORS.add(name)
        return fn

    return decorator


@register_advantage_estimator("grpo")
def _grpo(rewards: Tensor, *, scale: str = "group", eps: float = 1e-4) -> Tensor:
    return group_advantages(rewards, scale=scale, eps=eps)


@register_advantage_estimator("rloo")
def _rloo(rewards: Tensor, *, scale: str = "group", eps: float = 1e-4) -> Tensor:
    return rloo_advantages(rewards)


@register_advantage_estimator("reinforce_pp")
def _reinforce_pp(rewards: Tensor, *, scale: str = "group", eps: float = 1e-4) -> Tensor:
    return reinforce_pp_advantages(rewards, eps=eps)


def process_supervision_advantages(
    step_rewards: Sequence[Sequence[float]],
    step_ends: Sequence[Sequence[int]],
    lengths: Sequence[int],
    eps: float = 1e-4,
) -> Tensor:
    """DeepSeekMath process supervision (arXiv 2402.03300, §4.1.3) for ONE group.

    All step rewards of all G completions form one pool R; each is normalised by the pool's mean
    and sample std, ``r~ = (r - mean(R)) / (std(R) + eps)``, and token t of completion i gets
    ``A[i, t] = sum_{j : e[i, j] >= t} r~[i, j]``: the tokens of step j (positions
    ``e[i, j-1] + 1 .. e[i, j]``) receive the undiscounted sum of the normalised rewards of steps
    j..K_i, and tokens after the last step end get 0.

    Decided edge cases:
        - all step rewards equal (std 0): every r~ is exactly 0 (0 / eps), so A = 0;
        - fewer than two steps in the whole pool: std taken as 0, so A = 0;
        - a completion with no steps adds nothing to R and gets A = 0 on all its tokens;
        - a one-completion group is normalised over its own steps (the pool is what the formula
          names); it is nonzero only when its steps disagree;
        - a truncated completion: only the steps the verifier scored count; the tokens of its
          unfinished tail get 0;
        - two steps ending on the same token both count (``index_add``).

    Args:
        step_rewards: G lists, ``step_rewards[i][j]`` = reward of step j of completion i.
        step_ends: G lists, ``step_ends[i][j]`` = 0-based index of the token where step j ends
            (inclusive), ``0 <= e < lengths[i]``.
        lengths: G completion lengths in tokens.
        eps: added to the std.

    Returns:
        (G, max(lengths)) float32 advantages, 0 past each completion's length.
    """
    G = len(lengths)
    if len(step_rewards) != G or len(step_ends) != G:
        raise ValueError(f"{len(step_rewards)} step_rewards, {len(step_ends)} step_ends, {G} lengths: need one per completion")
    width = max((int(n) for n in lengths), default=0)
    out = torch.zeros(G, width)  # (G, L)
    pool = [float(r) for rewards_i in step_rewards for r in rewards_i]
    for i, (rewards_i, ends_i) in enumerate(zip(step_rewards, step_ends)):
        if len(rewards_i) != len(ends_i):
            raise ValueError(f"completion {i}: {len(rewards_i)} step rewards but {len(ends_i)} step ends")
        for e in ends_i:
            if not 0 <= int(e) < int(lengths[i]):
                raise ValueError(f"completion {i}: step end {e} outside its {lengths[i]} tokens")
    if len(pool) < 2:
        return out
    pool_t = torch.tensor(pool, dtype=torch.float64)  # (K_total,)
    normalised = _scale_by_std(pool_t - pool_t.mean(), _std(pool_t), eps)  # (K_total,)
    start = 0
    for i, ends_i in enumerate(step_ends):
        k = len(ends_i)
        if k == 0:
            continue
        per_token = torch.zeros(int(lengths[i]), dtype=torch.float64)  # (L_i,)
        # index_add, not assignment: two steps ending on the same token must both count
        per_token.index_add_(0, torch.tensor([int(e) for e in ends_i]), normalised[start:start + k])
        # reverse cumulative sum: token t collects the rewards of every step ending at or after t
        out[i, : int(lengths[i])] = per_token.flip(0).cumsum(0).flip(0).float()
        start += k
    return out


def token_advantages(
    rewards: Tensor,
    lengths: Tensor,
    width: int,
    *,
    estimator: str = "grpo",
    mode: str = "outcome",
    scale: str = "group",
    eps: float = 1e-4,
    step_rewards: list[list[list[float]]] | None = None,
    step_ends: list[list[list[int]]] | None = None,
    process_weight: float = 1.0,
) -> Tensor:
    """The trainer's entry point: per-token advantages for a batch of P groups of G completions.

    Modes:
        - ``outcome``: the estimator's sequence advantage on every token of the completion.
        - ``process``: DeepSeekMath process supervision per group (step rewards only).
        - ``outcome+process``: ``A[i, t] = A_outcome[i] + process_weight * A_process[i, t]``.
          The outcome reward is a final segment ending at the last token (so it covers every
          token, exactly as a broadcast), but it is normalised *separately* by the outcome
          estimator instead of being pooled into the step rewards' std. Separate normalisation
          then a weighted sum follows PRIME (arXiv 2502.01456: outcome and process returns each
          with their own leave-one-out baseline, then combined); pooling would let the number of
          steps per completion set the scale of the answer signal (one outcome among K_i steps)
          and would make ``estimator``/``scale`` meaningless. ``process_weight = 0`` gives the
          outcome mode exactly.

    Args:
        rewards: (P, G) sequence rewards.
        lengths: (P, G) long, completion lengths in tokens (<= width).
        width: T, the padded completion width of the batch.
        estimator: a key of ``ADVANTAGE_ESTIMATORS`` (outcome modes).
        mode: ``outcome``, ``process`` or ``outcome+process``.
        scale: ``group`` / ``batch`` / ``none`` for ``grpo`` (others accept only the default).
        eps: added to every std.
        step_rewards: [P][G][K] step rewards (process modes).
        step_ends: [P][G][K] 0-based step-end token indices (process modes).
        process_weight: lambda, the weight of the process term in ``outcome+process``.

    Returns:
        (P * G, width) float32 advantages; row ``p * G + g`` is completion g of prompt p and
        positions ``>= lengths[p, g]`` are 0.
    """
    if mode not in MODES:
        raise ValueError(f"unknown advantage mode {mode!r}; valid: {', '.join(MODES)}")
    ADVANTAGE_ESTIMATORS.lookup(estimator)
    if estimator in CRITIC_ESTIMATORS:
        raise ValueError(f"estimator {estimator!r} needs a critic's values: see verifrl.critic, not token_advantages")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    if estimator in SCALE_FREE_ESTIMATORS and scale != "group":
        raise ValueError(f"scale={scale!r} only applies to estimator 'grpo'; {estimator!r} has its own scaling")
    if rewards.dim() != 2 or lengths.shape != rewards.shape:
        raise ValueError(f"rewards and lengths must both be (P, G); got {tuple(rewards.shape)} and {tuple(lengths.shape)}")
    P, G = rewards.shape
    flat_lengths = lengths.reshape(-1).long().cpu()  # (N,)
    if flat_lengths.numel() and int(flat_lengths.max()) > width:
        raise ValueError(f"a completion length {int(flat_lengths.max())} exceeds width {width}")
    positions = torch.arange(width)  # (T,)
    valid = positions.unsqueeze(0) < flat_lengths.unsqueeze(1)  # (N, T)
    out = torch.zeros(P * G, width)  # (N, T)

    if mode in ("outcome", "outcome+process"):
        sequence = ADVANTAGE_ESTIMATORS[estimator](rewards.detach().float().cpu(), scale=scale, eps=eps)  # (P, G)
        out += torch.where(valid, sequence.reshape(-1, 1), torch.zeros(()))  # (N, T)

    if mode in ("process", "outcome+process"):
        if step_rewards is None or step_ends is None:
            raise ValueError(f"mode {mode!r} needs step_rewards and step_ends")
        if len(step_rewards) != P or len(step_ends) != P:
            raise ValueError(f"step_rewards/step_ends need one entry per prompt ({P})")
        weight = 1.0 if mode == "process" else process_weight
        for p in range(P):
            group_lengths = flat_lengths[p * G:(p + 1) * G].tolist()
            process = process_supervision_advantages(step_rewards[p], step_ends[p], group_lengths, eps=eps)  # (G, L_max)
            out[p * G:(p + 1) * G, : process.shape[1]] += weight * process
    return out.to(rewards.device) if rewards.device.type != "cpu" else out


# --- PPO with a critic: generalised advantage estimation ---------------------------------------


@register_advantage_estimator("gae", needs_critic=True)
def gae(token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al., arXiv 1506.02438), over masked tokens.

    Computed backwards over the positions where ``mask`` is set, as if the others were absent:
    for the valid positions ``t_1 < ... < t_n`` of a row,

        delta_k = r[t_k] + gamma * V[t_{k+1}] - V[t_k]      (V after the last valid token is 0)
        A[t_k]  = delta_k + gamma * lam * A[t_{k+1}]       (A after the last valid token is 0)
        returns = A + V

    A position outside the mask (right padding, or a tool's observation tokens inside a
    completion, which the model did not choose) contributes no reward, no value and no discount
    step, and gets advantage and return 0. Not whitened: see :func:`masked_whiten`. ``lam = 1``
    gives the discounted return minus V (Monte Carlo); ``lam = 0`` the one-step TD error.

    Args:
        token_rewards: (B, T) reward of each token (outcome on the last model token, step
            rewards on step ends, -beta * KL per token...).
        values: (B, T) the critic's V(s_t) for the state before token t (no gradient taken).
        mask: (B, T) 1 on the model's own completion tokens.
        gamma: discount per valid token.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both (B, T) float32, 0 outside the mask.
    """
    if token_rewards.shape != values.shape or values.shape != mask.shape:
        raise ValueError(f"shape mismatch: token_rewards {tuple(token_rewards.shape)}, values "
                         f"{tuple(values.shape)}, mask {tuple(mask.shape)}")
    keep = mask.bool()  # (B, T)
    zero = torch.zeros(values.shape, dtype=torch.float32, device=values.device)
    rewards = torch.where(keep, token_rewards.detach().float(), zero)  # (B, T) garbage-free
    vals = torch.where(keep, values.detach().float(), zero)  # (B, T)
    advantages = torch.zeros_like(zero)  # (B, T)
    next_value = torch.zeros(values.shape[0], dtype=torch.float32, device=values.device)  # (B,)
    next_advantage = torch.zeros_like(next_value)  # (B,)
    for t in range(values.shape[1] - 1, -1, -1):  # T is a few hundred: a loop is clear and cheap
        delta = rewards[:, t] + gamma * next_value - vals[:, t]  # (B,)
        advantage = delta + gamma * lam * next_advantage  # (B,)
        valid = keep[:, t]  # (B,)
        advantages[:, t] = torch.where(valid, advantage, zero[:, t])
        # a masked position is skipped: the next valid token to the left sees the same carry
        next_value = torch.where(valid, vals[:, t], next_value)
        next_advantage = torch.where(valid, advantage, next_advantage)
    returns = torch.where(keep, advantages + vals, zero)  # (B, T)
    return advantages, returns


def masked_whiten(x: Tensor, mask: Tensor, *, shift_mean: bool = True, eps: float = 1e-8,
                  sum_across: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the masked positions of the whole batch (verl
    ``masked_whiten``, which PPO applies to GAE advantages).

    ``var`` is the unbiased (n - 1) variance of the masked values, as in verl. ``shift_mean=False``
    rescales without centring (adds the mean back). ``sum_across`` sums a tensor over data-parallel
    ranks, so every rank whitens with the statistics of the global batch; None: this batch only.

    Args:
        x: (B, T).
        mask: (B, T) 1 on the positions that count; the others return 0.

    Returns:
        (B, T) whitened values, 0 outside the mask; all zeros if no position counts.
    """
    keep = mask.bool()
    values = torch.where(keep, x.float(), torch.zeros_like(x, dtype=torch.float32))  # (B, T)
    wide = values.double()  # float64 moments: sum x^2 - n mean^2 cancels badly in float32
    moments = torch.stack([keep.sum().double(), wide.sum(), wide.square().sum()])  # (3,)
    if sum_across is not None:
        moments = sum_across(moments)
    count, total, total_sq = moments[0], moments[1], moments[2]
    if count < 1:
        return torch.zeros_like(values)
    mean = total / count
    # sum (x - mean)^2 = sum x^2 - count * mean^2; unbiased when two or more values
    var = (total_sq - count * mean.square()).clamp(min=0) / (count - 1).clamp(min=1)
    whitened = (wide - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    whitened = whitened.float()
    return torch.where(keep, whitened, torch.zeros_like(whitened))
