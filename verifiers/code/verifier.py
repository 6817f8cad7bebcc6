"""``CodeVerifier``: completion + dataset row -> reward from unit tests run in the sandbox.

Place: the ``"code"`` verifier of the registry (:mod:`verifiers.base`). Data flow per completion:
extract the program (last fenced python block) -> parse the row's tests into named units
(:mod:`.spec`) -> compile-check in the parent -> run in the sandbox pool (:mod:`.pool`): the
suite in a test process, the program in a separate candidate process, calls between them as
plain data -> per-unit results, judged in the parent where the expected value lives there
(structured calls, stdout) -> reward = passed share.

Dataset row schema: ``example["tests"]`` holds the suite (a dict or a JSON string, see
:mod:`verifiers.code.spec`); an optional ``example["code_prefix"]`` is prepended to the extracted
program (HumanEval-style completions that continue a given signature).

The verdict never depends on what the candidate's process claims: not its exit status, not
marker strings, not files it wrote. A unit passes only when the test process reported it passed
(or, for a structured call, the value it relayed equals the expectation held here); a unit with
no report (early exit, crash, timeout) fails. A stdin/stdout case passes only on exit status 0
*and* matching output (or the special judge's yes).

Per-test ``status``: ok, wrong (an assert failed / a value or output differs), runtime_error (the
candidate raised; detail names the exception), timeout, killed (the candidate's process died by
a signal), exited_early (it exited), not_plain_data (it returned something else than plain
data), output_limit, test_error (the suite itself failed), sandbox_error; compile_error and
no_program for every unit of a program that never ran; ``reason`` is the most severe status,
or bad_tests for a malformed suite.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from dataclasses import asdict
from typing import Any

from verifiers.base import VerifyResult, register
from verifiers.code.compare import DecodeError, decode, judge, stdout_matches
from verifiers.code.pool import Limits, Run, RunResult, SandboxPool
from verifiers.code.spec import SpecError, Suite, parse_suite

DEFAULT_PATTERN = r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```"
# most severe first: the reason reported when several tests fail for different causes
_SEVERITY = ("sandbox_error", "test_error", "timeout", "output_limit", "killed", "exited_early", "runtime_error",
             "not_plain_data", "wrong")
_LOAD = "the program failed to load"


def extract_program(completion: str, pattern: str = DEFAULT_PATTERN, fallback: str = "whole") -> str | None:
    """The last fenced code block; without one, the text before any closing fence ("whole") or None."""
    blocks = re.findall(pattern, completion, flags=re.DOTALL)
    if blocks:
        return blocks[-1]
    if fallback == "whole":
        # a prompt that ends in an opening fence gets a completion that ends with the closing one
        text = completion.split("```", 1)[0]
        return text if text.strip() else None
    return None


def _test_result(test: str, status: str, detail: str = "") -> dict:
    return {"test": test, "passed": status == "ok", "status": status, "detail": detail}


def _tail(data: bytes, keep: int = 500) -> str:
    return data[-keep:].decode("utf-8", "replace")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _result_lines(res: RunResult) -> dict[int, tuple[str, str, Any]]:
    """The test process's per-unit lines: unit -> (status, detail, tagged value); the first line wins."""
    out: dict[int, tuple[str, str, Any]] = {}
    for line in res.channel.decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
            unit, status, detail = rec["u"], rec["s"], rec.get("d", "")
        except (ValueError, KeyError, TypeError):
            continue
        if type(unit) is int and type(status) is str and unit not in out:
            out[unit] = (status, str(detail)[:300], rec.get("v"))
    return out


