"""The update: token log-probs of completions under a model, and one optimiser step of the policy.

Place in the data flow: ... -> advantages -> **loss -> update** -> logging.

Rows are sorted by length and cut into micro-batches whose padding columns are trimmed, so a
CPU never multiplies padding. Gradients are accumulated so that the result equals one
full-batch step for every loss type whose normaliser is global (grpo, dr_grpo, dapo); bnpo is
normalised per micro-batch, as in TRL (``verifrl.losses.NORMALISERS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from verifrl import distributed, logprobs
from verifrl.models import forward_accepts
from verifrl.losses import LOSS_AGGREGATIONS, policy_loss, rollout_correction_weights


@dataclass
class TrainBatch:
    """Everything the loss needs for N completions (tensors on CPU; moved per micro-batch)."""

    prompt_ids: torch.Tensor  # (N, Lp) left-padded
    prompt_mask: torch.Tensor  # (N, Lp)
    completion_ids: torch.Tensor  # (N, Lc) right-padded
    completion_mask: torch.Tensor  # (N, Lc) tokens that enter the loss
    old_logprobs: torch.Tensor  # (N, Lc) pi_old: the sampler's log-probs, or the trainer's recomputation
    advantages: torch.Tensor  # (N, Lc) per-token advantages
    ref_logprobs: torch.Tensor | None = None  # (N, Lc) frozen reference model, when beta > 0
    context_mask: torch.Tensor | None = None  # (N, Lc) completion tokens the model attends to (the policy's
    # and spliced tool observations); None: completion_mask. completion_mask stays the model-token mask.
    token_weights: torch.Tensor | None = None  # (N, Lc) rollout correction pi_old / pi_sampler on the
    # model tokens (0 elsewhere), or None: multiplies each token's policy-gradient term, not the normaliser
    old_from_forward: OldFromForward | None = None  # pi_old is the policy as it stands: see the class


@dataclass
class OldFromForward:
    """pi_old taken from the update's own forward instead of a separate no-grad pass.

    Before the first optimiser step on a batch, pi_old *is* the policy, so the forward that the
    loss needs already computes it (verl skips its old-log-prob pass the same way when on-policy).
    The first update on the batch fills ``TrainBatch.old_logprobs`` (a NaN buffer: rows it skips
    for all-zero advantages stay NaN) with that forward's detached log-probs and, when
    ``correction`` is set, ``TrainBatch.token_weights`` with the rollout correction weights
    computed from them and ``sampler_logprobs`` (the same function, row by row); later updates on
    the batch (``trainer.num_iterations > 1``) read both buffers as fixed tensors. The ratio of
    the first update is exactly 1 in value, with the policy's gradient.
    """

    sampler_logprobs: torch.Tensor  # (N, Lc) the behaviour policy's log-probs
    correction: object | None = None  # loss.rollout_correction (mode truncate / mask), or None: off
    filled: bool = False


def _trimmed(prompt_ids, prompt_mask, completion_ids, completion_mask):
    """Drop all-padding columns: left of the longest prompt, right of the longest completion."""
    prompt_width = int(prompt_mask.sum(1).max())
    completion_width = max(1, int(completion_mask.sum(1).max()))
    return (prompt_ids[:, -prompt_width:], prompt_mask[:, -prompt_width:],
            completion_ids[:, :completion_width], completion_mask[:, :completion_width], completion_width)


def completion_logprobs(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(completion token | prefix) at ``temperature``, shape (N, Lc); entropy too if asked.

    The logits at position p score token p+1, so the completion's scores are the logits from the
    last prompt position to the second-to-last completion position.
    """
    device = next(model.parameters()).device
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1).to(device)  # (N, Lp+Lc)
    attention = torch.cat([prompt_mask, completion_mask], dim=1).to(device)  # (N, Lp+Lc)
    # explicit positions so left padding does not shift them (matters for absolute-position models)
    positions = (attention.cumsum(1) - 1).clamp(min=0)  # (N, Lp+Lc)
    prompt_width, completion_width = prompt_ids.shape[1], completion_ids.shape[1]
    # (N, Lc+1, V) logits instead of (N, Lp+Lc, V): with a 150k vocabulary the prompt's logits alone
    # are gigabytes that nothing reads
    keep = {"logits_to_keep": completion_width + 1} if forward_accepts(model, "logits_to_keep") else {}
    logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=False,
                   **keep).logits
    logits = logits[:, :-1] if keep else logits[:, prompt_width - 1 : prompt_width + completion_width - 1]
    # float32 math in row chunks: no (N, Lc, V) float32 copy is kept for the backward
    token_logprobs, log_normalizer = logprobs.token_logprobs(logits, completion_ids.to(device), temperature)
    entropy = logprobs.entropy(logits.detach(), log_normalizer, temperature) if with_entropy else None
    return token_logprobs, entropy


