"""The verifier plug-in point: completion + dataset row -> VerifyResult.

Place in the data flow: prompts -> rollouts -> **verifier results** -> rewards -> advantages -> ...

A verifier is any callable ``(completion: str, example: dict) -> VerifyResult``; ``example`` is the
dataset row the prompt came from (the reference answer is ``example["answer"]`` for math, the unit
tests for code). A verifier may return a bare ``float``/``bool``; :func:`as_result` wraps it. Classes
may also offer ``verify_batch(completions, examples) -> list[VerifyResult]`` (process pools, sandbox
pools) and ``close()``.

Verifiers are registered by name so recipes can name them::

    @register("exact")
    def exact(completion: str, example: dict) -> VerifyResult:
        return VerifyResult(score=float(completion.strip() == example["answer"]))

and a recipe may also name any importable callable as ``"package.module:function"``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable


_TOOL_OUTPUT_BLOCK = re.compile(r"```output\n.*?(?:\n```|$)", re.DOTALL)


def strip_tool_output(completion: str) -> str:
    """The policy's own text of a tool-use transcript: every ```` ```output ```` block (the tool's
    words, spliced in while sampling) removed, an unterminated one up to the end. A verifier that
    grades "the model's answer" reads this, so a tool that prints the answer cannot answer for it."""
    return _TOOL_OUTPUT_BLOCK.sub("", completion)


@dataclass
class VerifyResult:
    """What a verifier says about one completion.

    Attributes:
        score: sequence-level reward (usually in [0, 1]).
        step_scores: segment-level rewards, one per reasoning step, or None for a plain outcome
            verifier.
        step_spans: character spans ``(start, end)`` (end exclusive) of those steps in the
            completion; same length as ``step_scores``.
        info: free-form details; by convention ``info["reason"]`` says why a score is 0
            (``"no_answer"``, ``"wrong"``, ``"timeout"``, ``"compile_error"``...).
    """

    score: float
    step_scores: list[float] | None = None
    step_spans: list[tuple[int, int]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.step_scores is None) != (self.step_spans is None):
            raise ValueError("step_scores and step_spans must be given together")
        if self.step_scores is not None and len(self.step_scores) != len(self.step_spans):
            raise ValueError(
                f"{len(self.step_scores)} step_scores but {len(self.step_spans)} step_spans"
            )


@runtime_checkable
class Verifier(Protocol):
    """Anything that scores one completion against its dataset row."""

    def __call__(self, completion: str, example: dict) -> VerifyResult: ...


def as_result(value: VerifyResult | float | bool | int) -> VerifyResult:
    """Wrap a bare number returned by a user verifier into a VerifyResult."""
    if isinstance(value, VerifyResult):
        return value
    if isinstance(value, (bool, int, float)):
        return VerifyResult(score=float(value))
    raise TypeError(
        f"a verifier must return VerifyResult or a number, got {type(value).__name__}"
    )


def verify_batch(
    verifier: Callable, completions: Sequence[str], examples: Sequence[dict]
) -> list[VerifyResult]:
    """Score many completions, using the verifier's own ``verify_batch`` when it has one."""
    if len(completions) != len(examples):
        raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
    batch_fn = getattr(verifier, "verify_batch", None)
    if batch_fn is not None:
        return [as_result(r) for r in batch_fn(list(completions), list(examples))]
    return [as_result(verifier(c, e)) for c, e in zip(completions, examples)]


_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a verifier function, or a verifier class (instantiated with the
    recipe's ``kwargs``), under ``name``."""

    def decorator(obj: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name] is not obj:
            raise ValueError(f"verifier name {name!r} is already registered")
        _REGISTRY[name] = obj
        return obj

    return decorator


def registered_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    # Importing the built-in modules runs their @register decorators. Done lazily so that
    # `import verifiers` stays cheap and a broken optional module cannot break the others.
    for module in ("verifiers.math", "verifiers.steps", "verifiers.code"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def get_verifier(name: str, **kwargs: Any) -> Callable:
    """Build the verifier a recipe names: a registered name or ``"package.module:attr"``.

    A class is instantiated with ``kwargs``; a function is used as is (with ``kwargs`` bound as
    keyword arguments when given).
    """
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"verifier {name!r}: cannot import module {module_name!r}: {err}")
        if not hasattr(module, attr):
            raise ValueError(f"verifier {name!r}: module {module_name!r} has no {attr!r}")
        target = getattr(module, attr)
    else:
        if name not in _REGISTRY:
            _load_builtins()
        if name not in _REGISTRY:
            raise ValueError(
                f"unknown verifier {name!r}; registered: {', '.join(registered_names())}"
                " (or give 'package.module:function')"
            )
        target = _REGISTRY[name]
    if inspect.isclass(target):
        return target(**kwargs)
    if kwargs:
        return _BoundVerifier(target, kwargs)
    return target


class _BoundVerifier:
    """A verifier function with recipe keyword arguments bound (picklable, unlike a lambda)."""

    def __init__(self, fn: Callable, kwargs: dict[str, Any]) -> None:
        self.fn, self.kwargs = fn, kwargs

    def __call__(self, completion: str, example: dict) -> VerifyResult:
        return as_result(self.fn(completion, example, **self.kwargs))
