"""Policy-gradient losses: per-token log-probs + advantages -> one scalar to differentiate.

Place in the data flow: prompts -> rollouts -> verifier results -> rewards -> advantages ->
**loss** -> update -> logging.

Everything here is a pure function on tensors (no model, no config object), so each formula can be
checked by hand on CPU. Shapes: ``B`` completions (rows), ``T`` completion token positions
(0-based, padding on the right). ``mask`` is 1 on real completion tokens and 0 on padding; padded
positions may hold any garbage (NaN, inf) and never change the loss, its gradient or the metrics,
because inputs are sanitised with ``torch.where`` (``0 * nan`` is ``nan``, so multiplying by the
mask is not enough).

The loss is the clipped surrogate of PPO as used by GRPO (DeepSeekMath, arXiv 2402.03300, eq. 3)::

    ratio_t   = exp(logp_t - old_logp_t)                  (token level, or GSPO sequence level)
    pg_t      = -min(ratio_t * A_t, clip(ratio_t, 1 - eps_low, 1 + eps_high) * A_t)
    loss_t    = pg_t + beta * KL_t                         (KL inside the token aggregation)
    loss      = aggregate(loss_t)                          (grpo / bnpo / dr_grpo / dapo)

``pg_t`` is the policy objective, a registry (``POLICY_OBJECTIVES``, ``loss.objective``):
``ppo_clip`` above, or ``cispo`` (MiniMax-M1, arXiv 2506.13585), which clips the importance
*weight* instead of the update and keeps every token's gradient::

    pg_t      = -sg(min(ratio_t, 1 + eps_high)) * A_t * logp_t

or ``sapo`` (Soft Adaptive Policy Optimization, arXiv 2511.20347; TRL ``loss_type="sapo"``), a
smooth gate in place of the hard clip, temperature ``tau`` by the advantage's sign::

    pg_t      = -sigmoid(tau * (ratio_t - 1)) * 4 / tau * A_t

Departures from the paper, all opt-in: clip-higher (DAPO), dual clip ``delta`` (TRL/INTELLECT-2),
sequence-level ratio (GSPO), token-level aggregations (DAPO, Dr. GRPO) and the ratio-corrected KL
estimator ``k3_ratio`` (arXiv 2506.09477).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from verifrl.registry import Registry

KL_ESTIMATORS: Registry = Registry("KL estimator", "loss.kl_estimator")
IMPORTANCE_LEVELS: Registry = Registry("importance level", "loss.importance_level")
POLICY_OBJECTIVES: Registry = Registry("policy objective", "loss.objective")
LOSS_AGGREGATIONS: Registry = Registry("loss aggregation", "loss.type")
ROLLOUT_CORRECTION_MODES = ("none", "truncate", "mask")
ROLLOUT_CORRECTION_LEVELS = ("token", "sequence")


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is set; garbage under the mask is ignored.

    Args:
        x: any shape, e.g. (B, T).
        mask: same shape as ``x`` (bool or 0/1).
        dim: reduce this dimension only; None reduces everything.

    Returns:
        A scalar (``dim=None``) or ``x`` reduced over ``dim``; an empty mask gives 0, not NaN.
    """
    keep = mask.bool()
    values = torch.where(keep, x, torch.zeros_like(x))
    if dim is None:
        return values.sum() / keep.sum().clamp(min=1)
    return values.sum(dim) / keep.sum(dim).clamp(min=1)


