"""Held-out evaluation: greedy accuracy, mean reward and pass@k on problems never trained on.

Accuracy is the share of completions whose reward reaches the top score a correct answer earns
(1.0 for the default math verifier); mean reward is the weighted verifier reward. pass@k uses the
unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k) with n samples, c correct.
"""

from __future__ import annotations

import math

import torch

from verifrl.rollout import generate
from verifrl.scoring import score_rollouts


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k for one problem: probability that k of the n samples include a correct one."""
    if num_samples < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {num_samples}")
    if num_samples - num_correct < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i), numerically stable form of 1 - C(n-c,k)/C(n,k)
    return 1.0 - math.prod(1.0 - k / i for i in range(num_samples - num_correct + 1, num_samples + 1))


def evaluate(
    model,
    tokenizer,
    prompts: list[str],
    examples: list[dict],
    verifiers,
    *,
    max_new_tokens: int,
    chunk_size: int = 0,
    pass_k: int = 0,
    pass_k_temperature: float = 1.0,
    on_verifier_error: str = "raise",
    correct_threshold: float = 1.0,
    engine: str = "loop",
    engine_options: dict | None = None,
    tools=None,
) -> dict:
    """Greedy accuracy and mean reward (and pass@k when asked) on the given held-out rows.

    "Correct" means the first (primary) verifier's score reaches ``correct_threshold``; the mean
    reward is the weighted sum over all verifiers, as in training. ``engine`` samples as in
    :func:`verifrl.rollout.generate` (the trainer passes ``rollout.engine``). With ``tools`` (a
    :class:`~verifrl.tool_session.ToolSet`) greedy and pass@k completions call them as in training,
    and ``tool_calls_per_completion`` / ``tool_call_rate`` of the greedy completions are reported.
    """
    greedy = generate(model, tokenizer, prompts, greedy=True, max_new_tokens=max_new_tokens, chunk_size=chunk_size,
                      engine=engine, engine_options=engine_options, tools=tools)
    scored = score_rollouts(greedy.texts, examples, verifiers, on_verifier_error)
    correct = (scored.scores[:, 0] >= correct_threshold - 1e-9).float()
    result = {
        "accuracy": float(correct.mean()) if len(prompts) else 0.0,
        "mean_reward": float(scored.rewards.mean()) if len(prompts) else 0.0,
        "n": len(prompts),
        "mean_length": float(greedy.model_lengths.float().mean()) if len(prompts) else 0.0,
    }
    if greedy.tool_calls is not None and len(prompts):
        result["tool_calls_per_completion"] = float(greedy.tool_calls.float().mean())
        result["tool_call_rate"] = float((greedy.tool_calls > 0).float().mean())
    if pass_k:
        sampled = generate(model, tokenizer, prompts, group_size=pass_k, max_new_tokens=max_new_tokens,
                           temperature=pass_k_temperature, chunk_size=chunk_size, record_logprobs=False,
                           engine=engine, engine_options=engine_options, tools=tools)
        repeated = [e for e in examples for _ in range(pass_k)]
        s_scored = score_rollouts(sampled.texts, repeated, verifiers, on_verifier_error)
        hits = (s_scored.scores[:, 0] >= correct_threshold - 1e-9).view(len(prompts), pass_k).sum(1)  # (P,)
        result[f"pass@{pass_k}"] = sum(pass_at_k(pass_k, int(c), pass_k) for c in hits) / len(prompts)
        result["pass@1_sampled"] = sum(pass_at_k(pass_k, int(c), 1) for c in hits) / len(prompts)
    return result


def greedy_texts(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    with torch.no_grad():
        return generate(model, tokenizer, prompts, greedy=True, max_new_tokens=max_new_tokens).texts
