"""Test suites: parse ``tests.json`` / the dataset row's ``tests`` into probes and hidden expectations.

Place: first step of :mod:`verifiers.code`. A suite splits, in the trusted parent, every test into
the *input* that goes to the sandbox (a probe) and the *expectation* that never leaves the parent.

Schema (the same for ``--tests tests.json`` and for ``example["tests"]``, which may also be a JSON
string of it)::

    {"entry_point": "add",
     "calls":   [{"args": [1, 2], "kwargs": {}, "expected": 3,
                  "compare": "exact" | "approx", "abs_tol": 1e-9, "rel_tol": 0.0,
                  "expected_type": "int"}],
     "asserts": ["assert add(1, 2) == 3"]}
    {"cases": [{"input": "1 2\\n", "output": "3\\n"}], "float_tol": 1e-6}

Asserts are parsed with :mod:`ast`, never executed in the parent: the side holding a literal
becomes the hidden expectation, the other side the expression the sandbox evaluates. Supported
forms: ``E == lit`` / ``lit == E``, ``E != lit``, ``E is True|False|None``, ``E``, ``not E``,
``math.isclose(E, lit, rel_tol=.., abs_tol=..)`` and ``abs(E - lit) < tol``. Anything else is
refused with :class:`SpecError` (the loader drops or converts such rows) rather than run in a way
the candidate could forge.
"""

from __future__ import annotations

import ast
import json
import operator
from dataclasses import dataclass, field
from typing import Any


class SpecError(ValueError):
    """The test suite is malformed or uses an assert form that cannot be judged safely."""


@dataclass
class Expectation:
    """How the parent judges one probe's value. ``value`` never reaches the sandbox."""

    op: str  # "eq" | "ne" | "truthy" | "falsy" | "approx"
    value: Any = None
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    expected_type: str | None = None
    json_mode: bool = False  # expected came from JSON: a returned tuple may stand for a list


@dataclass
class FunctionCheck:
    probe: dict  # {"fn", "args", "kwargs"} or {"expr"}: goes to the sandbox
    expect: Expectation  # stays in the parent
    source: str  # human-readable test, for info


@dataclass
class StdioCase:
    input: str
    output: str
    float_tol: float | None = None


@dataclass
class Suite:
    kind: str  # "function" | "stdio"
    checks: list[FunctionCheck] = field(default_factory=list)
    cases: list[StdioCase] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.checks) if self.kind == "function" else len(self.cases)


_SAFE_CALLS = {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list, "dict": dict,
               "float": float, "int": int, "str": str, "complex": complex, "bytes": bytes}


_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


