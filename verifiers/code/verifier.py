"""``CodeVerifier``: completion + dataset row -> reward from unit tests run in the sandbox.

Place: the ``"code"`` verifier of the registry (:mod:`verifiers.base`). Data flow per completion:
extract the program (last fenced python block) -> parse the row's tests (:mod:`.spec`) into
probes (sent) and expectations (kept) -> compile-check in the parent -> run in the sandbox pool
(:mod:`.pool`) -> judge outputs in the parent (:mod:`.compare`).

Dataset row schema: ``example["tests"]`` holds the suite (a dict or a JSON string, see
:mod:`verifiers.code.spec`); an optional ``example["code_prefix"]`` is prepended to the extracted
program (HumanEval-style completions that continue a given signature).

The verdict never depends on what the child claims: not its exit status (function tests), not
marker strings, not files it wrote. A function test passes only when a frame for it arrived and
the value rebuilt in the parent equals the hidden expectation; a test with no frame (early exit,
crash, timeout) fails. A stdin/stdout case passes only on exit status 0 *and* matching output.
"""

from __future__ import annotations

import json
import re
import secrets
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
_SEVERITY = ("sandbox_error", "timeout", "output_limit", "runtime_error", "exited_early", "wrong")


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


def _test_result(test: str, status: str) -> dict:
    return {"test": test, "passed": status == "ok", "status": status}


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
            except (SpecError, KeyError, TypeError) as err:
                results[i] = self._result([], "bad_tests", error=str(err))
                continue
            if program is None:
                results[i] = self._result([_test_result(t, "no_program") for t in self._names(suite)], "no_program")
                continue
            try:
                compile(program, "<solution>", "exec")
            except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
                tests_ = [_test_result(t, "compile_error") for t in self._names(suite)]
                results[i] = self._result(tests_, "compile_error", error=f"{type(err).__name__}: {err}")
                continue
            plans.append((i, suite, self._runs(program, suite)))
        flat = [run for _, _, runs in plans for run in runs]
        outputs = iter(self.pool.run_many(flat) if flat else [])
        for i, suite, runs in plans:
            got = [next(outputs) for _ in runs]
            if suite.kind == "function":
                tests_ = self._judge_function(suite, runs[0], got[0])
            else:
                tests_ = [self._judge_case(case, res) for case, res in zip(suite.cases, got)]
            stderr = b"".join(r.stderr for r in got)[-500:].decode("utf-8", "replace")
            extra = {"stderr": stderr}
            if suite.kind == "function":
                extra["load_error"] = self._load_error(runs[0], got[0])
            results[i] = self._result(tests_, None, **{k: v for k, v in extra.items() if v})
        return results  # type: ignore[return-value]

    @staticmethod
    def _names(suite: Suite) -> list[str]:
        if suite.kind == "function":
            return [c.source for c in suite.checks]
        return [f"case {k}" for k in range(len(suite.cases))]

    def _runs(self, program: str, suite: Suite) -> list[Run]:
        if suite.kind == "function":
            return [Run("function", program, probes=[c.probe for c in suite.checks],
                        secret=secrets.token_hex(16), limits=self.limits)]
        return [Run("stdio", program, stdin=case.input.encode(), limits=self.limits) for case in suite.cases]

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
    def _load_error(run: Run, res: RunResult) -> str | None:
        """The exception that stopped the program at import time, as the child reported it."""
        prefix = f"{run.secret}\tload\terror\t"
        for line in res.channel.decode("utf-8", "replace").splitlines():
            if line.startswith(prefix):
                try:
                    return str(json.loads(line[len(prefix):]))[:300]
                except ValueError:
                    return None
        return None

    def _judge_function(self, suite: Suite, run: Run, res: RunResult) -> list[dict]:
        frames: dict[int, tuple[str, str]] = {}
        load_error = None
        for line in res.channel.decode("utf-8", "replace").splitlines():
            parts = line.split("\t", 3)
            if len(parts) != 4 or parts[0] != run.secret:
                continue
            _, index, status, payload = parts
            if index == "load":
                load_error = load_error or payload
            elif index.isdigit() and int(index) < len(suite.checks):
                frames.setdefault(int(index), (status, payload))  # the first frame for a test counts
        missing = self._failure(res) or ("runtime_error" if load_error else "exited_early")
        out = []
        for k, check in enumerate(suite.checks):
            if k not in frames:
                out.append(_test_result(check.source, missing))
                continue
            status, payload = frames[k]
            if status == "ok":
                try:
                    ok = judge(decode(json.loads(payload)), check.expect)
                except (DecodeError, ValueError, TypeError, RecursionError):
                    ok = False
                out.append(_test_result(check.source, "ok" if ok else "wrong"))
            elif status == "timeout":
                out.append(_test_result(check.source, "timeout"))
            elif status == "error":
                out.append(_test_result(check.source, "runtime_error"))
            else:
                out.append(_test_result(check.source, "wrong"))
        return out

    def _judge_case(self, case, res: RunResult) -> dict:
        name = f"input {case.input[:40]!r}"
        failure = self._failure(res)
        if failure:
            return _test_result(name, failure)
        if res.signal is not None or res.exit != 0:
            return _test_result(name, "runtime_error")
        got = res.stdout.decode("utf-8", "replace")
        return _test_result(name, "ok" if stdout_matches(got, case.output, case.float_tol) else "wrong")

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
