"""Judging in the trusted parent: structured calls' values and stdin/stdout cases.

Place: last step of :mod:`verifiers.code`, after the sandbox returned raw outputs. Nothing here
calls a method of an object the candidate made: a call's value arrives as tagged JSON from the
test process and is rebuilt by :func:`decode` into exact builtin types, then compared through
:func:`canonical`, a hashable tagged form in which ``True`` is not ``1``, ``"3"`` is not ``3``,
``3.0`` equals ``3`` (as in Python), and a tuple differs from a list unless the expected value
came from JSON (which has no tuples). Suites written as code (asserts, ``check``, test
functions) are judged by that code in the test process instead.
"""

from __future__ import annotations

import math
from typing import Any

from verifiers.code.sandbox.values import NotPlainData as DecodeError
from verifiers.code.sandbox.values import decode
from verifiers.code.spec import Expectation

__all__ = ["DecodeError", "canonical", "decode", "judge", "stdout_matches"]


def canonical(value: Any, json_mode: bool = False) -> Any:
    """Hashable, type-tagged form of a plain value; equal forms <=> equal under the strict rules."""
    t = type(value)
    if value is None:
        return ("none",)
    if t is bool:
        return ("bool", value)
    if t is int or t is float:
        return ("num", value)
    if t is complex:
        return ("num", value) if value.imag == 0 else ("complex", value)
    if t is str:
        return ("str", value)
    if t is bytes:
        return ("bytes", value)
    if t is list or (json_mode and t is tuple):
        return ("list", tuple(canonical(x, json_mode) for x in value))
    if t is tuple:
        return ("tuple", tuple(canonical(x, json_mode) for x in value))
    if t is set or t is frozenset:
        # Python compares set with frozenset by content
        return ("set", frozenset(canonical(x, json_mode) for x in value))
    if t is dict:
        return ("dict", frozenset((canonical(k, json_mode), canonical(v, json_mode)) for k, v in value.items()))
    raise DecodeError(f"not a plain value: {t.__name__}")


def _approx(actual: Any, expected: Any, abs_tol: float, rel_tol: float) -> bool:
    """Numbers within tolerance; sequences element-wise; other values strictly."""
    ta, te = type(actual), type(expected)
    if ta in (int, float) and te in (int, float):
        return math.isclose(actual, expected, rel_tol=rel_tol, abs_tol=abs_tol)
    if ta in (list, tuple) and te in (list, tuple):
        return len(actual) == len(expected) and all(
            _approx(a, e, abs_tol, rel_tol) for a, e in zip(actual, expected))
    return canonical(actual, True) == canonical(expected, True)


def judge(actual: Any, expect: Expectation) -> bool:
    """Does the rebuilt value ``actual`` satisfy the hidden expectation?"""
    if expect.expected_type is not None and type(actual).__name__ != expect.expected_type:
        return False
    if expect.op == "approx":
        return _approx(actual, expect.value, expect.abs_tol, expect.rel_tol)
    try:
        return canonical(actual, expect.json_mode) == canonical(expect.value, expect.json_mode)
    except DecodeError:  # an expected value that is not plain data (a malformed row)
        return False


def _tokens_equal(got: str, want: str, float_tol: float | None) -> bool:
    if got == want:
        return True
    if float_tol is None:
        return False
    try:
        a, b = float(got), float(want)
    except ValueError:
        return False
    return math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=float_tol, abs_tol=float_tol)


def _lines(text: str) -> list[list[str]]:
    lines = [line.split() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def stdout_matches(got: str, want: str, float_tol: float | None = None) -> bool:
    """Whitespace-normalised comparison: same lines, same tokens per line (floats within tolerance).

    Both sides must have the same number of lines: a correct prefix is not a pass.
    """
    a, b = _lines(got), _lines(want)
    return len(a) == len(b) and all(
        len(x) == len(y) and all(_tokens_equal(s, t, float_tol) for s, t in zip(x, y)) for x, y in zip(a, b))