def safe_literal(node: ast.AST) -> Any:
    """Evaluate a literal, also allowing ``set()``/``tuple([..])``/``float('inf')``-style wrappers
    and arithmetic on numbers (``2 ** 200``, ``1 / 3``), never a name or an arbitrary call."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [safe_literal(e) for e in node.elts]
        try:
            return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](items)
        except TypeError as err:
            raise SpecError(f"bad literal {ast.unparse(node)}: {err}") from err
    if isinstance(node, ast.Dict) and None not in node.keys:
        try:
            return {safe_literal(k): safe_literal(v) for k, v in zip(node.keys, node.values)}
        except TypeError as err:
            raise SpecError(f"bad literal {ast.unparse(node)}: {err}") from err
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SAFE_CALLS \
            and not node.keywords:
        args = [safe_literal(a) for a in node.args]
        try:
            return _SAFE_CALLS[node.func.id](*args)
        except (TypeError, ValueError) as err:
            raise SpecError(f"bad literal {ast.unparse(node)}: {err}") from err
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        a, b = safe_literal(node.left), safe_literal(node.right)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
            if isinstance(node.op, ast.Pow) and (abs(b) > 1000 or abs(a) > 1 << 64):
                raise SpecError(f"power too large to evaluate: {ast.unparse(node)}")
            try:
                return _ARITH[type(node.op)](a, b)
            except (ArithmeticError, ValueError) as err:
                raise SpecError(f"bad constant {ast.unparse(node)}: {err}") from err
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = safe_literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise SpecError(f"not a literal: {ast.unparse(node)}")


def _is_literal(node: ast.AST) -> bool:
    try:
        safe_literal(node)
        return True
    except SpecError:
        return False


def _number(node: ast.AST) -> float:
    value = safe_literal(node)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"tolerance must be a number: {ast.unparse(node)}")
    return float(value)


def parse_assert(text: str) -> tuple[dict, Expectation]:
    """One assert statement -> (probe for the sandbox, expectation for the parent)."""
    try:
        tree = ast.parse(text.strip())
    except SyntaxError as err:
        raise SpecError(f"assert does not parse: {text!r}") from err
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise SpecError(f"expected one assert statement: {text!r}")
    test = tree.body[0].test

    def probe(node: ast.AST) -> dict:
        if _is_literal(node):
            raise SpecError(f"assert compares two literals: {text!r}")
        return {"expr": ast.unparse(node)}

    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if isinstance(op, (ast.Eq, ast.NotEq)):
            if _is_literal(right):
                expr, lit = left, right
            elif _is_literal(left):
                expr, lit = right, left
            else:
                raise SpecError(f"neither side of the comparison is a literal: {text!r}")
            return probe(expr), Expectation("eq" if isinstance(op, ast.Eq) else "ne", safe_literal(lit))
        if isinstance(op, ast.Is) and isinstance(right, ast.Constant) and right.value in (True, False, None):
            # `is True` is stricter than ==: the value must be the bool itself
            return probe(left), Expectation("eq", right.value, expected_type=type(right.value).__name__)
        if isinstance(op, (ast.Lt, ast.LtE)) and isinstance(left, ast.Call) and \
                isinstance(left.func, ast.Name) and left.func.id == "abs" and len(left.args) == 1 and \
                isinstance(left.args[0], ast.BinOp) and isinstance(left.args[0].op, ast.Sub):
            a, b = left.args[0].left, left.args[0].right
            expr, lit = (a, b) if _is_literal(b) else (b, a)
            return probe(expr), Expectation("approx", safe_literal(lit), abs_tol=_number(right))
    if isinstance(test, ast.Call) and not isinstance(test.func, ast.Lambda):
        name = ast.unparse(test.func)
        if name in ("math.isclose", "isclose") and len(test.args) == 2:
            a, b = test.args
            expr, lit = (a, b) if _is_literal(b) else (b, a)
            kw = {k.arg: _number(k.value) for k in test.keywords}
            if set(kw) - {"rel_tol", "abs_tol"}:
                raise SpecError(f"unsupported isclose keywords: {text!r}")
            return probe(expr), Expectation("approx", safe_literal(lit), abs_tol=kw.get("abs_tol", 0.0),
                                            rel_tol=kw.get("rel_tol", 1e-9))
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return probe(test.operand), Expectation("falsy")
    if isinstance(test, (ast.Call, ast.Name, ast.Subscript, ast.Attribute)):
        return probe(test), Expectation("truthy")
    raise SpecError(f"unsupported assert form: {text!r}")


def _parse_call(call: dict, entry_point: str) -> FunctionCheck:
    if "expected" not in call:
        raise SpecError(f"call without 'expected': {call!r}")
    args, kwargs = call.get("args", []), call.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise SpecError(f"'args' must be a list and 'kwargs' an object: {call!r}")
    compare = call.get("compare", "exact")
    if compare not in ("exact", "approx"):
        raise SpecError(f"unknown compare {compare!r}")
    expect = Expectation(
        "approx" if compare == "approx" else "eq", call["expected"],
        abs_tol=float(call.get("abs_tol", 1e-6 if compare == "approx" else 0.0)),
        rel_tol=float(call.get("rel_tol", 0.0)), expected_type=call.get("expected_type"), json_mode=True)
    fn = call.get("fn", entry_point)
    shown = ", ".join([json.dumps(a) for a in args] + [f"{k}={json.dumps(v)}" for k, v in kwargs.items()])
    return FunctionCheck({"fn": fn, "args": args, "kwargs": kwargs}, expect, f"{fn}({shown})")


def parse_suite(tests: dict | str) -> Suite:
    """The tests of one dataset row (a dict, or a JSON string of it) -> a :class:`Suite`."""
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except ValueError as err:
            raise SpecError(f"tests are not valid JSON: {err}") from err
    if not isinstance(tests, dict):
        raise SpecError("tests must be a JSON object")
    if "cases" in tests:
        tol = tests.get("float_tol")
        cases = [StdioCase(str(c["input"]), str(c["output"]), c.get("float_tol", tol)) for c in tests["cases"]]
        if not cases:
            raise SpecError("no stdin/stdout cases")
        return Suite("stdio", cases=cases)
    entry_point = tests.get("entry_point")
    calls, asserts = tests.get("calls", []), tests.get("asserts", [])
    if calls and not entry_point and not all("fn" in c for c in calls):
        raise SpecError("function calls need an 'entry_point'")
    checks = [_parse_call(c, entry_point) for c in calls]
    for text in asserts:
        probe, expect = parse_assert(text)
        checks.append(FunctionCheck(probe, expect, text.strip()))
    if not checks:
        raise SpecError("no tests: give 'calls', 'asserts' or 'cases'")
    return Suite("function", checks=checks)
