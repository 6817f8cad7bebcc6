"""Code verifier pieces: assert parsing, parent-side comparison, extraction, rewards and reasons,
the command line, the registry, and the MBPP/HumanEval/toy loaders (on local files)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from verifrl.tasks.code import load_code_rows, toy_code_rows
from verifiers import get_verifier
from verifiers.code import CodeVerifier, SpecError, extract_program, parse_suite
from verifiers.code.compare import decode, judge, stdout_matches
from verifiers.code.spec import Expectation, parse_assert


@pytest.fixture(scope="module")
def verifier():
    with CodeVerifier(timeout=2.0, call_timeout=1.0, workers=2) as v:
        yield v


# ------------------------------------------------------------------ spec
@pytest.mark.parametrize("text, expr, op, value", [
    ("assert add(1, 2) == 3", "add(1, 2)", "eq", 3),
    ("assert 3 == add(1, 2)", "add(1, 2)", "eq", 3),
    ("assert f(x=[1]) != (1, 2)", "f(x=[1])", "ne", (1, 2)),
    ("assert set(f(3)) == set([1, 2])", "set(f(3))", "eq", {1, 2}),
    ("assert f() == float('inf')", "f()", "eq", float("inf")),
    ("assert f() == -2 ** 10", "f()", "eq", -1024),
    ("assert is_prime(7)", "is_prime(7)", "truthy", None),
    ("assert not is_prime(8)", "is_prime(8)", "falsy", None),
    ("assert math.isclose(area(2), 12.566, rel_tol=0.001)", "area(2)", "approx", 12.566),
    ("assert abs(area(2) - 12.566) < 0.01", "area(2)", "approx", 12.566),
])
def test_assert_forms_split_into_probe_and_hidden_expectation(text, expr, op, value):
    probe, expect = parse_assert(text)
    assert probe == {"expr": expr}
    assert expect.op == op and expect.value == value


@pytest.mark.parametrize("text", ["assert f(1) == g(1)", "assert 1 == 1", "x = 3", "assert f(1) < 3",
                                  "assert f(1) == 1 or f(1) == 2", "assert f() == (lambda: 1)()"])
def test_unjudgeable_asserts_are_refused(text):
    with pytest.raises(SpecError):
        parse_assert(text)


def test_suite_schema_errors():
    for bad in ({}, {"calls": [{"args": [1], "expected": 1}]}, {"entry_point": "f", "calls": [{"args": [1]}]},
                "not json", {"cases": []}):
        with pytest.raises(SpecError):
            parse_suite(bad)
    assert len(parse_suite(json.dumps({"cases": [{"input": "", "output": "1"}]}))) == 1


# ------------------------------------------------------------------ compare
@pytest.mark.parametrize("actual, expect, ok", [
    (3, Expectation("eq", 3), True),
    (3.0, Expectation("eq", 3), True),  # Python numeric equality
    (3.0, Expectation("eq", 3, expected_type="int"), False),
    (True, Expectation("eq", 1), False),
    (1, Expectation("eq", True), False),
    ("3", Expectation("eq", 3), False),
    ((1, 2), Expectation("eq", [1, 2]), False),  # from an assert: tuple is not list
    ((1, 2), Expectation("eq", [1, 2], json_mode=True), True),  # from JSON, which has no tuples
    ({1: True}, Expectation("eq", {1: 1}), False),
    ({1, 2}, Expectation("eq", frozenset({1, 2})), True),
    ([0.1 + 0.2], Expectation("approx", [0.3], abs_tol=1e-9), True),
    (None, Expectation("eq", None, expected_type="NoneType"), True),
    (0, Expectation("falsy"), True),
    (3, Expectation("ne", 4), True),
])
def test_judge_is_strict_on_types_and_python_on_numbers(actual, expect, ok):
    assert judge(actual, expect) is ok


def test_decode_rebuilds_only_plain_values():
    assert decode({"t": [1, {"s": ["a"]}, {"I": hex(2 ** 100)}, {"f": "nan"}]})[:3] == (1, {"a"}, 2 ** 100)
    for bad in ({"x": 1}, {"t": 1, "s": 2}, {"d": [[[], 1]]}):
        with pytest.raises(ValueError):
            decode(bad)


def test_stdout_comparison():
    assert stdout_matches("1  2\n3\n\n", "1 2\n3")
    assert not stdout_matches("1 2\n", "1 2\n3\n")  # a correct prefix is not a pass
    assert not stdout_matches("1 2\n3\n4\n", "1 2\n3\n")
    assert stdout_matches("0.3333334\n", "0.333333\n", float_tol=1e-5)
    assert not stdout_matches("0.34\n", "0.333333\n", float_tol=1e-5)
    assert not stdout_matches("0.3333334\n", "0.333333\n")


def test_extraction_takes_the_last_python_block():
    text = "try\n```python\nx = 1\n```\nbetter:\n```py\nx = 2\n```\n"
    assert extract_program(text) == "x = 2\n"
    assert extract_program("x = 3\n```\nprose") == "x = 3\n"
    assert extract_program("no code", fallback="none") is None
    assert extract_program("A: 1\nB: 2", r"B: (\d)") == "2"


# ------------------------------------------------------------------ verifier
def test_rewards_reasons_and_per_test_info(verifier):
    tests = {"entry_point": "f", "calls": [{"args": [k], "expected": k * k} for k in range(4)]}
    example = {"tests": json.dumps(tests)}
    results = verifier.verify_batch(
        ["```python\ndef f(x): return x * x\n```", "```python\ndef f(x): return x * 2\n```",
         "```python\ndef f(x) return\n```", "```python\ndef f(x):\n    while True: pass\n```",
         "```python\ndef f(x): return 1 // (x - 1)\n```", "no code here", "```python\nimport os\nos._exit(0)\n```"],
        [example] * 7)
    assert [r.score for r in results] == [1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert [r.info["reason"] for r in results] == ["ok", "wrong", "compile_error", "timeout", "runtime_error",
                                                   "compile_error", "exited_early"]
    assert [t["status"] for t in results[1].info["tests"]] == ["ok", "wrong", "ok", "wrong"]
    assert all(r.info["isolation"] in ("full", "landlock", "portable") for r in results if r.info["reason"] != "compile_error")


def test_all_or_nothing_and_bad_tests():
    with CodeVerifier(all_or_nothing=True, workers=1) as v:
        tests = {"entry_point": "f", "calls": [{"args": [1], "expected": 1}, {"args": [2], "expected": 4}]}
        assert v("def f(x): return x\n", {"tests": tests}).score == 0.0
        assert v("def f(x): return x * x\n", {"tests": tests}).score == 1.0
        bad = v("def f(x): return x\n", {"tests": {"entry_point": "f"}})
        assert bad.score == 0.0 and bad.info["reason"] == "bad_tests"


def test_stdio_cases_each_run_fresh(verifier):
    tests = {"cases": [{"input": f"{k}\n", "output": f"{k + 1}\n"} for k in range(3)]}
    prog = "import os\nopen('state', 'a').write('x')\nn = len(open('state').read())\nprint(int(input()) + n)\n"
    assert verifier.verify_program(prog, tests).score == 1.0  # a fresh scratch directory per case


def test_registered_as_code():
    v = get_verifier("code", timeout=1.0, workers=1)
    try:
        assert isinstance(v, CodeVerifier) and v.limits.timeout == 1.0
    finally:
        v.close()


# ------------------------------------------------------------------ command line
def _cli(tmp_path, program: str, tests: dict, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "solution.py").write_text(program)
    (tmp_path / "tests.json").write_text(json.dumps(tests))
    return subprocess.run([sys.executable, "-m", "verifiers.code", "--program", str(tmp_path / "solution.py"),
                           "--tests", str(tmp_path / "tests.json"), *extra],
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_one_json_line(tmp_path):
    tests = {"entry_point": "add", "calls": [{"args": [1, 2], "expected": 3}],
             "asserts": ["assert add(1, 2) == 3", "assert add(2, 2) == 5"]}
    proc = _cli(tmp_path, "def add(a, b):\n    return a + b\n", tests)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["passed"] == 2 and out["total"] == 3 and out["reason"] == "wrong"
    assert out["reward"] == pytest.approx(2 / 3) and out["isolation"] in ("full", "landlock", "portable")
    proc = _cli(tmp_path, "print(sum(map(int, input().split())))\n",
                {"cases": [{"input": "1 2\n", "output": "3\n"}]}, "--isolation", "portable")
    out = json.loads(proc.stdout)
    assert out["reward"] == 1.0 and out["isolation"] == "portable"


def test_cli_rejects_missing_files(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "verifiers.code", "--program", str(tmp_path / "nope.py"),
                           "--tests", str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "error" in proc.stderr


# ------------------------------------------------------------------ data
def test_mbpp_loader_on_a_local_file(tmp_path, verifier):
    records = [
        {"task_id": 1, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
         "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "test_setup_code": ""},
        {"task_id": 2, "text": "Find the shared elements.",
         "code": "def similar(a, b):\n    return tuple(set(a) & set(b))",
         "test_list": ["assert set(similar((3, 4, 5), (5, 4, 9))) == set((4, 5))"], "test_setup_code": ""},
        {"task_id": 3, "text": "Untestable", "code": "def g(): pass", "test_list": ["assert g() == h()"],
         "test_setup_code": ""},
    ]
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    rows, skipped = load_code_rows(path)
    assert skipped == 1 and [r["entry_point"] for r in rows] == ["add", "similar"]
    assert "assert add(1, 2) == 3" in rows[0]["prompt"]
    scores = [verifier(f"```python\n{rec['code']}\n```", row).score for rec, row in zip(records, rows)]
    assert scores == [1.0, 1.0]


def test_humaneval_loader_renames_candidate(tmp_path, verifier):
    rec = {"task_id": "HumanEval/0", "prompt": "def inc(x):\n    \"\"\"x + 1\"\"\"\n", "entry_point": "inc",
           "canonical_solution": "    return x + 1\n",
           "test": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n"}
    import datasets
    rows, skipped = load_code_rows(datasets.Dataset.from_list([rec]), schema="humaneval")
    assert skipped == 0 and json.loads(rows[0]["tests"])["asserts"] == ["assert inc(1) == 2", "assert inc(-1) == 0"]
    assert verifier(rec["canonical_solution"], rows[0]).score == 1.0


def test_toy_code_task_rows_are_seeded_and_solvable(verifier):
    rows = toy_code_rows(6, seed=3)
    assert rows == toy_code_rows(6, seed=3)
    results = verifier.verify_batch([r["answer"] for r in rows] + ["0"] * 6, rows + rows)
    assert [r.score for r in results[:6]] == [1.0] * 6
    assert all(r.score < 1.0 for r in results[6:])