@torch.no_grad()
def batched_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature, micro_batch_size=0):
    """Completion log-probs without gradients (reference model), micro-batched. (N, Lc)."""
    out = torch.zeros(completion_ids.shape, dtype=torch.float32)
    n = completion_ids.shape[0]
    step = micro_batch_size or n
    # sharded (fsdp) reference: gathered once, so ranks may run different numbers of forwards
    with distributed.gathered_parameters(model):
        for start in range(0, n, step):
            sl = slice(start, start + step)
            p_ids, p_mask, c_ids, c_mask, width = _trimmed(prompt_ids[sl], prompt_mask[sl], completion_ids[sl],
                                                           completion_mask[sl])
            logp, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, temperature)
            out[sl, :width] = logp.cpu()
    return out


def _fill_old_from_forward(batch: TrainBatch, source: OldFromForward, rows: torch.Tensor, width: int,
                           old_logp: torch.Tensor, mask: torch.Tensor) -> None:
    """Write one micro-batch's pi_old (its forward, detached) and correction weights into the batch."""
    batch.old_logprobs[rows] = 0.0  # the row's padding past this micro-batch's width: 0, not NaN
    batch.old_logprobs[rows, :width] = old_logp.cpu()
    correction = source.correction
    if correction is not None:
        weights = rollout_correction_weights(old_logp, source.sampler_logprobs[rows, :width].to(old_logp.device), mask,
                                             mode=correction.mode, level=correction.level,
                                             clip_min=correction.clip_min, clip_max=correction.clip_max)  # (n, width)
        batch.token_weights[rows, :width] = weights.cpu()


def micro_batches(lengths: torch.Tensor, micro_batch_size: int) -> list[torch.Tensor]:
    """Row indices grouped by similar total length (less padding per micro-batch)."""
    order = torch.argsort(lengths, descending=True)
    size = micro_batch_size or max(1, len(order))
    return [order[i : i + size] for i in range(0, len(order), size)]


