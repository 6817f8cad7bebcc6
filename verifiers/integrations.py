"""verifrl's verifiers as the reward function of another trainer: TRL's GRPOTrainer or verl.

Place: outside verifrl's own pipeline. These adapters turn a registered verifier (``"math"``,
``"math_steps"``, ``"code"`` or ``"package.module:function"``) into the callable each trainer
expects; nothing here imports verifrl, torch or the trainers themselves.

TRL::

    from trl import GRPOTrainer
    from verifiers.integrations import trl_reward

    trainer = GRPOTrainer(model=..., train_dataset=ds_with_an_answer_column,
                          reward_funcs=[trl_reward("math")])

verl (``custom_reward_function`` in the trainer config)::

    custom_reward_function:
      path: <site-packages>/verifiers/integrations.py   # or a file that imports verl_compute_score
      name: verl_compute_score
"""

from __future__ import annotations

import fnmatch
import json
import threading
from typing import Any, Callable, Sequence

from verifiers.base import VerifyResult, as_result, get_verifier

# Keyword arguments TRL passes to every reward function that are not dataset columns.
_TRL_CONTROL_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"})


def _completion_text(completion: Any) -> str:
    """A TRL completion as plain text: a string as is, a chat-message list as its assistant text.

    Conversational completions are ``[{"role": "assistant", "content": ...}]``; ``content`` may be a
    string or a list of content blocks (``{"type": "text", "text": ...}``). Tool messages and tool
    calls are not part of the answer, so only assistant contents are joined.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(block.get("text", "") for block in content if block.get("type", "text") == "text")
    return "\n".join(parts)


def _score_all(verifier: Callable, completions: Sequence[str], examples: Sequence[dict]) -> list[VerifyResult]:
    batch = getattr(verifier, "verify_batch", None)
    if batch is not None:  # process pools (math) and sandbox pools (code) check a batch in parallel
        return [as_result(r) for r in batch(list(completions), list(examples))]
    return [as_result(verifier(c, e)) for c, e in zip(completions, examples)]


class TRLReward:
    """A verifier with TRL's reward-function signature; build it with :func:`trl_reward`."""

    def __init__(self, name: str, verifier: Callable) -> None:
        self.verifier = verifier
        # TRL names the reward by __name__ in its logs: rewards/<name>/mean
        self.__name__ = name.rpartition(":")[2] if ":" in name else name

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (),
                 **kwargs: Any) -> list[float]:
        """One float per completion; dataset columns arrive as keyword lists (``answer=[...]``)."""
        texts = [_completion_text(c) for c in completions]
        n = len(texts)
        columns = {key: value for key, value in kwargs.items()
                   if key not in _TRL_CONTROL_KWARGS and isinstance(value, (list, tuple)) and len(value) == n}
        examples = [{key: value[i] for key, value in columns.items()} for i in range(n)]
        try:
            results = _score_all(self.verifier, texts, examples)
        except KeyError as err:
            raise KeyError(f"reward {self.__name__!r}: the dataset has no column {err.args[0]!r} "
                           f"(columns passed by the trainer: {sorted(columns)})") from None
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):  # why each completion scored as it did, in TRL's completions table
            log_extra(f"{self.__name__}_reason", [str(r.info.get("reason", "")) for r in results])
        return [float(r.score) for r in results]

    def close(self) -> None:
        close = getattr(self.verifier, "close", None)
        if close is not None:
            close()


def trl_reward(name: str, **kwargs: Any) -> TRLReward:
    """A TRL ``GRPOTrainer`` reward function backed by the verifier registered as ``name``.

    Args:
        name: a registered verifier (``"math"``, ``"math_steps"``, ``"code"``) or
            ``"package.module:function"``.
        **kwargs: the verifier's options, as a recipe's ``kwargs`` (e.g. ``answer_key="solution"``).

    Returns:
        A callable ``(prompts, completions, **columns) -> list[float]`` whose ``__name__`` is the
        verifier's name. Completions may be strings or chat-message lists; the dataset row each
        verifier sees is built from the column keyword lists TRL passes (``answer=[...]``).

    >>> reward = trl_reward("math")
    >>> reward(prompts=["1+1?"], completions=["Answer: 2"], answer=["2"])
    [1.0]
    """
    return TRLReward(name, get_verifier(name, **kwargs))


