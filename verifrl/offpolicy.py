"""Off-policy accounting: how far the sampler's policy is from the trainer's, and what to do about it.

Place in the data flow: rollouts -> verifier results -> rewards -> **pi_old vs pi_sampler** ->
advantages -> loss -> ...

Three policies meet in an update (docs/off-policy.md): pi_behav, the sampler that drew the tokens
(another engine, bf16 kernels, or weights some versions old); pi_old, the trainer's own forward
under the weights the batch is credited to (with ``trainer.recompute_old_logprobs``: read from the
update's own first forward, no extra pass);
and pi_theta, the weights being trained. This module holds the pure functions that measure the
pi_old / pi_behav gap, decide which rows are too stale to train on, and resolve the ``auto``
defaults of the correction from the engine and the weights' dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifrl.losses import masked_mean
from verifrl.update import OldFromForward

# the sampler's engine reads the trainer's float32 weights with the trainer's own kernels: the
# recorded log-probs equal a recomputation up to float32 rounding (~1e-6, bench/sampler_gap.py)
EXACT_ENGINES = ("loop", "hf", "cb")
LOW_PRECISION = (torch.bfloat16, torch.float16)


def sampler_gap_metrics(old_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> dict[str, float]:
    """Gap between the trainer's pi_old and the sampler's log-probs over the loss tokens.

    With ``d_t = old_t - sampler_t`` (the log of the token's ratio ``r_t = pi_old / pi_sampler``):
    ``log_ratio_abs_mean`` / ``log_ratio_abs_max`` are the mean and max of ``|d_t|``;
    ``kl_sampler_trainer`` estimates KL(sampler || trainer) per token from the sampler's own tokens
    with the unbiased, non-negative k3 estimator ``(r - 1) - log r``; ``ratio_outside_half_two``
    is the share of tokens with ``r`` outside [1/2, 2].

    Args:
        old_logp: (B, T) trainer log-probs; sampler_logp: (B, T); mask: (B, T) loss tokens.

    Returns:
        ``offpolicy/...`` floats (all 0 when the mask is empty).
    """
    keep = mask.bool()  # (B, T)
    zero = torch.zeros_like(old_logp, dtype=torch.float32)
    d = torch.where(keep, old_logp.float() - sampler_logp.float(), zero)  # (B, T)
    k3 = torch.expm1(d) - d  # (B, T), 0 where d = 0
    return {
        "offpolicy/log_ratio_abs_mean": float(masked_mean(d.abs(), keep)),
        "offpolicy/log_ratio_abs_max": float(d.abs().max()) if d.numel() else 0.0,
        "offpolicy/kl_sampler_trainer": float(masked_mean(k3, keep)),
        "offpolicy/ratio_outside_half_two": float(masked_mean((d.abs() > torch.log(torch.tensor(2.0))).float(), keep)),
    }


def correction_metrics(weights: Tensor, mask: Tensor) -> dict[str, float]:
    """What the rollout correction did: mean weight and share of loss tokens it zeroed. (B, T) -> floats."""
    keep = mask.bool()
    return {"offpolicy/correction_weight_mean": float(masked_mean(weights, keep)),
            "offpolicy/correction_zeroed_frac": float(masked_mean((weights == 0).float(), keep))}


def stale_groups(versions: Tensor, trainer_version: int, max_staleness: int, group_size: int) -> Tensor:
    """Which groups are too old to train on. (N,) policy version per row -> (P,) bool.

    A row sampled by version v is ``trainer_version - v`` updates old when the trainer, at
    ``trainer_version``, trains on it; a group goes when any of its rows is more than
    ``max_staleness`` old (its advantages are relative to the whole group).
    """
    staleness = trainer_version - versions.view(-1, group_size)  # (P, G)
    return (staleness > max_staleness).any(dim=1)


def staleness_metrics(versions: Tensor, trainer_version: int, dropped_rows: int) -> dict[str, float]:
    """``offpolicy/staleness_mean`` / ``_max`` over the rows a step received, and ``dropped_rows``."""
    staleness = (trainer_version - versions).float()  # (N,)
    return {"offpolicy/staleness_mean": float(staleness.mean()) if staleness.numel() else 0.0,
            "offpolicy/staleness_max": float(staleness.max()) if staleness.numel() else 0.0,
            "offpolicy/dropped_rows": float(dropped_rows)}


def resolve_off_policy(cfg, param_dtype: torch.dtype) -> None:
    """Replace the ``auto`` / null defaults of the correction and the recomputation in ``cfg``.

    The correction is on (``loss.rollout_correction.mode: mask``, with the configured level and
    bounds: sequence, at most 3 by default) when the sampler's log-probs differ from the trainer's:
    a vLLM sampler (other kernels), bf16/fp16 weights (the KV-cache decode and the full forward
    round differently), or a sampler some versions behind (``trainer.off_policy_steps``). A float32
    loop/hf/cb sampler on the trainer's weights records what the trainer computes, so nothing is
    corrected and pi_old is not recomputed: the default run's numbers stay exactly as they were.
    """
    correction = cfg.loss.rollout_correction
    if correction.mode == "auto" and cfg.trainer.recompute_old_logprobs is False:
        correction.mode = "none"  # no pi_old of the trainer's own to compare the sampler with
    if correction.mode == "auto":
        differs = (cfg.rollout.engine not in EXACT_ENGINES or param_dtype in LOW_PRECISION
                   or cfg.trainer.off_policy_steps > 0)
        correction.mode = "mask" if differs else "none"
    if cfg.trainer.recompute_old_logprobs is None:
        cfg.trainer.recompute_old_logprobs = correction.mode != "none" or cfg.trainer.off_policy_steps > 0


def old_logprobs_from_forward(cfg, batch) -> tuple[Tensor, Tensor | None, OldFromForward]:
    """Buffers for pi_old and the correction weights, filled by the update's first forward.

    Returns ``(old_logprobs (N, Lc) NaN, token_weights (N, Lc) zeros or None when the correction is
    off, the OldFromForward that tells the update to fill them)``: see
    :class:`verifrl.update.OldFromForward`. No extra forward pass: the update computes the policy's
    log-probs anyway, and before its first optimiser step they are pi_old.
    """
    correction = cfg.loss.rollout_correction
    old_logprobs = torch.full(batch.completion_ids.shape, float("nan"))  # (N, Lc)
    token_weights = None if correction.mode == "none" else torch.zeros(batch.completion_ids.shape)  # (N, Lc)
    return old_logprobs, token_weights, OldFromForward(batch.sampler_logprobs,
                                                       None if correction.mode == "none" else correction)


def forward_gap_metrics(old_logprobs: Tensor, token_weights: Tensor | None, sampler_logprobs: Tensor,
                        loss_mask: Tensor) -> dict[str, float]:
    """The sampler/trainer gap (and what the correction did) over the tokens the update trained.

    Rows the update skipped (all-zero advantages: no gradient, so no forward) are NaN in
    ``old_logprobs`` and left out. (N, Lc) each -> ``offpolicy/*`` floats; {} when nothing trained.
    """
    trained = loss_mask.bool() & ~old_logprobs.isnan()  # (N, Lc)
    if not bool(trained.any()):
        return {}
    old = torch.nan_to_num(old_logprobs)
    metrics = sampler_gap_metrics(old, sampler_logprobs, trained)
    if token_weights is not None:
        metrics.update(correction_metrics(token_weights, trained))
    return metrics
