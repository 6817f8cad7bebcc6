"""DAPO dynamic sampling: keep only groups whose rewards differ, optionally sampling more prompts.

Place in the data flow: prompts -> rollouts -> verifier results -> rewards -> **group selection**
-> advantages -> ...

A group whose G rewards are all equal has zero advantage under every group-relative estimator, so
it adds no policy gradient but still dilutes token-mean losses (DAPO, arXiv 2503.14476, eq. 11:
``0 < |{o_i : correct}| < G``). ``rollout.dynamic_sampling``:

- ``off``: train on every group (the zero-variance share is still logged).
- ``drop``: remove zero-variance groups from the update; a step may train on fewer than
  ``num_prompts`` groups, or skip the update when none is informative.
- ``refill``: after dropping, sample more prompts and keep their informative groups until the
  batch has ``num_prompts`` of them or ``max_refill_rounds`` extra rounds were spent (verl's
  ``filter_groups.max_num_gen_batches``). Groups beyond ``num_prompts`` are discarded.

The rewards compared are the trainer's sequence rewards (weighted verifier scores plus any overlong
penalty), before a KL-in-reward penalty. The selection itself is :func:`select_groups`, a pure
function; :func:`collect_informative` runs the rounds with a sampling callable, and
:func:`select_step_groups` adds the torchrun choreography the trainer needs around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from verifrl import distributed
from verifrl.rollout import RolloutBatch, _pad_cat
from verifrl.scoring import ScoredBatch
from verifrl.update import TrainBatch


MODES = ("off", "drop", "refill")
"""``rollout.dynamic_sampling`` values: all groups, informative groups only, or refill to num_prompts."""


def informative_groups(group_rewards: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """(P, G) rewards -> (P,) bool: the group's rewards are not all equal (max - min > tol).

    A one-completion group is never informative.
    """
    if group_rewards.numel() == 0:
        return torch.zeros(group_rewards.shape[0], dtype=torch.bool)
    spread = group_rewards.max(dim=1).values - group_rewards.min(dim=1).values  # (P,)
    return spread > tol


def select_groups(group_rewards: torch.Tensor, mode: str, limit: int, tol: float = 1e-8) -> list[int]:
    """Indices of the groups to train on, in sampling order.

    Args:
        group_rewards: (P, G) sequence rewards of the groups sampled so far (all rounds, in order).
        mode: ``off`` (all groups), ``drop`` or ``refill`` (informative groups only).
        limit: most groups to keep (``rollout.num_prompts``).
    """
    if mode == "off":
        return list(range(min(limit, group_rewards.shape[0])))
    if mode not in MODES:
        raise ValueError(f"dynamic sampling mode must be one of {', '.join(MODES)}, got {mode!r}")
    keep = torch.nonzero(informative_groups(group_rewards, tol)).flatten().tolist()
    return keep[:limit]


def refill_size(missing: int, sampled: int, kept: int, cap: int) -> int:
    """Prompts to sample in the next refill round: the missing count divided by the informative
    share seen so far (all of ``cap`` when nothing was informative yet), at most ``cap``."""
    if missing <= 0:
        return 0
    if kept <= 0:
        return cap
    return max(1, min(cap, math.ceil(missing * sampled / kept)))


@dataclass
class Collected:
    """The groups a step trains on, after selection (prompt p's rows are p*G .. p*G+G-1)."""

    rows: list[dict]
    batch: RolloutBatch | None
    scored: ScoredBatch | None
    rewards: torch.Tensor  # (P*G,)
    metrics: dict[str, float] = field(default_factory=dict)
    idle_update_metrics: dict[str, float] = field(default_factory=dict)  # no group kept, another rank trained


def take_groups(batch: RolloutBatch, scored: ScoredBatch, rewards: torch.Tensor, groups: list[int],
                pad_id: int) -> tuple[RolloutBatch, ScoredBatch, torch.Tensor]:
    """Rows of the chosen groups, in the given order."""
    G = batch.group_size
    idx = [g * G + j for g in groups for j in range(G)]
    index = torch.tensor(idx, dtype=torch.long)
    out = RolloutBatch(
        batch.prompt_ids[index], batch.prompt_mask[index], batch.completion_ids[index],
        batch.completion_mask[index], None if batch.sampler_logprobs is None else batch.sampler_logprobs[index],
        batch.lengths[index], batch.truncated[index], [batch.texts[i] for i in idx], G,
        *_tool_fields([batch], lambda t: t[index]),
    )
    out = _trim(out, pad_id)
    picked = ScoredBatch(
        scored.scores[index], scored.rewards[index], [[results[i] for i in idx] for results in scored.results],
        None if scored.step_scores is None else [scored.step_scores[i] for i in idx],
        None if scored.step_spans is None else [scored.step_spans[i] for i in idx],
        dict(scored.metrics),
    )
    return out, picked, rewards[index]


def concat_batches(batches: list[RolloutBatch], pad_id: int) -> RolloutBatch:
    """Rollout batches one after another, re-padded to the widest prompt and completion."""
    return RolloutBatch(
        _pad_cat([b.prompt_ids for b in batches], pad_id, left=True),
        _pad_cat([b.prompt_mask for b in batches], 0, left=True),
        _pad_cat([b.completion_ids for b in batches], pad_id, left=False),
        _pad_cat([b.completion_mask for b in batches], 0, left=False),
        None if batches[0].sampler_logprobs is None
        else _pad_cat([b.sampler_logprobs for b in batches], 0.0, left=False),
        torch.cat([b.lengths for b in batches]), torch.cat([b.truncated for b in batches]),
        [t for b in batches for t in b.texts], batches[0].group_size,
        *_tool_fields(batches, None, pad_id),
    )


def concat_rounds(parts: list[tuple[RolloutBatch, ScoredBatch, torch.Tensor]], pad_id: int):
    """Concatenate the (batch, scored, rewards) of several rounds; re-pads prompts and completions."""
    batches, scoreds, rewards = zip(*parts)
    sizes = [b.num_completions for b in batches]
    batch = concat_batches(batches, pad_id)
    metrics: dict[str, float] = {}
    for s, n in zip(scoreds, sizes):  # verifier rates, weighted by each round's size
        for key, value in s.metrics.items():
            metrics[key] = metrics.get(key, 0.0) + value * n / max(1, sum(sizes))
    has_steps = scoreds[0].step_scores is not None
    scored = ScoredBatch(
        torch.cat([s.scores for s in scoreds]), torch.cat([s.rewards for s in scoreds]),
        [[r for s in scoreds for r in s.results[v]] for v in range(len(scoreds[0].results))],
        [x for s in scoreds for x in s.step_scores] if has_steps else None,
        [x for s in scoreds for x in s.step_spans] if has_steps else None,
        metrics,
    )
    return batch, scored, torch.cat(rewards)


def _tool_fields(batches: list[RolloutBatch], select=None, pad_id: int = 0) -> tuple:
    """tool_mask, tool_calls, tool_errors, tool_seconds of one selected batch or several concatenated."""
    if batches[0].tool_mask is None:
        return ()
    if select is not None:
        (b,) = batches
        return select(b.tool_mask), select(b.tool_calls), select(b.tool_errors), b.tool_seconds
    return (_pad_cat([b.tool_mask for b in batches], False, left=False), torch.cat([b.tool_calls for b in batches]),
            torch.cat([b.tool_errors for b in batches]), sum(b.tool_seconds for b in batches))


def _trim(batch: RolloutBatch, pad_id: int) -> RolloutBatch:
    """Drop all-padding prompt columns (left) and completion columns (right) after a selection."""
    if batch.num_completions == 0:
        return batch
    p_width = max(1, int(batch.prompt_mask.sum(1).max()))
    c_width = max(1, int(batch.lengths.max()))
    batch.prompt_ids, batch.prompt_mask = batch.prompt_ids[:, -p_width:], batch.prompt_mask[:, -p_width:]
    batch.completion_ids, batch.completion_mask = batch.completion_ids[:, :c_width], batch.completion_mask[:, :c_width]
    if batch.sampler_logprobs is not None:
        batch.sampler_logprobs = batch.sampler_logprobs[:, :c_width]
    if batch.tool_mask is not None:
        batch.tool_mask = batch.tool_mask[:, :c_width]
    return batch


def collect_informative(
    rows: list[dict],
    first: tuple[RolloutBatch, ScoredBatch, torch.Tensor],
    *,
    mode: str,
    num_prompts: int,
    max_refill_rounds: int,
    sample: Callable[[list[dict]], tuple[RolloutBatch, ScoredBatch, torch.Tensor]],
    next_rows: Callable[[int], list[dict]],
    pad_id: int,
    agree: Callable[[int], int] = lambda n: n,
) -> Collected:
    """Apply dynamic sampling to a step's first round (``first`` = sample(rows)).

    ``sample(rows)`` generates and scores G completions per row; ``next_rows(n)`` draws n more
    prompts (refill only). Returns the selected groups and ``rollout/*`` metrics. With no
    informative group the batch is ``None``.

    Data-parallel ranks refill in lockstep: ``agree(n)`` returns the refill size every rank uses
    (the largest any rank asks for), all ranks draw it so that their prompt streams stay identical,
    and a rank that already has its groups draws without sampling. ``agree`` is called the same
    number of times on every rank.
    """
    batch, scored, rewards = first
    G = batch.group_size
    all_rows, parts = list(rows), [first]
    all_rewards = [rewards]
    rounds = 0
    while True:
        group_rewards = torch.cat(all_rewards).view(-1, G)  # (P_total, G)
        keep = select_groups(group_rewards, mode, num_prompts)
        missing = num_prompts - len(keep)
        if mode != "refill" or next_rows is None or rounds >= max_refill_rounds:
            break
        wanted = refill_size(missing, group_rewards.shape[0], len(keep), num_prompts)
        n = agree(wanted)
        if n <= 0:
            break
        extra = next_rows(n)
        rounds += 1
        if wanted <= 0:  # this rank is done; it drew only to keep the ranks' prompt streams equal
            continue
        part = sample(extra)
        all_rows += extra
        parts.append(part)
        all_rewards.append(part[2])

    sampled = group_rewards.shape[0]
    informative = int(informative_groups(group_rewards).sum())
    metrics = {
        "rollout/sampled_groups": float(sampled),
        "rollout/kept_groups": float(len(keep)),
        "rollout/dropped_groups": float(sampled - informative),  # zero-variance groups left out
        "rollout/surplus_groups": float(informative - len(keep)),  # informative, beyond num_prompts
        "rollout/refill_rounds": float(rounds),
        "reward/sampled_mean": float(group_rewards.float().mean()),
        # of everything sampled: after the selection the kept groups' share is 0 by construction
        "reward/frac_zero_std_groups": (sampled - informative) / max(1, sampled),
    }
    if not keep:
        metrics["reward/mean"] = metrics["reward/sampled_mean"]
        return Collected([], None, None, rewards[:0], metrics)
    merged = concat_rounds(parts, pad_id) if len(parts) > 1 else first
    batch, scored, rewards = take_groups(*merged, keep, pad_id)
    return Collected([all_rows[g] for g in keep], batch, scored, rewards, metrics)


def empty_train_batch(batch: RolloutBatch) -> TrainBatch:
    """No rows, the shapes of ``batch``: what a rank with nothing to learn from feeds the update."""
    none = slice(0, 0)
    return TrainBatch(batch.prompt_ids[none], batch.prompt_mask[none], batch.completion_ids[none],
                      batch.completion_mask[none], batch.sampler_logprobs[none],
                      torch.zeros(batch.completion_ids[none].shape))


def select_step_groups(
    rows: list[dict],
    first: tuple[RolloutBatch, ScoredBatch, torch.Tensor],
    *,
    mode: str,
    num_prompts: int,
    max_refill_rounds: int,
    sample: Callable[[list[dict]], tuple[RolloutBatch, ScoredBatch, torch.Tensor]],
    next_rows: Callable[[int], list[dict]] | None,
    pad_id: int,
    idle_update: Callable[[TrainBatch], dict[str, float]],
) -> Collected:
    """A training step's dynamic sampling, under torchrun too (one process: plain
    :func:`collect_informative`).

    Each rank selects among its own groups (``num_prompts`` / ranks of them) and the ranks refill
    in lockstep. A rank left with no informative group while another rank trains must still take
    part in that rank's update collectives: it runs ``idle_update`` on an empty batch, and its
    metrics are returned in ``idle_update_metrics``.
    """
    kept = collect_informative(rows, first, mode=mode, num_prompts=num_prompts // distributed.world_size(),
                               max_refill_rounds=max_refill_rounds, sample=sample, next_rows=next_rows,
                               pad_id=pad_id, agree=distributed.max_across_ranks)
    if kept.batch is not None:
        distributed.max_across_ranks(1)  # the same collective as a rank with nothing to train on
    elif distributed.max_across_ranks(0) > 0:  # another rank trains: take part in its collectives
        kept.idle_update_metrics = idle_update(empty_train_batch(first[0]))
    return kept