# verl data_source -> verifier, first match wins (case-insensitive shell patterns). The sources of
# verl's own reward dispatcher (verl.utils.reward_score.default_compute_score) are covered.
DATA_SOURCE_VERIFIERS: tuple[tuple[str, str], ...] = (
    ("*codecontests*", "code"), ("*apps*", "code"), ("*codeforces*", "code"), ("*taco*", "code"),
    ("*livecodebench*", "code"), ("*humaneval*", "code"), ("*mbpp*", "code"), ("*code*", "code"),
    ("*gsm8k*", "math"), ("*math*", "math"), ("*aime*", "math"), ("*amc*", "math"), ("*numina*", "math"),
    ("*olympiad*", "math"), ("*deepscaler*", "math"), ("*dapo*", "math"), ("*minerva*", "math"),
)

_verl_verifiers: dict[tuple, Callable] = {}
_verl_lock = threading.Lock()


def verifier_for_data_source(data_source: str) -> str:
    """The verifier name :func:`verl_compute_score` uses for a verl ``data_source``."""
    source = str(data_source).lower()
    for pattern, verifier in DATA_SOURCE_VERIFIERS:
        if fnmatch.fnmatchcase(source, pattern):
            return verifier
    raise ValueError(f"verl_compute_score: no verifier for data_source {data_source!r}; name one with "
                     "extra_info={'verifier': 'math'} or custom_reward_function.reward_kwargs.verifier")


def _cached_verifier(name: str, kwargs: dict) -> Callable:
    # verl calls compute_score once per sample: build each verifier (and its worker pool) once
    key = (name, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    with _verl_lock:
        if key not in _verl_verifiers:
            _verl_verifiers[key] = get_verifier(name, **kwargs)
        return _verl_verifiers[key]


def _code_suite(ground_truth: Any) -> Any:
    """verl's code ground truth in :mod:`verifiers.code.spec` form: the APPS / CodeContests stdio
    layout ``{"inputs": [...], "outputs": [...]}`` becomes ``{"cases": [...]}``; anything else is
    passed on as is (the spec parser names what is wrong with it)."""
    suite = ground_truth
    if isinstance(suite, str) and suite.lstrip().startswith("{"):
        try:
            suite = json.loads(suite)
        except json.JSONDecodeError:
            return ground_truth
    if isinstance(suite, dict) and "inputs" in suite and "outputs" in suite and "fn_name" not in suite:
        return {"cases": [{"input": str(i), "output": str(o)} for i, o in zip(suite["inputs"], suite["outputs"])]}
    return suite


def verl_compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                       verifier: str | None = None, **verifier_kwargs: Any) -> dict[str, float]:
    """verl's custom reward function: score one response with a verifrl verifier.

    Args:
        data_source: the dataset's ``data_source`` column; picks the verifier through
            :data:`DATA_SOURCE_VERIFIERS` (math datasets -> ``math``, code datasets -> ``code``).
        solution_str: the decoded response.
        ground_truth: ``reward_model.ground_truth``: the reference answer (math), or the test suite
            (code: the :mod:`verifiers.code.spec` schema, a dict or its JSON string).
        extra_info: the row's ``extra_info``. Its keys join the example the verifier sees (e.g.
            ``tests`` or ``code_prefix`` for code); ``extra_info["verifier"]`` overrides the
            data_source mapping.
        verifier: the verifier name, overriding both (set it through
            ``custom_reward_function.reward_kwargs``); further keyword arguments are its options.

    Returns:
        ``{"score": float, "acc": float}``: the verifier's score, and 1.0 when it is full marks
        (every key present for every sample, as verl's metric aggregation needs).
    """
    extra = dict(extra_info or {})
    name = verifier or extra.pop("verifier", None) or verifier_for_data_source(data_source)
    extra.pop("verifier", None)
    example = {**extra, "answer": ground_truth}
    if "tests" not in extra:  # code rows carry their suite as the ground truth unless extra_info has it
        example["tests"] = _code_suite(ground_truth)
    result = as_result(_cached_verifier(name, verifier_kwargs)(solution_str or "", example))
    score = float(result.score)
    return {"score": score, "acc": float(score >= 1.0 - 1e-9)}
