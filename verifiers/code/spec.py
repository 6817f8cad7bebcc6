"""Test suites: ``tests.json`` / a dataset row's ``tests`` -> a :class:`Suite` of named test units.

Place: first step of :mod:`verifiers.code`. Parsing only (``ast``), never executing: the suite's
code runs later in the sandboxed *test process*, the program in the sandboxed *candidate
process* (see ``sandbox/``), and expected values of structured calls stay in this parent.

Schema (the same for ``--tests tests.json`` and ``example["tests"]``, which may also be a JSON
string of it); every key is optional but at least one kind of test must be given::

    {"entry_point": "add",                 # the function under test (HumanEval's field name)
     "calls":   [{"args": [1, 2], "kwargs": {}, "expected": 3, "fn": "add",
                  "compare": "exact" | "approx", "abs_tol": 1e-6, "rel_tol": 0.0,
                  "expected_type": "int"}],
     "asserts": ["assert add(1, 2) == 3", "..."],      # any statement(s), MBPP's test_list
     "setup":   "import math",                         # run first in the test process
     "test":    "def check(candidate): ...",           # HumanEval; or test_* functions /
                                                       # unittest.TestCase classes
     "module":  "solution"}                            # `from solution import f` in tests
    {"cases": [{"input": "1 2\\n", "output": "3\\n"}], "float_tol": 1e-6,
     "checker": "def check(input, output, expected): ..."}   # special judge (test process)

Test units, in the order they run: each call; each assert string; in a ``test`` with
``check(candidate)`` every ``assert`` statement (except ``assert <true constant>``), made
non-fatal so one failure does not hide the others; each ``test_*`` function and each ``test*``
method of a ``Test*`` / ``TestCase`` class. The reward is the passed share of the units.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


class SpecError(ValueError):
    """The test suite is malformed (a clear one-line message says where)."""


@dataclass(frozen=True)
class Expectation:
    """How the parent judges the value of a structured call. ``value`` never leaves the parent."""

    op: str  # "eq" | "approx"
    value: Any = None
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    expected_type: str | None = None
    json_mode: bool = True  # expected came from JSON: a returned tuple may stand for a list


@dataclass(frozen=True)
class Unit:
    name: str  # human-readable test, for the per-test results
    spec: dict  # what the test process runs for it (never an expected value of a call)
    expect: Expectation | None = None  # structured calls only: judged in the parent


@dataclass(frozen=True)
class StdioCase:
    input: str
    output: str
    float_tol: float | None = None


@dataclass(frozen=True)
class Suite:
    kind: str  # "function" | "stdio"
    units: tuple[Unit, ...] = ()
    test_job: dict = field(default_factory=dict)  # function suites: everything but the units' expectations
    cases: tuple[StdioCase, ...] = ()
    checker: str | None = None  # stdio: special judge source defining check(input, output, expected)

    def __len__(self) -> int:
        return len(self.units) if self.kind == "function" else len(self.cases)

    @property
    def names(self) -> list[str]:
        if self.kind == "function":
            return [u.name for u in self.units]
        return [f"case {k}" for k in range(len(self.cases))]


_KEYS = {"entry_point", "calls", "asserts", "setup", "test", "module", "cases", "float_tol", "checker"}
_CALL_KEYS = {"fn", "args", "kwargs", "expected", "compare", "abs_tol", "rel_tol", "expected_type"}
_PLAIN_TYPES = {"int", "float", "str", "bool", "NoneType", "list", "tuple", "dict", "set", "frozenset",
                "bytes", "complex"}


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SpecError(f"{what} must be a non-negative number, not {value!r}"[:200])
    return float(value)


def _identifier(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise SpecError(f"{what} must be a Python identifier string, not {value!r}"[:200])
    return value


def _source(value: Any, what: str) -> ast.Module:
    if not isinstance(value, str):
        raise SpecError(f"{what} must be a string of Python code, not {type(value).__name__}")
    try:
        return ast.parse(value)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
        raise SpecError(f"{what} is not valid Python: {err}"[:200]) from None


def _parse_call(k: int, call: Any, entry_point: str | None) -> Unit:
    where = f"calls[{k}]"
    if not isinstance(call, dict):
        raise SpecError(f"{where} must be an object")
    unknown = set(call) - _CALL_KEYS
    if unknown:
        raise SpecError(f"{where} has unknown keys {sorted(unknown)}")
    if "expected" not in call:
        raise SpecError(f"{where} has no 'expected'")
    args, kwargs = call.get("args", []), call.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise SpecError(f"{where}: 'args' must be a list and 'kwargs' an object")
    fn = _identifier(call.get("fn", entry_point), f"{where}.fn (or entry_point)")
    compare = call.get("compare", "exact")
    if compare not in ("exact", "approx"):
        raise SpecError(f"{where}.compare must be 'exact' or 'approx', not {compare!r}"[:200])
    expected_type = call.get("expected_type")
    if expected_type is not None and expected_type not in _PLAIN_TYPES:
        raise SpecError(f"{where}.expected_type must be one of {sorted(_PLAIN_TYPES)}")
    expect = Expectation("approx" if compare == "approx" else "eq", call["expected"],
                         abs_tol=_number(call.get("abs_tol", 1e-6 if compare == "approx" else 0.0), f"{where}.abs_tol"),
                         rel_tol=_number(call.get("rel_tol", 0.0), f"{where}.rel_tol"), expected_type=expected_type)
    shown = ", ".join([json.dumps(a) for a in args] + [f"{key}={json.dumps(v)}" for key, v in kwargs.items()])
    return Unit(f"{fn}({shown})"[:300], {"kind": "call", "fn": fn, "args": args, "kwargs": kwargs}, expect)


# --------------------------------------------------------------------------- test source

def _always_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and bool(node.value)


class _NonFatalAsserts(ast.NodeTransformer):
    """``assert T, M`` -> a recorded, non-fatal check of unit ``k`` (see testside.CheckRecorder)."""

    def __init__(self, first: int) -> None:
        self.next, self.names = first, []

    def visit_Assert(self, node: ast.Assert) -> Any:
        if _always_true(node.test):
            return node
        k = self.next
        self.next += 1
        self.names.append(("assert " + ast.unparse(node.test))[:300])
        rec = ast.Name("__verifrl__", ast.Load())
        call = lambda method, *args: ast.Expr(ast.Call(  # noqa: E731
            ast.Attribute(rec, method, ast.Load()), [ast.Constant(k), *args], []))
        handler = ast.ExceptHandler(ast.Name("BaseException", ast.Load()), "__verifrl_error__",
                                    [call("raised", ast.Name("__verifrl_error__", ast.Load()))])
        new = ast.Try([call("begin"), call("end", node.test)], [handler], [], [])
        return ast.copy_location(new, node)


def _free_names(trees: list[ast.AST]) -> list[str]:
    """Names the suite reads but never binds: candidate functions, or modules the program imported."""
    loaded, bound = set(), set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return sorted(loaded - bound)


def _test_units(tree: ast.Module, first: int) -> tuple[str, list[Unit]]:
    """The units of a ``test`` source and the source the test process runs."""
    top = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    if isinstance(top.get("check"), ast.FunctionDef):
        rewriter = _NonFatalAsserts(first)
        new = ast.fix_missing_locations(rewriter.visit(tree))
        units = [Unit(name, {"kind": "check_assert"}) for name in rewriter.names]
        if not units:  # a check() without asserts: it passes by returning
            raise SpecError("test: check(candidate) contains no assert statement")
        return ast.unparse(new), units
    units = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            units.append(Unit(node.name, {"kind": "pytest", "name": node.name}))
        elif isinstance(node, ast.ClassDef):
            is_unittest = any("TestCase" in ast.unparse(b) for b in node.bases)
            if not (is_unittest or node.name.startswith("Test")):
                continue
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                    kind = "unittest" if is_unittest else "pytest"
                    units.append(Unit(f"{node.name}.{item.name}", {"kind": kind, "cls": node.name, "name": item.name}))
    if not units:
        raise SpecError("test defines neither check(candidate) nor test_* functions / TestCase classes")
    return ast.unparse(tree), units


# --------------------------------------------------------------------------- suites

def _stdio_suite(tests: dict) -> Suite:
    unknown = set(tests) - {"cases", "float_tol", "checker"}
    if unknown:
        raise SpecError(f"stdin/stdout tests take cases, float_tol, checker; not {sorted(unknown)}")
    raw = tests["cases"]
    if not isinstance(raw, list) or not raw:
        raise SpecError("'cases' must be a non-empty list")
    tol = tests.get("float_tol")
    if tol is not None:
        tol = _number(tol, "float_tol")
    cases = []
    for k, case in enumerate(raw):
        if not isinstance(case, dict) or not isinstance(case.get("input"), str) or \
                not isinstance(case.get("output"), str):
            raise SpecError(f"cases[{k}] must be an object with string 'input' and 'output'")
        case_tol = case.get("float_tol", tol)
        cases.append(StdioCase(case["input"], case["output"],
                               None if case_tol is None else _number(case_tol, f"cases[{k}].float_tol")))
    checker = tests.get("checker")
    if checker is not None:
        tree = _source(checker, "checker")
        if not any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body):
            raise SpecError("checker must define check(input, output, expected)")
    return Suite("stdio", cases=tuple(cases), checker=checker)


def _function_suite(tests: dict) -> Suite:
    unknown = set(tests) - _KEYS
    if unknown:
        raise SpecError(f"unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    entry_point = tests.get("entry_point")
    if entry_point is not None:
        _identifier(entry_point, "entry_point")
    calls, asserts = tests.get("calls", []), tests.get("asserts", [])
    if not isinstance(calls, list) or not isinstance(asserts, list):
        raise SpecError("'calls' and 'asserts' must be lists")
    units = [_parse_call(k, c, entry_point) for k, c in enumerate(calls)]
    trees = []
    for k, text in enumerate(asserts):
        trees.append(_source(text, f"asserts[{k}]"))
        units.append(Unit(text.strip()[:300], {"kind": "code", "source": text}))
    setup = tests.get("setup", "")
    _source(setup, "setup")
    module = _identifier(tests.get("module", "solution"), "module")
    test_source = ""
    if tests.get("test") is not None:
        tree = _source(tests["test"], "test")
        trees.append(ast.parse(tests["test"]))
        if isinstance(next((n for n in tree.body if getattr(n, "name", None) == "check"), None), ast.FunctionDef) \
                and entry_point is None:
            raise SpecError("a test with check(candidate) needs an 'entry_point'")
        test_source, more = _test_units(tree, len(units))
        units += more
    if not units:
        raise SpecError("no tests: give 'calls', 'asserts', 'test' or 'cases'")
    job = {"entry_point": entry_point, "setup": setup, "test": test_source, "modules": [module],
           "free_names": _free_names(trees), "units": [u.spec for u in units]}
    return Suite("function", units=tuple(units), test_job=job)


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> Suite:
    try:
        tests = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise SpecError(f"tests are not valid JSON: {err}"[:200]) from None
    if not isinstance(tests, dict):
        raise SpecError("tests must be a JSON object")
    try:
        return _stdio_suite(tests) if "cases" in tests else _function_suite(tests)
    except SpecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as err:
        raise SpecError(f"malformed tests: {type(err).__name__}: {err}"[:200]) from None


def parse_suite(tests: dict | str) -> Suite:
    """The tests of one dataset row (a dict, or a JSON string of it) -> a :class:`Suite` (cached)."""
    if not isinstance(tests, str):
        try:
            tests = json.dumps(tests, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise SpecError(f"tests must be JSON data: {err}"[:200]) from None
    return _parse_text(tests)