def update_policy(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    batch: TrainBatch,
    loss_cfg,
    *,
    temperature: float,
    micro_batch_size: int,
    max_grad_norm: float,
    max_completion_length: int,
) -> dict[str, float]:
    """One optimiser step on the batch (gradient accumulation over micro-batches)."""
    model.train()
    n_local = batch.completion_ids.shape[0]
    # normalisers are global over data-parallel ranks, so W ranks x B rows == 1 rank x W*B rows
    n = int(distributed.sum_across_ranks(torch.tensor(n_local)))
    total_tokens = distributed.sum_across_ranks(batch.completion_mask.sum()).clamp(min=1)
    context = batch.completion_mask if batch.context_mask is None else batch.context_mask
    lengths = batch.prompt_mask.sum(1) + context.sum(1)
    sums: dict[str, float] = {}
    entropy_sum, entropy_count = 0.0, 0
    fill_old = batch.old_from_forward if batch.old_from_forward and not batch.old_from_forward.filled else None
    optimizer.zero_grad(set_to_none=True)
    # A row whose advantages are all zero has exactly zero loss gradient unless a KL term is in the
    # loss (or a per-micro-batch normaliser, bnpo's, counts its tokens): skip its forward/backward entirely.
    normaliser = LOSS_AGGREGATIONS.lookup(loss_cfg.type).normaliser
    # batch_tokens: divided by the whole batch's token count already; the others by their rows
    batch_normalised = normaliser == "batch_tokens"
    kl_in_loss = loss_cfg.beta > 0 and loss_cfg.kl_placement == "loss" and batch.ref_logprobs is not None
    active = torch.ones(n_local, dtype=torch.bool)
    if not kl_in_loss and normaliser != "micro_batch_tokens":
        active = (batch.advantages * batch.completion_mask).abs().sum(1) > 0
        if n_local and not bool(active.any()):
            active[0] = True  # one (zero-gradient) row, so the loss metrics are still computed
    if n_local:  # a rank with no rows (dynamic sampling under torchrun) reports no row statistics
        sums["skipped_rows_frac"] = 1.0 - float(active.float().mean())
    active_rows = active.nonzero().squeeze(1)
    chunks = micro_batches(lengths[active_rows], micro_batch_size)
    # fsdp: every rank must run as many forward/backward passes as the busiest (0 otherwise)
    for _ in range(distributed.missing_passes(model, len(chunks))):
        distributed.idle_pass(model)
    for chunk in chunks:
        rows = active_rows[chunk]
        p_ids, p_mask, c_ids, c_context, width = _trimmed(
            batch.prompt_ids[rows], batch.prompt_mask[rows], batch.completion_ids[rows], context[rows]
        )
        c_mask = batch.completion_mask[rows, :width]  # observation tokens: in the context, never in the loss
        logp, entropy = completion_logprobs(model, p_ids, p_mask, c_ids, c_context, temperature, with_entropy=True)
        device = logp.device
        if fill_old is not None:
            _fill_old_from_forward(batch, fill_old, rows, width, logp.detach(), c_mask.to(device))
        kwargs = {"num_items_in_batch": total_tokens.to(device)} if batch_normalised else {}
        loss, metrics = policy_loss(
            logp,
            batch.old_logprobs[rows, :width].to(device),
            batch.advantages[rows, :width].to(device),
            c_mask.to(device),
            loss_type=loss_cfg.type,
            objective=loss_cfg.objective,
            sapo_temperatures=(loss_cfg.sapo_temperature_pos, loss_cfg.sapo_temperature_neg),
            epsilon_low=loss_cfg.epsilon_low,
            epsilon_high=loss_cfg.epsilon_high,
            delta=loss_cfg.delta,
            beta=loss_cfg.beta if loss_cfg.kl_placement == "loss" else 0.0,
            ref_logp=None if batch.ref_logprobs is None else batch.ref_logprobs[rows, :width].to(device),
            kl_estimator=loss_cfg.kl_estimator,
            importance_level=loss_cfg.importance_level,
            max_completion_length=max_completion_length,
            token_weights=None if batch.token_weights is None else batch.token_weights[rows, :width].to(device),
            **kwargs,
        )
        weight = 1.0 if batch_normalised else len(rows) / n
        (loss * weight).backward()
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) * len(rows) / max(1, len(active_rows))
        mask = c_mask.to(device).bool()
        entropy_sum += float(entropy[mask].sum())
        entropy_count += int(mask.sum())
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) * weight
    if fill_old is not None:
        fill_old.filled = True
    for param in model.parameters():  # nothing active: a zero gradient (Adam's moments still move)
        if param.requires_grad and param.grad is None:
            param.grad = torch.zeros_like(param)
    if not distributed.is_sharded(model):  # fsdp has already summed (reduce-scattered) in each backward
        distributed.all_reduce_gradients(model)  # sum over ranks (no-op in one process)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        model.parameters(), max_grad_norm if max_grad_norm > 0 else float("inf")
    )
    # a NaN/inf anywhere (a NaN log-prob, an overflowing ratio) would poison every weight through
    # Adam's moments: skip the step instead (the norm is global, so every rank skips alike)
    finite = bool(torch.isfinite(grad_norm))
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    sums["update/nonfinite_skipped"] = 0.0 if finite else 1.0
    sums["grad_norm"] = float(grad_norm)
    if entropy_count:
        sums["entropy"] = entropy_sum / entropy_count
    return sums