def kl_estimate(
    logp: Tensor, ref_logp: Tensor, estimator: str = "k3", old_logp: Tensor | None = None
) -> Tensor:
    """Per-token estimate of KL(pi || ref) from tokens sampled by the policy (Schulman, 2020).

    With ``log r = ref_logp - logp`` (r = pi_ref / pi_theta at the sampled token):

    - ``k1 = -log r``: unbiased value, high variance, negative half the time. As a loss its
      expected gradient is 0 (no regularisation).
    - ``k2 = 0.5 * (log r)^2``: biased value (exact to 2nd order), low variance. As a loss its
      expected on-policy gradient is the gradient of KL(pi || ref).
    - ``k3 = (r - 1) - log r``: unbiased, low variance, always >= 0 (DeepSeekMath eq. 4). As a
      loss its expected gradient is that of the *forward* KL(ref || pi), not of KL(pi || ref)
      (arXiv 2506.09477).
    - ``k3_ratio = k3 * w`` with ``w = exp(logp - stopgrad(old))``, where ``old = old_logp`` if
      given, else ``logp`` itself. On-policy ``w`` is 1 in value, so the value equals k3, but its
      gradient ``(d k3) + k3 * d logp`` is the unbiased gradient of KL(pi || ref) (the score-function
      term k3 was missing). Off-policy (``old_logp`` from the sampler) ``w`` is the importance
      weight that makes the value an unbiased estimate of KL(pi || ref) from pi_old's samples; this
      is TRL's ``use_bias_correction_kl``.

    Args:
        logp: (B, T) log pi_theta of the sampled tokens (differentiable).
        ref_logp: (B, T) log pi_ref of the same tokens.
        estimator: one of ``KL_ESTIMATORS``.
        old_logp: (B, T) sampler log-probs, only used by ``k3_ratio``.

    Returns:
        (B, T) per-token estimate (no masking; see :func:`policy_loss` for that).
    """
    return KL_ESTIMATORS.lookup(estimator)(logp, ref_logp, old_logp)


# --- KL estimators ------------------------------------------------------------------------------
# Each maps (logp (B, T), ref_logp (B, T), old_logp (B, T) or None) -> (B, T); see kl_estimate.


@KL_ESTIMATORS.register("k1")
def _kl_k1(logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None) -> Tensor:
    return -(ref_logp - logp)  # -log r


@KL_ESTIMATORS.register("k2")
def _kl_k2(logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None) -> Tensor:
    return 0.5 * (ref_logp - logp).square()


def _k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    log_r = ref_logp - logp  # (B, T)
    return torch.expm1(log_r) - log_r  # (B, T); expm1 keeps precision when r is close to 1


@KL_ESTIMATORS.register("k3")
def _kl_k3(logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None) -> Tensor:
    return _k3(logp, ref_logp)


@KL_ESTIMATORS.register("k3_ratio")
def _kl_k3_ratio(logp: Tensor, ref_logp: Tensor, old_logp: Tensor | None) -> Tensor:
    anchor = (logp if old_logp is None else old_logp).detach()
    return _k3(logp, ref_logp) * torch.exp(logp - anchor)


# --- importance level -------------------------------------------------------------------------
# Each maps (per-token log ratio (B, T), 0 on padding; mask (B, T) bool) -> the log ratio each
# token's objective uses (B, T).


@IMPORTANCE_LEVELS.register("token")
def _token_ratio(log_ratio: Tensor, keep: Tensor) -> Tensor:
    return log_ratio


@IMPORTANCE_LEVELS.register("sequence")
def _sequence_ratio(log_ratio: Tensor, keep: Tensor) -> Tensor:
    """GSPO: geometric mean of the token ratios of the row, i.e. length-normalised sequence ratio."""
    seq_log_ratio = log_ratio.sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp(min=1)  # (B, 1)
    return seq_log_ratio.expand_as(log_ratio)  # (B, T)


# --- policy objective -------------------------------------------------------------------------
# Each maps (ratio (B, T), log_ratio (B, T), advantages (B, T), *, epsilon_low, epsilon_high,
# delta, logp, sapo_temperatures) -> (per-token policy loss (B, T), {metric name: (B, T) bool mask
# of the tokens it counts}); policy_loss logs each mask's mean over the active tokens (the clip
# fractions). ``log_ratio = logp - stopgrad(old_logp)`` carries the gradient of logp; ``logp``
# (B, T) is the log-prob itself (0 on padding). An objective reads the options it needs.


