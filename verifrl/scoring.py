"""Verifier results -> rewards: run every configured verifier on every completion and weigh them.

Place in the data flow: prompts -> rollouts -> **verifier results -> rewards** -> advantages -> ...

Each recipe names one or more verifiers with weights; the sequence reward is the weighted sum of
their scores. Segment-level (step) rewards come from the first verifier that returns
``step_scores``. A verifier that raises either stops the run (``on_verifier_error: raise``, the
default: a buggy verifier silently training on zeros is worse than a crash) or scores 0 and is
counted in ``verifier/<name>/error_rate``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from verifiers import VerifyResult, as_result, get_verifier


@dataclass
class NamedVerifier:
    name: str
    weight: float
    verifier: Callable

    def close(self) -> None:
        close = getattr(self.verifier, "close", None)
        if close is not None:
            close()


@dataclass
class ScoredBatch:
    """Scores of N completions by V verifiers."""

    scores: torch.Tensor  # (N, V) raw score of each verifier
    rewards: torch.Tensor  # (N,) weighted sum over verifiers
    results: list[list[VerifyResult]]  # [V][N]
    step_scores: list[list[float]] | None  # [N][K_i] from the first step-scoring verifier
    step_spans: list[list[tuple[int, int]]] | None  # [N][K_i] character spans of those steps
    metrics: dict[str, float] = field(default_factory=dict)


class VerifierFailure(RuntimeError):
    """A verifier raised on a completion and on_verifier_error is 'raise'."""


def build_verifiers(specs) -> list[NamedVerifier]:
    """Instantiate the recipe's verifier specs (name, weight, kwargs)."""
    built, seen = [], collections.Counter()
    for spec in specs:
        seen[spec.name] += 1
        label = spec.name if seen[spec.name] == 1 else f"{spec.name}#{seen[spec.name]}"
        built.append(NamedVerifier(label.replace(":", "."), spec.weight, get_verifier(spec.name, **spec.kwargs)))
    return built


def _run_one(named: NamedVerifier, completions: list[str], examples: list[dict], on_error: str) -> tuple[list[VerifyResult], int]:
    batch_fn = getattr(named.verifier, "verify_batch", None)
    if batch_fn is not None:
        try:
            return [as_result(r) for r in batch_fn(completions, examples)], 0
        except Exception as err:
            if on_error == "raise":
                raise VerifierFailure(f"verifier {named.name!r} failed on a batch: {type(err).__name__}: {err}") from err
            # fall through: score one by one so a single bad row costs only itself
    results, errors = [], 0
    for completion, example in zip(completions, examples):
        try:
            results.append(as_result(named.verifier(completion, example)))
        except Exception as err:
            if on_error == "raise":
                raise VerifierFailure(
                    f"verifier {named.name!r} raised {type(err).__name__}: {err} on completion {completion[:80]!r}"
                ) from err
            errors += 1
            results.append(VerifyResult(score=0.0, info={"reason": "verifier_error", "error": repr(err)}))
    return results, errors


def score_rollouts(
    completions: list[str], examples: list[dict], verifiers: list[NamedVerifier], on_error: str = "raise"
) -> ScoredBatch:
    """Run each verifier on each (completion, example) pair and combine with the weights."""
    all_results: list[list[VerifyResult]] = []
    metrics: dict[str, float] = {}
    for named in verifiers:
        results, errors = _run_one(named, completions, examples, on_error)
        all_results.append(results)
        n = max(1, len(results))
        reasons = collections.Counter(str(r.info.get("reason", "")) for r in results)
        metrics[f"verifier/{named.name}/mean_score"] = sum(r.score for r in results) / n
        metrics[f"verifier/{named.name}/error_rate"] = errors / n
        metrics[f"verifier/{named.name}/timeout_rate"] = reasons.get("timeout", 0) / n
        metrics[f"verifier/{named.name}/no_answer_rate"] = reasons.get("no_answer", 0) / n
    scores = torch.tensor([[r.score for r in results] for results in all_results], dtype=torch.float32).T  # (N, V)
    weights = torch.tensor([v.weight for v in verifiers], dtype=torch.float32)  # (V,)
    rewards = scores @ weights  # (N,)
    step_scores = step_spans = None
    for results in all_results:
        if any(r.step_scores is not None for r in results):
            step_scores = [list(r.step_scores or []) for r in results]
            step_spans = [list(r.step_spans or []) for r in results]
            break
    return ScoredBatch(scores, rewards, all_results, step_scores, step_spans, metrics)


def step_metrics(step_scores: list[list[float]]) -> dict[str, Any]:
    """Steps per completion, step accuracy, all-steps-correct rate, first wrong step position."""
    n = max(1, len(step_scores))
    counted = [s for s in step_scores if s]
    total_steps = sum(len(s) for s in step_scores)
    first_wrong = [next(i for i, v in enumerate(s) if v < 1.0) for s in counted if any(v < 1.0 for v in s)]
    return {
        "steps/per_completion": total_steps / n,
        "steps/accuracy": sum(sum(v >= 1.0 for v in s) for s in step_scores) / max(1, total_steps),
        "steps/all_correct_rate": sum(all(v >= 1.0 for v in s) for s in counted) / n,
        "steps/first_wrong_position": (sum(first_wrong) / len(first_wrong)) if first_wrong else float("nan"),
    }
