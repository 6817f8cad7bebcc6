"""Benchmark of the code sandbox: per-run overhead and executions per second, per isolation level.

    python bench/code_sandbox.py [--runs 200] [--workers 2] [--levels full,landlock,portable]
    python bench/code_sandbox.py --compare-with /path/to/other/checkout [--rounds 5] [--runs 60]

A *trivial run* is ``def f(x): return x`` with one call, judged end to end by
:meth:`CodeVerifier.verify_batch` (parse, compile check, the test process and the candidate's
process forked from their zygotes, isolation of both, the call between them, parent-side
judging), so its latency is the sandbox's overhead per problem. Also timed per level: an
``asserts`` suite, HumanEval/0's own ``check(candidate)`` (7 asserts) and a stdin/stdout case,
and the throughput of a warm pool over a batch. For scale, the script also times a bare
``python -I -S -c pass`` subprocess (what a non-zygote sandbox pays before any isolation).

``--compare-with DIR`` times the trivial run at level ``full`` alternately with this checkout
and another one (e.g. ``git worktree add /tmp/before <commit>``), in rounds, so both see the
same machine load: on a shared machine only such paired figures are comparable.
Figures depend on the machine's load: run it on an idle machine for docs/code-verifier.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verifiers.code import LEVELS, CodeVerifier, SandboxUnavailable  # noqa: E402

TRIVIAL = {"tests": json.dumps({"entry_point": "f", "calls": [{"args": [1], "expected": 1}]})}
PROGRAM = "def f(x):\n    return x\n"
HUMANEVAL_0 = (
    "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
    "    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n"
    "            if idx != idx2:\n                distance = abs(elem - elem2)\n"
    "                if distance < threshold:\n                    return True\n\n    return False\n")
KINDS = {  # name -> (program, row)
    "trivial call": (PROGRAM, TRIVIAL),
    "3 asserts": (PROGRAM, {"tests": json.dumps({"entry_point": "f", "asserts": [
        "assert f(1) == 1", "assert f([2]) == [2]", "assert f('x') == 'x'"]})}),
    "HumanEval/0 check": (HUMANEVAL_0, {"tests": json.dumps({"entry_point": "has_close_elements", "test": (
        "def check(candidate):\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
        "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n"
        "    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True\n"
        "    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False\n"
        "    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True\n"
        "    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True\n"
        "    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False\n")})}),
    "stdin/stdout case": ("print(sum(map(int, input().split())))\n",
                          {"tests": json.dumps({"cases": [{"input": "1 2\n", "output": "3\n"}]})}),
}
# Timed in a subprocess against any checkout: uses only the API every version of the verifier has.
PAIRED = """
import json, statistics, sys, time
from verifiers.code import CodeVerifier
row = {"tests": json.dumps({"entry_point": "f", "calls": [{"args": [1], "expected": 1}]})}
with CodeVerifier(workers=1, isolation="full") as v:
    v.verify_batch(["def f(x):\\n    return x\\n"], [row])
    out = []
    for _ in range(int(sys.argv[1])):
        t = time.perf_counter()
        assert v.verify_batch(["def f(x):\\n    return x\\n"], [row])[0].score == 1.0
        out.append(time.perf_counter() - t)
with CodeVerifier(workers=2, isolation="full") as v:
    v.verify_batch(["def f(x):\\n    return x\\n"] * 2, [row] * 2)
    t = time.perf_counter()
    assert all(r.score == 1.0 for r in v.verify_batch(["def f(x):\\n    return x\\n"] * 100, [row] * 100))
    rate = 100 / (time.perf_counter() - t)
print(1000 * statistics.median(out), rate)
"""


def _ms(samples: list[float]) -> str:
    samples = sorted(samples)
    return f"median {1000 * statistics.median(samples):6.1f} ms  p90 {1000 * samples[int(0.9 * len(samples))]:6.1f} ms"


def bare_interpreter(runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        out.append(time.perf_counter() - t)
    return out


def latency(level: str, runs: int, program: str = PROGRAM, row: dict = TRIVIAL) -> list[float]:
    with CodeVerifier(workers=1, isolation=level) as v:
        v.verify_batch([program], [row])  # start the zygotes outside the timing
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            result = v.verify_batch([program], [row])[0]
            out.append(time.perf_counter() - t)
            assert result.score == 1.0, result.info
        return out


def throughput(level: str, runs: int, workers: int) -> float:
    with CodeVerifier(workers=workers, isolation=level) as v:
        v.verify_batch([PROGRAM] * workers, [TRIVIAL] * workers)
        t = time.perf_counter()
        results = v.verify_batch([PROGRAM] * runs, [TRIVIAL] * runs)
        elapsed = time.perf_counter() - t
        assert all(r.score == 1.0 for r in results)
        return runs / elapsed


def paired(other: str, rounds: int, runs: int) -> None:
    """Median trivial-run latency (level full) of this checkout and ``other``, alternating."""
    here = str(Path(__file__).resolve().parents[1])
    figures: dict[str, list[float]] = {here: [], other: []}
    rates: dict[str, list[float]] = {here: [], other: []}
    for _ in range(rounds):
        for tree in (other, here):
            env = dict(os.environ, PYTHONPATH=tree)
            out = subprocess.run([sys.executable, "-c", PAIRED, str(runs)], env=env, cwd=tree, check=True,
                                 capture_output=True, text=True).stdout
            latency_ms, rate = map(float, out.strip().splitlines()[-1].split())
            figures[tree].append(latency_ms)
            rates[tree].append(rate)
    for tree in (here, other):
        print(f"{tree}: trivial run (full) 1 worker: median of round medians {statistics.median(figures[tree]):6.1f} ms "
              f"({', '.join(f'{v:.1f}' for v in figures[tree])}) | 2 workers: {statistics.median(rates[tree]):5.0f} "
              f"execs/s ({', '.join(f'{v:.0f}' for v in rates[tree])})")
    print(f"ratio this / other: latency {statistics.median(figures[here]) / statistics.median(figures[other]):.2f}, "
          f"throughput {statistics.median(rates[here]) / statistics.median(rates[other]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--levels", default=",".join(LEVELS), help="comma-separated isolation levels")
    parser.add_argument("--compare-with", help="another checkout to time alternately (level full, trivial run)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (CPUs: {os.cpu_count()})")
    if args.compare_with:
        paired(args.compare_with, args.rounds, args.runs)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return
    print(f"bare `python -I -S -c pass` subprocess: {_ms(bare_interpreter(min(args.runs, 50)))}")
    for level in args.levels.split(","):
        try:
            lat = latency(level, args.runs)
            rate = throughput(level, args.runs * 2, args.workers)
        except SandboxUnavailable as err:
            print(f"{level:9s} unavailable: {err}")
            continue
        print(f"{level:9s} trivial run, 1 worker: {_ms(lat)} | {args.workers} workers: {rate:6.0f} execs/s")
        for name, (program, row) in KINDS.items():
            if name != "trivial call":
                print(f"{level:9s}   {name:18s} 1 worker: {_ms(latency(level, max(args.runs // 4, 10), program, row))}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
