"""Verifier results -> rewards: run every configured verifier on every completion and weigh them.

Place in the data flow: prompts -> rollouts -> **verifier results -> rewards** -> advantages -> ...

Each recipe names one or more verifiers with weights; the sequence reward is the weighted sum of
their scores. Segment-level (step) rewards come from the first verifier that returns
``step_scores``. A verifier that raises either stops the run (``on_verifier_error: raise``, the
default: a buggy verifier silently training on zeros is worse than a crash) or scores 0 and is
counted in ``verifier/<name>/error_rate``.

Two ways to run them, with the same result: :func:`score_rollouts` scores a finished batch;
:class:`StreamingScorer` takes rows as the sampler finishes them (``generate(on_finished=...)``)
and verifies them on a background thread while the rest of the batch is still being sampled.
"""

from __future__ import annotations

import collections
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable

import torch

from verifiers import VerifyResult, as_result, get_verifier, verify_batch


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
    if getattr(named.verifier, "verify_batch", None) is not None:
        try:
            return _reject_nonfinite(named, verify_batch(named.verifier, completions, examples), 0, completions,
                                     on_error)
        except VerifierFailure:
            raise
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
    return _reject_nonfinite(named, results, errors, completions, on_error)


def _reject_nonfinite(named: NamedVerifier, results: list[VerifyResult], errors: int, completions: list[str],
                      on_error: str) -> tuple[list[VerifyResult], int]:
    """A NaN/inf score is a verifier bug that would turn every advantage of its group into NaN:
    an error like a raise (stop, or score 0 and count it)."""
    checked = []
    for result, completion in zip(results, completions):
        values = [result.score, *(result.step_scores or [])]
        if all(math.isfinite(v) for v in values):
            checked.append(result)
            continue
        if on_error == "raise":
            raise VerifierFailure(f"verifier {named.name!r} returned a non-finite score ({values}) on completion "
                                  f"{completion[:80]!r}")
        errors += 1
        checked.append(VerifyResult(score=0.0, info={"reason": "verifier_error", "error": f"non-finite score {values}"}))
    return checked + results[len(checked):], errors


def _verify_all(
    completions: list[str], examples: list[dict], verifiers: list[NamedVerifier], on_error: str
) -> tuple[list[list[VerifyResult]], list[int]]:
    """Every verifier on every pair: results [V][n] and the error count of each verifier."""
    outcomes = [_run_one(named, completions, examples, on_error) for named in verifiers]
    for named, (results, _) in zip(verifiers, outcomes):
        if len(results) != len(completions):  # a verifier bug, whatever on_error says: rows would shift
            raise VerifierFailure(f"verifier {named.name!r} returned {len(results)} results for "
                                  f"{len(completions)} completions")
    return [results for results, _ in outcomes], [errors for _, errors in outcomes]


def combine_results(
    all_results: list[list[VerifyResult]], errors: list[int], verifiers: list[NamedVerifier]
) -> ScoredBatch:
    """Per-verifier results [V][N] (row order) and error counts -> weighted rewards and metrics."""
    metrics: dict[str, float] = {}
    for named, results, n_errors in zip(verifiers, all_results, errors):
        n = max(1, len(results))
        reasons = collections.Counter(str(r.info.get("reason", "")) for r in results)
        metrics[f"verifier/{named.name}/mean_score"] = sum(r.score for r in results) / n
        metrics[f"verifier/{named.name}/error_rate"] = n_errors / n
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


def score_rollouts(
    completions: list[str], examples: list[dict], verifiers: list[NamedVerifier], on_error: str = "raise"
) -> ScoredBatch:
    """Run each verifier on each (completion, example) pair and combine with the weights."""
    return combine_results(*_verify_all(completions, examples, verifiers, on_error), verifiers)