@POLICY_OBJECTIVES.register("ppo_clip")
def _ppo_clip(ratio: Tensor, log_ratio: Tensor, adv: Tensor, *, epsilon_low: float, epsilon_high: float,
              delta: float | None, **_: object) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate as used by GRPO (DeepSeekMath eq. 3), optional dual clip ``delta``."""
    clipped_ratio = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)  # (B, T)
    unclipped_ratio = ratio if delta is None else torch.clamp(ratio, max=delta)  # (B, T)
    per_token = -torch.minimum(unclipped_ratio * adv, clipped_ratio * adv)  # (B, T)
    with torch.no_grad():
        low = (ratio < 1.0 - epsilon_low) & (adv < 0)  # clip floor removed the gradient
        high = (ratio > 1.0 + epsilon_high) & (adv > 0)  # clip ceiling removed the gradient
        counted = {"clip_frac_low": low, "clip_frac_high": high, "clip_frac": low | high}
        if delta is not None:
            counted["dual_clip_frac"] = (ratio > delta) & (adv < 0)
    return per_token, counted


@POLICY_OBJECTIVES.register("cispo")
def _cispo(ratio: Tensor, log_ratio: Tensor, adv: Tensor, *, epsilon_high: float, logp: Tensor,
           **_: object) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO (MiniMax-M1, arXiv 2506.13585, eq. 4-5): ``-sg(min(r, 1 + eps_high)) * A * logp``.

    The importance weight is truncated from above only (no lower bound: MiniMax-M1 sets eps_low
    large enough never to bind) and carries no gradient, so every token keeps the REINFORCE
    gradient ``-w A d logp`` (PPO's clip drops tokens; those were often the rare reflective
    tokens the paper wants to keep). ``epsilon_low`` and ``delta`` do not apply.
    ``clip_frac_high`` counts the tokens whose weight was truncated (gradient bounded, not removed)."""
    weight = torch.clamp(ratio, max=1.0 + epsilon_high).detach()  # (B, T) stop-gradient weight
    per_token = -weight * adv * logp  # (B, T)
    with torch.no_grad():
        high = ratio > 1.0 + epsilon_high
        counted = {"clip_frac_low": torch.zeros_like(high), "clip_frac_high": high, "clip_frac": high}
    return per_token, counted


@POLICY_OBJECTIVES.register("sapo")
def _sapo(ratio: Tensor, log_ratio: Tensor, adv: Tensor, *,
          sapo_temperatures: tuple[float, float] = (1.0, 1.05), **_: object) -> tuple[Tensor, dict[str, Tensor]]:
    """SAPO (arXiv 2511.20347, TRL ``sapo``): ``-sigmoid(tau (r - 1)) * 4 / tau * A``, ``tau`` the
    first temperature where A > 0, the second elsewhere. Its gradient ``-A * 4 s (1 - s) * r d logp``
    (``s`` the sigmoid) equals the policy gradient on-policy (r = 1) and fades smoothly as r moves
    away, instead of PPO's cut. No hard clip: the clip fractions are 0."""
    positive, negative = sapo_temperatures
    tau = torch.where(adv > 0, torch.full_like(ratio, positive), torch.full_like(ratio, negative))  # (B, T)
    per_token = -torch.sigmoid(tau * (ratio - 1.0)) * 4.0 / tau * adv  # (B, T)
    none = torch.zeros_like(ratio, dtype=torch.bool)
    return per_token, {"clip_frac_low": none, "clip_frac_high": none, "clip_frac": none}


