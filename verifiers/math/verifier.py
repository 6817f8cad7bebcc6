"""Public entry points: :func:`answers_equal` and the registered :class:`MathVerifier` ("math").

Place: ``completion -> extract -> **fast path | guarded worker (reading, compare)** ->
VerifyResult``. This module and everything it imports in the host process are sympy-free: plain
numbers are decided in-process in microseconds; anything else goes to a persistent worker
process with a deadline (:mod:`guard`), which caches parsed references.

``info`` of every result: ``reason`` (``correct``, ``wrong``, ``no_answer``, ``unparseable``,
``unparseable_reference`` (wrong: a mathematical answer against a reference that reads only as
words),
``timeout``, ``memory``, ``error``), ``extracted`` (the prediction's answer string or None) and
``reference`` (the reference answer string compared against).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from threading import Lock
from typing import Any, Sequence

from verifiers.base import VerifyResult, register, strip_tool_output
from verifiers.math.extract import extract_answer
from verifiers.math.fastpath import fast_equal
from verifiers.math.guard import close_pools, get_pool
from verifiers.math.policy import Policy

_CACHE_SIZE = 20000
_CACHEABLE = {"correct", "wrong", "unparseable", "unparseable_reference"}


class _ResultCache:
    """LRU of (pred, gold, policy) -> (equal, reason): GRPO groups repeat the same answers."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[tuple, tuple[bool, str]] = OrderedDict()
        self.lock = Lock()

    def get(self, key: tuple) -> tuple[bool, str] | None:
        with self.lock:
            hit = self.data.get(key)
            if hit is not None:
                self.data.move_to_end(key)
            return hit

    def put(self, key: tuple, value: tuple[bool, str]) -> None:
        if value[1] not in _CACHEABLE:
            return
        with self.lock:
            self.data[key] = value
            if len(self.data) > self.size:
                self.data.popitem(last=False)


_cache = _ResultCache(_CACHE_SIZE)


def check_answer(pred: str | None, gold: str, policy: Policy) -> tuple[bool, str]:
    """``(equal, reason)`` for two answer strings, bounded by ``policy.timeout``."""
    if pred is None or not str(pred).strip():
        return False, "no_answer"
    fast = fast_equal(pred, gold, policy)
    if fast is not None:
        return fast, "correct" if fast else "wrong"
    key = (pred, gold, policy)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    result = get_pool(1, policy.max_memory_mb).check(pred, gold, policy.as_dict(), policy.timeout)
    _cache.put(key, result)
    return result


def answers_equal(pred: str, gold: str, **policy: Any) -> bool:
    """Whether answer string ``pred`` equals reference answer ``gold`` (see :mod:`policy`)."""
    return check_answer(pred, gold, Policy.from_kwargs(**policy))[0]


def reference_answer(reference: Any) -> str:
    """The answer inside a dataset's reference field: a full MATH solution (``\\boxed``) or a
    GSM8K solution (``#### 42``) is reduced to its answer; a bare answer is used as is."""
    text = str(reference)
    if "\\boxed" in text or "\\fbox" in text or "####" in text:
        found = extract_answer(text, last_number_fallback=False)
        if found:
            return found
    return text.strip()


@register("math")
class MathVerifier:
    """Final-answer verifier: score 1.0 when the completion's answer equals ``example["answer"]``.

    Args:
        last_number_fallback: use the last number of a completion with no marked answer.
        answer_key: the dataset field holding the reference answer.
        workers: worker processes used by :meth:`verify_batch` (default: CPU count, at most 4).
        pool_threshold: batches with at least this many non-trivial checks use all workers.
        ignore_tool_output: read the answer from the model's own text only: ```` ```output ````
            blocks of a tool-use transcript are removed first (an answer only a tool printed scores 0).
        **policy: equivalence options, see :class:`~verifiers.math.policy.Policy`.
    """

    def __init__(self, *, last_number_fallback: bool = True, answer_key: str = "answer",
                 workers: int | None = None, pool_threshold: int = 16, ignore_tool_output: bool = True,
                 **policy: Any) -> None:
        self.policy = Policy.from_kwargs(**policy)
        self.last_number_fallback = last_number_fallback
        self.answer_key = answer_key
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.pool_threshold = pool_threshold
        self.ignore_tool_output = ignore_tool_output

    def _own_text(self, completion: str | None) -> str:
        text = completion or ""
        return strip_tool_output(text) if self.ignore_tool_output and "```output" in text else text

    def _result(self, equal: bool, reason: str, pred: str | None, gold: str) -> VerifyResult:
        return VerifyResult(score=1.0 if equal else 0.0,
                            info={"reason": reason, "extracted": pred, "reference": gold})

    def __call__(self, completion: str, example: dict) -> VerifyResult:
        gold = reference_answer(example[self.answer_key])
        pred = extract_answer(self._own_text(completion), last_number_fallback=self.last_number_fallback)
        equal, reason = check_answer(pred, gold, self.policy)
        return self._result(equal, reason, pred, gold)

    def verify_batch(self, completions: Sequence[str], examples: Sequence[dict]) -> list[VerifyResult]:
        if len(completions) != len(examples):
            raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
        golds = [reference_answer(e[self.answer_key]) for e in examples]
        preds = [extract_answer(self._own_text(c), last_number_fallback=self.last_number_fallback)
                 for c in completions]
        results: list[tuple[bool, str] | None] = [None] * len(preds)
        slow: dict[tuple[str, str], list[int]] = {}
        for i, (p, g) in enumerate(zip(preds, golds)):
            if p is None or not p.strip():
                results[i] = (False, "no_answer")
                continue
            fast = fast_equal(p, g, self.policy)
            if fast is not None:
                results[i] = (fast, "correct" if fast else "wrong")
                continue
            hit = _cache.get((p, g, self.policy))
            if hit is not None:
                results[i] = hit
                continue
            slow.setdefault((p, g), []).append(i)  # identical pairs are checked once
        if slow:
            jobs = list(slow)
            parallel = self.workers if len(jobs) >= self.pool_threshold else 1
            pool = get_pool(self.workers if parallel > 1 else 1, self.policy.max_memory_mb)
            outcomes = pool.map(jobs, self.policy.as_dict(), self.policy.timeout, parallel)
            for job, outcome in zip(jobs, outcomes):
                _cache.put((job[0], job[1], self.policy), outcome)
                for i in slow[job]:
                    results[i] = outcome
        return [self._result(r[0], r[1], p, g) for r, p, g in zip(results, preds, golds)]  # type: ignore[index]

    def close(self) -> None:
        """Stop this process's checking workers (they restart on demand)."""
        close_pools()
