"""Held-out evaluation: greedy accuracy, mean reward and pass@k on problems never trained on.

Accuracy is the share of completions whose reward reaches the top score a correct answer earns
(1.0 for the default math verifier); mean reward is the weighted verifier reward. pass@k uses the
unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k) with n samples, c correct.
"""

from __future__ import annotations

import math
from pathlib import Path

from verifrl.checkpoint import latest_checkpoint, load_checkpoint
from verifrl.config import Config
from verifrl.groups import engine_options, sample_groups
from verifrl.models import load_policy, seed_everything
from verifrl.prompts import prepare_task
from verifrl.scoring import build_verifiers


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
) -> dict:
    """Greedy accuracy and mean reward (and pass@k when asked) on the given held-out rows.

    "Correct" means the first (primary) verifier's score reaches ``correct_threshold``; the mean
    reward is the weighted sum over all verifiers, as in training. ``engine`` samples as in
    :func:`verifrl.rollout.generate` (the trainer passes ``rollout.engine``).
    """
    greedy = sample_groups(model, tokenizer, prompts, examples, verifiers, group_size=1, greedy=True,
                           max_new_tokens=max_new_tokens, chunk_size=chunk_size, engine=engine,
                           engine_options=engine_options, on_verifier_error=on_verifier_error)
    correct = (greedy.scored.scores[:, 0] >= correct_threshold - 1e-9).float()
    result = {
        "accuracy": float(correct.mean()) if len(prompts) else 0.0,
        "mean_reward": float(greedy.scored.rewards.mean()) if len(prompts) else 0.0,
        "n": len(prompts),
        "mean_length": float(greedy.batch.lengths.float().mean()) if len(prompts) else 0.0,
    }
    if pass_k:
        sampled = sample_groups(model, tokenizer, prompts, examples, verifiers, group_size=pass_k,
                                max_new_tokens=max_new_tokens, temperature=pass_k_temperature, chunk_size=chunk_size,
                                record_logprobs=False, engine=engine, engine_options=engine_options,
                                on_verifier_error=on_verifier_error)
        hits = (sampled.scored.scores[:, 0] >= correct_threshold - 1e-9).view(len(prompts), pass_k).sum(1)  # (P,)
        result[f"pass@{pass_k}"] = sum(pass_at_k(pass_k, int(c), pass_k) for c in hits) / len(prompts)
        result["pass@1_sampled"] = sum(pass_at_k(pass_k, int(c), 1) for c in hits) / len(prompts)
    return result


def evaluate_checkpoint(cfg: Config, checkpoint: Path, log=print) -> dict:
    """Greedy accuracy (and pass@k with eval.pass_k) of a checkpoint on the held-out split.

    ``checkpoint`` may be a run directory (its latest checkpoint), a ``checkpoints/step-N``
    directory, or a saved Hugging Face model directory (such as ``final_model``).
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"--checkpoint: {checkpoint} does not exist")
    if (checkpoint / "config.json").exists() and not (checkpoint / "model.pt").exists() \
            and (checkpoint / "tokenizer_config.json").exists():
        cfg.model.name_or_path = str(checkpoint)
        step_dir = None
    else:
        step_dir = checkpoint if (checkpoint / "model.pt").exists() else latest_checkpoint(checkpoint)
        if step_dir is None:
            raise FileNotFoundError(f"--checkpoint: no checkpoint or model in {checkpoint}")
    seed_everything(cfg.trainer.seed)
    policy, tokenizer = load_policy(cfg.model, log=log)
    if step_dir is not None:
        load_checkpoint(step_dir, policy)
    task = prepare_task(cfg, tokenizer)
    verifiers = build_verifiers(cfg.reward.verifiers)
    try:
        result = evaluate(policy, tokenizer, task.test_prompts, task.test_rows, verifiers, **eval_settings(cfg))
    finally:
        for named in verifiers:
            named.close()
    return {"checkpoint": str(step_dir or checkpoint), **result}


def eval_settings(cfg: Config) -> dict:
    """:func:`evaluate`'s settings from the recipe (``eval.*``, with the rollout's engine)."""
    return dict(max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens, chunk_size=cfg.rollout.chunk_size,
                pass_k=cfg.eval.pass_k, pass_k_temperature=cfg.eval.pass_k_temperature,
                on_verifier_error=cfg.reward.on_verifier_error, engine=cfg.rollout.engine,
                engine_options=engine_options(cfg))