@register("code")
class CodeVerifier:
    """Sandboxed unit-test reward: the fraction of tests passed (or all-or-nothing).

    Options (recipe ``kwargs``): ``timeout`` (wall seconds per program run, per stdio case),
    ``call_timeout`` (per function call), ``memory_mb``, ``file_mb``, ``disk_mb``,
    ``max_output_bytes``, ``all_or_nothing``, ``pattern`` (regex whose last match is the program),
    ``fallback`` ("whole" | "none"), ``workers`` (0 = one per CPU), ``isolation``
    ("auto" | "full" | "landlock" | "portable").
    """

    def __init__(self, timeout: float = 5.0, call_timeout: float = 2.0, memory_mb: int = 1024,
                 file_mb: int = 16, disk_mb: int = 64, max_output_bytes: int = 4 << 20,
                 all_or_nothing: bool = False, pattern: str = DEFAULT_PATTERN, fallback: str = "whole",
                 workers: int = 0, isolation: str = "auto") -> None:
        if fallback not in ("whole", "none"):
            raise ValueError(f"fallback must be 'whole' or 'none', not {fallback!r}")
        self.limits = Limits(timeout=timeout, call_timeout=call_timeout, memory_mb=memory_mb, file_mb=file_mb,
                             disk_mb=disk_mb, max_output_bytes=max_output_bytes)
        self.all_or_nothing = all_or_nothing
        self.pattern, self.fallback = pattern, fallback
        self.workers, self.requested_isolation = workers, isolation
        self._pool: SandboxPool | None = None
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------------ pool
    @property
    def pool(self) -> SandboxPool:
        """Started on first use, so building a verifier from a recipe costs nothing."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = SandboxPool(self.workers, self.requested_isolation)
            return self._pool

    @property
    def isolation(self) -> str:
        return self.pool.level

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> "CodeVerifier":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ scoring
    def __call__(self, completion: str, example: dict) -> VerifyResult:
        return self.verify_batch([completion], [example])[0]

    def verify_program(self, program: str, tests: dict | str) -> VerifyResult:
        """Judge a program as is (no extraction): the command line's entry point."""
        return self._verify([(program, tests)])[0]

    def verify_programs(self, items: list[tuple[str, dict | str]]) -> list[VerifyResult]:
        """Judge (program, tests) pairs as is, concurrently on the pool."""
        return self._verify(list(items))

    def verify_batch(self, completions: list[str], examples: list[dict]) -> list[VerifyResult]:
        if len(completions) != len(examples):
            raise ValueError(f"{len(completions)} completions but {len(examples)} examples")
        items: list[tuple[str | None, Any]] = []
        for completion, example in zip(completions, examples):
            program = extract_program(completion, self.pattern, self.fallback)
            if program is not None:
                program = example.get("code_prefix", "") + program
            items.append((program, example.get("tests")))
        return self._verify(items)

    def _verify(self, items: list[tuple[str | None, Any]]) -> list[VerifyResult]:
        results: list[VerifyResult | None] = [None] * len(items)
        plans: list[tuple[int, Suite, list[Run]]] = []
        for i, (program, tests) in enumerate(items):
            try:
                suite = parse_suite(tests)
            except SpecError as err:
                results[i] = self._result([], "bad_tests", error=str(err))
                continue
            if program is None:
                results[i] = self._result([_test_result(t, "no_program") for t in suite.names], "no_program")
                continue
            try:
                compile(program, "<solution>", "exec")
            except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
                tests_ = [_test_result(t, "compile_error") for t in suite.names]
                results[i] = self._result(tests_, "compile_error", error=f"{type(err).__name__}: {err}")
                continue
            plans.append((i, suite, self._runs(program, suite)))
        flat = [run for _, _, runs in plans for run in runs]
        outputs = iter(self.pool.run_many(flat) if flat else [])
        judged = [(i, suite, [next(outputs) for _ in runs]) for i, suite, runs in plans]
        checker_verdicts = self._special_judge([(suite, got) for _, suite, got in judged])
        for (i, suite, got), verdicts in zip(judged, checker_verdicts):
            if suite.kind == "function":
                tests_ = self._judge_function(suite, got[0])
                candidate = got[0].candidate or RunResult()
                extra = {"stderr": _tail(candidate.stderr), "test_stderr": _tail(got[0].stderr),
                         "load_error": next((t["detail"] for t in tests_ if t["detail"].startswith(_LOAD)), None)}
            else:
                tests_ = [self._judge_case(case, res, verdict)
                          for case, res, verdict in zip(suite.cases, got, verdicts)]
                extra = {"stderr": _tail(b"".join(r.stderr for r in got))}
            results[i] = self._result(tests_, None, **{k: v for k, v in extra.items() if v})
        return results  # type: ignore[return-value]

    def _runs(self, program: str, suite: Suite) -> list[Run]:
        if suite.kind == "function":
            return [Run("function", program, test=suite.test_job, limits=self.limits)]
        return [Run("stdio", program, stdin=case.input.encode(), limits=self.limits) for case in suite.cases]

    def _special_judge(self, judged: list[tuple[Suite, list[RunResult]]]) -> list[list[dict | None]]:
        """Run each stdio suite's checker on the outputs of its cleanly finished cases (one test process each)."""
        verdicts: list[list[dict | None]] = [[None] * len(got) for _, got in judged]
        runs, where = [], []
        for n, (suite, got) in enumerate(judged):
            if suite.kind != "stdio" or suite.checker is None:
                continue
            ran = [k for k, res in enumerate(got) if self._failure(res) is None and res.exit == 0]
            if not ran:
                continue
            cases = [{"input": suite.cases[k].input, "output": got[k].stdout.decode("utf-8", "replace"),
                      "expected": suite.cases[k].output} for k in ran]
            runs.append(Run("judge", test={"checker": suite.checker, "cases": cases}, limits=self.limits))
            where.append((n, ran))
        for res, (n, ran) in zip(self.pool.run_many(runs) if runs else [], where):
            lines = _result_lines(res)
            for j, k in enumerate(ran):
                status, detail, _ = lines.get(j) or (self._failure(res) or "test_error", "the checker gave no verdict", None)
                verdicts[n][k] = {"status": status, "detail": detail}
        return verdicts

    @staticmethod
    def _failure(res: RunResult) -> str | None:
        """Why a run as a whole failed, or None when it ended normally."""
        if res.error is not None:
            return "sandbox_error"
        if res.timed_out or res.signal == signal.SIGXCPU:
            return "timeout"
        if res.output_limit:
            return "output_limit"
        return None

    @staticmethod
    def _candidate_gone(res: RunResult) -> tuple[str, str]:
        """Why the candidate's process stopped answering, from its supervisor's report."""
        cand = res.candidate
        if cand is None or cand.error is not None:
            return "sandbox_error", "no report from the candidate's sandbox"
        if cand.timed_out or cand.signal == signal.SIGXCPU:
            return "timeout", "the candidate process ran out of time"
        if cand.signal is not None:
            return "killed", f"the candidate process was killed by {signal.Signals(cand.signal).name}"
        return "exited_early", f"the candidate process exited with status {cand.exit}"

    def _judge_function(self, suite: Suite, res: RunResult) -> list[dict]:
        lines = _result_lines(res)
        missing = self._failure(res) or "test_error"
        why = {"timeout": "the run's time limit was reached first", "sandbox_error": res.error or "",
               "output_limit": "the output limit was reached"}.get(missing, "the test process ended early")
        out = []
        for k, unit in enumerate(suite.units):
            if k not in lines:
                out.append(_test_result(unit.name, missing, why))
                continue
            status, detail, value = lines[k]
            if status == "candidate_gone":
                status, detail = self._candidate_gone(res)
            elif status == "ok" and unit.expect is not None:
                try:
                    actual = decode(value)
                except DecodeError as err:
                    status, detail = "not_plain_data", str(err)
                else:
                    if not judge(actual, unit.expect):
                        status, detail = "wrong", f"returned {_shown(actual)}"
            out.append(_test_result(unit.name, status, detail))
        return out

    def _judge_case(self, case, res: RunResult, verdict: dict | None = None) -> dict:
        name = f"input {case.input[:40]!r}"
        failure = self._failure(res)
        if failure:
            return _test_result(name, failure)
        if res.signal is not None:
            return _test_result(name, "killed", f"killed by {signal.Signals(res.signal).name}")
        if res.exit != 0:
            return _test_result(name, "runtime_error", f"exit status {res.exit}")
        if verdict is not None:
            return _test_result(name, verdict["status"], verdict["detail"])
        ok = stdout_matches(res.stdout.decode("utf-8", "replace"), case.output, case.float_tol)
        return _test_result(name, "ok" if ok else "wrong", "" if ok else "output differs")

    def _result(self, tests: list[dict], reason: str | None, **extra: Any) -> VerifyResult:
        passed, total = sum(t["passed"] for t in tests), len(tests)
        if reason is None:
            statuses = {t["status"] for t in tests}
            reason = "ok" if passed == total and total else next(
                (s for s in _SEVERITY if s in statuses), "wrong")
        if self.all_or_nothing:
            score = 1.0 if total and passed == total else 0.0
        else:
            score = passed / total if total else 0.0
        info = {"reason": reason, "passed": passed, "total": total, "tests": tests,
                "isolation": self._pool.level if self._pool else None, **extra}
        return VerifyResult(score=score, info=info)

    def describe(self) -> dict:
        """Options in force, for logs and the command line."""
        return {"limits": asdict(self.limits), "all_or_nothing": self.all_or_nothing,
                "isolation": self.pool.level, "layers": list(self.pool.layers)}