def rollout_correction_weights(
    old_logp: Tensor,
    sampler_logp: Tensor,
    mask: Tensor,
    *,
    mode: str,
    level: str = "sequence",
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> Tensor:
    """Importance weights pi_old / pi_sampler that correct for the sampler not being the trainer.

    The sampler (another engine, bf16 kernels, or weights some versions old) drew the tokens, the
    trainer's pi_old scores them; the policy-gradient term of each token is multiplied by the
    returned weight (TRL's ``vllm_importance_sampling_*``, AReaL's behaviour weight)::

        token:    rho_t = exp(old_t - sampler_t)
        sequence: rho_t = exp(sum_s (old_s - sampler_s)) for every token t of the row
        truncate: w = clamp(rho, clip_min, clip_max)        (truncated IS, TIS)
        mask:     w = rho inside [clip_min, clip_max], else 0  (masked IS, MIS / IcePop)
        none:     w = 1

    A missing bound (None) is no bound. The weights carry no gradient.

    Args:
        old_logp: (B, T) trainer log-probs of the sampled tokens (pi_old, recomputed).
        sampler_logp: (B, T) log-probs the sampler recorded for the same tokens.
        mask: (B, T) 1 on tokens that enter the loss; the sequence ratio sums over these only.
        mode: one of ``ROLLOUT_CORRECTION_MODES``.
        level: one of ``ROLLOUT_CORRECTION_LEVELS``.

    Returns:
        (B, T) weights, 0 on masked-out positions (garbage there, NaN included, is ignored).
    """
    if mode not in ROLLOUT_CORRECTION_MODES:
        raise ValueError(f"unknown rollout correction mode {mode!r}; valid: {', '.join(ROLLOUT_CORRECTION_MODES)}")
    if level not in ROLLOUT_CORRECTION_LEVELS:
        raise ValueError(f"unknown rollout correction level {level!r}; valid: {', '.join(ROLLOUT_CORRECTION_LEVELS)}")
    keep = mask.bool()  # (B, T)
    zero = torch.zeros_like(old_logp, dtype=torch.float32)
    if mode == "none":
        return torch.where(keep, torch.ones_like(zero), zero)
    log_rho = torch.where(keep, old_logp.detach().float() - sampler_logp.detach().float(), zero)  # (B, T)
    if level == "sequence":
        log_rho = log_rho.sum(-1, keepdim=True).expand_as(log_rho)  # (B, T), one value per row
    rho = torch.exp(log_rho)  # (B, T)
    if mode == "truncate":
        weights = torch.clamp(rho, min=clip_min, max=clip_max) if (clip_min, clip_max) != (None, None) else rho
    else:
        outside = torch.zeros_like(keep)
        if clip_min is not None:
            outside |= rho < clip_min
        if clip_max is not None:
            outside |= rho > clip_max
        weights = rho.masked_fill(outside, 0.0)
    return torch.where(keep, weights, zero)


# --- token-loss aggregation -------------------------------------------------------------------
# Each aggregation maps (per_token_loss (B, T) with zeros on padding, mask (B, T) bool, options)
# to a scalar. They differ only in the normaliser, which decides how a token's gradient is
# weighted against sequence length (Dr. GRPO, arXiv 2503.20783, §3).

NORMALISERS = {
    "sequences": "mean over rows of each row's token mean (global over rows)",
    "micro_batch_tokens": "active tokens of the micro-batch at hand (per micro-batch, as TRL's bnpo)",
    "constant": "rows * max_completion_length (global over rows)",
    "batch_tokens": "active tokens of the whole batch, passed as num_items_in_batch",
}
"""What an aggregation divides the token-loss sum by; the update reads it to weight micro-batches
and to know whether a row with zero advantage may be skipped."""


@dataclass(frozen=True)
class LossAggregation:
    """A registered token-loss aggregation: ``reduce(per_token (B, T), mask (B, T), **options)``
    -> scalar, and its ``normaliser`` (a key of ``NORMALISERS``)."""

    reduce: Callable[..., Tensor]
    normaliser: str

    def __call__(self, per_token: Tensor, mask: Tensor, **options: object) -> Tensor:
        return self.reduce(per_token, mask, **options)


def register_loss_aggregation(name: str, normaliser: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Decorator adding a token-loss aggregation under ``name`` (the ``loss.type`` value)."""
    if normaliser not in NORMALISERS:
        raise ValueError(f"normaliser must be one of {', '.join(NORMALISERS)}, got {normaliser!r}")

    def decorator(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        LOSS_AGGREGATIONS.register(name)(LossAggregation(fn, normaliser))
        return fn

    return decorator


@register_loss_aggregation("grpo", normaliser="sequences")
def _aggregate_grpo(per_token: Tensor, mask: Tensor, **_: object) -> Tensor:
    """DeepSeekMath eq. 3: 1/|o_i| token mean per sequence, then the mean over sequences.

    Shorter sequences get larger per-token weight (the length bias Dr. GRPO points out).
    """
    per_sequence = per_token.sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
    return per_sequence.mean()


@register_loss_aggregation("bnpo", normaliser="micro_batch_tokens")
def _aggregate_bnpo(per_token: Tensor, mask: Tensor, **_: object) -> Tensor:
    """Token sum over the batch / number of active tokens in this batch (TRL ``bnpo``)."""
    return per_token.sum() / mask.sum().clamp(min=1)


@register_loss_aggregation("dr_grpo", normaliser="constant")
def _aggregate_dr_grpo(
    per_token: Tensor, mask: Tensor, *, max_completion_length: int | None = None, **_: object
) -> Tensor:
    """Dr. GRPO: token sum / (B * max_completion_length), a constant that ignores lengths."""
    if max_completion_length is None or max_completion_length <= 0:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length > 0 (the generation budget)")
    return per_token.sum() / (per_token.shape[0] * max_completion_length)


@register_loss_aggregation("dapo", normaliser="batch_tokens")
def _aggregate_dapo(
    per_token: Tensor, mask: Tensor, *, num_items_in_batch: Tensor | int | None = None, **_: object
) -> Tensor:
    """DAPO token-level loss (arXiv 2503.14476, eq. 8): token sum / tokens of the whole batch.

    ``num_items_in_batch`` is the active-token count of the full generation batch when the batch is
    split into micro-batches (gradient accumulation); without it this equals ``bnpo``.
    """
    if num_items_in_batch is None:
        return per_token.sum() / mask.sum().clamp(min=1)
    total = torch.as_tensor(num_items_in_batch, dtype=per_token.dtype, device=per_token.device)
    return per_token.sum() / total.clamp(min=1)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss_type: str = "grpo",
    objective: str = "ppo_clip",
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
    delta: float | None = None,
    beta: float = 0.0,
    ref_logp: Tensor | None = None,
    kl_estimator: str = "k3",
    importance_level: str = "token",
    max_completion_length: int | None = None,
    num_items_in_batch: Tensor | int | None = None,
    sapo_temperatures: tuple[float, float] = (1.0, 1.05),
    token_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Policy-gradient loss (PPO clipped surrogate or CISPO) with optional KL to a reference policy.

    Args:
        logp: (B, T) log pi_theta of the sampled completion tokens (differentiable).
        old_logp: (B, T) log-probs of the policy that sampled them (no gradient is taken).
        advantages: (B,) sequence advantages, or (B, T) per-token ones (process supervision).
        mask: (B, T) 1 on completion tokens that enter the loss, 0 on padding / masked rows.
        loss_type: aggregation, a key of ``LOSS_AGGREGATIONS``: ``grpo`` (per-sequence token mean,
            then mean over sequences), ``bnpo`` (sum / active tokens here), ``dr_grpo``
            (sum / (B * max_completion_length)), ``dapo`` (sum / ``num_items_in_batch``, else as bnpo).
        objective: the per-token policy term, a key of ``POLICY_OBJECTIVES``: ``ppo_clip``
            (clipped surrogate) or ``cispo`` (``-sg(min(r, 1 + epsilon_high)) * A * logp``; its
            weight has no lower bound, so ``epsilon_low`` and ``delta`` are not used) or ``sapo``
            (soft gate; the clip options are not used, ``sapo_temperatures`` are).
        epsilon_low: lower clip range, ratio floor ``1 - epsilon_low``.
        epsilon_high: upper clip range, ratio ceiling ``1 + epsilon_high``; None -> ``epsilon_low``.
        delta: dual-clip bound: the *unclipped* ratio is capped at ``delta`` (TRL semantics), which
            bounds the loss of tokens with A < 0 whose ratio exploded. None: off.
        beta: KL coefficient; 0 never reads ``ref_logp``.
        ref_logp: (B, T) reference log-probs, required when ``beta != 0``.
        kl_estimator: ``k1``, ``k2``, ``k3`` (default, DeepSeekMath eq. 4) or ``k3_ratio`` (k3 times
            the importance ratio ``pi / old``: same value on-policy, gradient of KL(pi || ref);
            see :func:`kl_estimate`).
        importance_level: ``token`` (per-token ratio) or ``sequence`` (GSPO, arXiv 2507.18071:
            ``exp(mean_t log ratio)`` shared by all tokens of the row).
        max_completion_length: generation budget, required by ``dr_grpo``.
        num_items_in_batch: active-token count of the whole batch for ``dapo`` under gradient
            accumulation.
        sapo_temperatures: ``(tau_pos, tau_neg)`` of the ``sapo`` gate (TRL defaults 1.0, 1.05).
        token_weights: (B, T) constants multiplying each token's policy-gradient term (not the KL
            term, not the normaliser), e.g. :func:`rollout_correction_weights`; None: all 1.

    Returns:
        ``(loss, metrics)``: the scalar loss to minimise and python floats ``pg_loss`` (the
        aggregated policy term alone), ``clip_frac`` / ``clip_frac_low`` / ``clip_frac_high``
        (fraction of active tokens whose gradient the clip removed: ratio > 1+eps_high with A > 0,
        or ratio < 1-eps_low with A < 0; for cispo the share whose weight was truncated; 0 for
        sapo), ``ratio_mean``, and ``kl`` (masked mean of the KL estimate) when ``beta != 0``;
        ``dual_clip_frac`` when ``delta`` is set.
    """
    aggregate = LOSS_AGGREGATIONS.lookup(loss_type)
    surrogate = POLICY_OBJECTIVES.lookup(objective)
    importance = IMPORTANCE_LEVELS.lookup(importance_level)
    KL_ESTIMATORS.lookup(kl_estimator)
    if beta != 0 and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp")
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"shape mismatch: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)}, "
                         f"mask {tuple(mask.shape)}")
    eps_high = epsilon_low if epsilon_high is None else epsilon_high
    keep = mask.bool()  # (B, T)
    zero = torch.zeros_like(logp)

    # Sanitise first: padding may hold NaN/inf, and any arithmetic on it (even times 0) would leak
    # NaN into the sum or the gradient. where() gives padded positions value 0 and gradient 0.
    logp_ = torch.where(keep, logp, zero)  # (B, T)
    old_ = torch.where(keep, old_logp.detach(), zero)  # (B, T)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)  # (B, 1)
    adv = torch.where(keep, advantages.detach().to(logp.dtype).expand_as(logp), zero)  # (B, T)

    log_ratio = importance(logp_ - old_, keep)  # (B, T), 0 on padding at the token level
    ratio = torch.exp(log_ratio)  # (B, T)
    pg_per_token, counted = surrogate(ratio, log_ratio, adv, epsilon_low=epsilon_low, epsilon_high=eps_high,
                                      delta=delta, logp=logp_, sapo_temperatures=sapo_temperatures)  # (B, T)
    if token_weights is not None:  # the sampler/trainer correction, a separate factor (as TRL)
        pg_per_token = pg_per_token * torch.where(keep, token_weights.detach().to(logp.dtype), zero)
    pg_per_token = torch.where(keep, pg_per_token, zero)

    options = {"max_completion_length": max_completion_length, "num_items_in_batch": num_items_in_batch}
    per_token = pg_per_token
    metrics: dict[str, float] = {}
    if beta != 0:
        assert ref_logp is not None
        ref_ = torch.where(keep, ref_logp.detach(), zero)  # (B, T)
        kl = kl_estimate(logp_, ref_, kl_estimator, old_logp=old_)  # (B, T)
        kl = torch.where(keep, kl, zero)
        per_token = pg_per_token + beta * kl  # KL sits inside the token aggregation (eq. 3)
        metrics["kl"] = float(masked_mean(kl.detach(), keep))
    loss = aggregate(per_token, keep, **options)

    with torch.no_grad():
        metrics["pg_loss"] = float(aggregate(pg_per_token.detach(), keep, **options))
        for name, tokens in counted.items():
            metrics[name] = float(masked_mean(tokens.float(), keep))
        metrics["ratio_mean"] = float(masked_mean(ratio, keep))
    return loss, metrics
