"""Sample and score groups: prompts -> G completions each -> verifier results -> rewards.

Place in the data flow: prompts -> **rollouts -> verifier results -> rewards** -> advantages -> ...

:func:`sample_groups` is the one implementation used by training (``trainer.rl_step``, each
dynamic-sampling round included), the dry run and evaluation. With ``overlap`` the completions
are verified on a background thread as they finish (:class:`verifrl.scoring.StreamingScorer`);
the DAPO soft overlong penalty is added to the rewards when ``overlong_cache_length`` is set. With
``tools`` the policy calls them mid-rollout (docs/tool-use.md): the overlong penalty counts its own
tokens only, and ``tool_error_penalty`` is subtracted once per call that failed.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch

from verifrl.config import Config
from verifrl.rewards import overlong_penalty
from verifrl.rollout import RolloutBatch, generate
from verifrl.scoring import NamedVerifier, ScoredBatch, StreamingScorer, score_rollouts
from verifrl.tool_session import ToolSet


@dataclass
class SampledGroups:
    """P prompts x G completions, scored; row ``p * G + g`` is completion g of prompt p."""

    batch: RolloutBatch
    scored: ScoredBatch
    rewards: torch.Tensor  # (N,) weighted verifier reward, plus the overlong penalty when on
    examples: list[dict]  # (N,) the dataset row of each completion


def _untimed(name: str) -> ContextManager:
    return nullcontext()


def sample_groups(
    policy,
    tokenizer,
    prompts: list[str],
    rows: list[dict],
    verifiers: list[NamedVerifier],
    *,
    group_size: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
    record_logprobs: bool = True,
    chunk_size: int = 0,
    engine: str = "loop",
    engine_options: dict | None = None,
    stop_check_every: int = 0,
    on_verifier_error: str = "raise",
    overlap: bool = False,
    overlong_cache_length: int = 0,
    tools: ToolSet | None = None,
    tool_error_penalty: float = 0.0,
    timer: Callable[[str], ContextManager] = _untimed,
    sampled: RolloutBatch | None = None,
) -> SampledGroups:
    """Sample ``group_size`` completions for each of the P ``prompts`` (templated ``rows``) and score them.

    ``timer(name)`` wraps the "generation" and "verification" stages (with ``overlap`` the
    generation includes the overlapped checks and verification is only the wait for the rest).
    The other arguments are those of :func:`verifrl.rollout.generate` and
    :func:`verifrl.scoring.score_rollouts`. ``sampled``: the completions, already sampled elsewhere
    (the off-policy sampler process, :mod:`verifrl.sampler_process`): they are only scored here.
    """
    examples = [row for row in rows for _ in range(group_size)]
    scorer = StreamingScorer(verifiers, examples, on_verifier_error) if overlap and sampled is None else None
    with scorer or nullcontext():
        if sampled is not None:
            batch = sampled
        else:
            with timer("generation"):
                batch = generate(policy, tokenizer, prompts, group_size=group_size, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, top_k=top_k, greedy=greedy,
                                 record_logprobs=record_logprobs, chunk_size=chunk_size, engine=engine,
                                 on_finished=scorer.submit if scorer else None, stop_check_every=stop_check_every,
                                 engine_options=engine_options, tools=tools)
        with timer("verification"):
            scored = scorer.result() if scorer else score_rollouts(batch.texts, examples, verifiers, on_verifier_error)
    rewards = scored.rewards.clone()  # (N,)
    if overlong_cache_length:  # the policy's own tokens: observations are not its length
        rewards += overlong_penalty(batch.model_lengths, max_new_tokens, overlong_cache_length)
    if batch.tool_errors is not None and tool_error_penalty:
        rewards -= tool_error_penalty * batch.tool_errors.float()
    return SampledGroups(batch, scored, rewards, examples)


def engine_options(cfg: Config) -> dict | None:
    """Keyword arguments of ``rollout.engine`` (vllm only)."""
    if cfg.rollout.engine != "vllm":
        return None
    return {"gpu_memory_utilization": cfg.rollout.vllm_gpu_memory_utilization, "sleep": cfg.rollout.vllm_sleep,
            "seed": cfg.trainer.seed}


def training_sampling(cfg: Config) -> dict:
    """:func:`sample_groups` settings of a training rollout, from the recipe."""
    return dict(group_size=cfg.rollout.group_size, max_new_tokens=cfg.rollout.max_new_tokens,
                temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k,
                chunk_size=cfg.rollout.chunk_size, engine=cfg.rollout.engine, engine_options=engine_options(cfg),
                stop_check_every=cfg.rollout.stop_check_every, on_verifier_error=cfg.reward.on_verifier_error,
                overlong_cache_length=cfg.reward.overlong_cache_length,
                tool_error_penalty=cfg.reward.tool_error_penalty)


def build_tools(cfg: Config) -> ToolSet | None:
    """The recipe's tools (``rollout.tools``), or None; their sandboxes start on the first call."""
    if not cfg.rollout.tools:
        return None
    return ToolSet.build(cfg.rollout.tools, cfg.rollout.max_tool_calls, cfg.rollout.max_observation_tokens,
                         cfg.rollout.tool_options)