class StreamingScorer:
    """Verifies rows as they are submitted, on one background thread; :meth:`result` gathers them.

    Meant as ``generate(..., on_finished=scorer.submit)``: rows that end early are verified while
    the sampler is still running the others, so after generation only the last rows remain to
    check. One thread is enough: the expensive checks already run in worker processes (math's
    sympy workers, the code sandbox), so the thread mostly waits on them, and a single thread
    keeps each verifier object used by one thread at a time, in submission order. Rows that
    arrive while a check is running are verified together in the next call (fewer, larger
    ``verify_batch`` calls, which is what the worker pools parallelise). Each row's result is the
    same as :func:`score_rollouts` gives on the whole batch, as long as a verifier scores a row
    independently of the other rows of its call (every built-in verifier does).

    Verifiers run on this thread, not the caller's: one that needs the main thread (e.g.
    ``signal.alarm``) needs ``reward.overlap_verification: false``. Use as a context manager so
    the thread is stopped on every path::

        with StreamingScorer(verifiers, examples, on_error) as scorer:
            batch = generate(..., on_finished=scorer.submit)
            scored = scorer.result()
    """

    def __init__(self, verifiers: list[NamedVerifier], examples: list[dict], on_error: str = "raise") -> None:
        self.verifiers, self.examples, self.on_error = verifiers, examples, on_error
        n = len(examples)
        self._results: list[list[VerifyResult | None]] = [[None] * n for _ in verifiers]  # [V][N]
        self._errors = [0] * len(verifiers)
        self._submitted = [False] * n
        self._pending: list[tuple[int, str]] = []  # (row, text) not yet taken by the thread
        self._lock = threading.Lock()  # guards _pending, the only state both threads write
        self._failed = False  # a check raised: later rows are not verified (result() raises anyway)
        self._futures: list[Future] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="verifrl-verify")

    def submit(self, rows: list[int], texts: list[str]) -> None:
        """Queue ``texts[i]`` as the completion of row ``rows[i]``; returns at once. Caller's thread only."""
        if len(rows) != len(texts):
            raise ValueError(f"StreamingScorer.submit: {len(rows)} rows but {len(texts)} texts")
        for row in rows:
            if not 0 <= row < len(self._submitted):
                raise IndexError(f"StreamingScorer.submit: row {row} is outside 0..{len(self._submitted) - 1}")
            if self._submitted[row]:
                raise ValueError(f"StreamingScorer.submit: row {row} was submitted twice")
            self._submitted[row] = True
        with self._lock:
            self._pending.extend(zip(rows, texts))
        self._futures.append(self._executor.submit(self._drain))

    def _drain(self) -> None:
        """Verify everything queued so far (nothing if an earlier call already took it)."""
        with self._lock:
            work, self._pending = self._pending, []
        if not work or self._failed:
            return
        rows = [row for row, _ in work]
        try:
            results, errors = _verify_all([text for _, text in work], [self.examples[row] for row in rows],
                                          self.verifiers, self.on_error)
        except BaseException:
            self._failed = True
            raise
        for v, per_verifier in enumerate(results):
            self._errors[v] += errors[v]
            for row, result in zip(rows, per_verifier):
                self._results[v][row] = result

    def result(self) -> ScoredBatch:
        """Wait for every submitted row and combine, as :func:`score_rollouts` would.

        Raises the verifiers' own exception (e.g. :class:`VerifierFailure`) if one raised, and
        ``ValueError`` when some rows were never submitted.
        """
        for future in self._futures:
            future.result()  # re-raises what the thread raised, same exception object
        missing = [row for row, done in enumerate(self._submitted) if not done]
        if missing:
            raise ValueError(f"StreamingScorer.result: {len(missing)} of {len(self._submitted)} rows were never "
                             f"submitted (first: {missing[:10]})")
        results: list[list[VerifyResult]] = [list(r) for r in self._results]  # type: ignore[misc]
        return combine_results(results, list(self._errors), self.verifiers)

    def close(self) -> None:
        """Stop the thread: queued checks are dropped, a running one is waited for."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "StreamingScorer":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


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
