"""Benchmark of the code sandbox: per-run overhead and executions per second, per isolation level.

    python bench/code_sandbox.py [--runs 200] [--workers 2]

A *trivial run* is ``def f(x): return x`` with one call, judged end to end by
:meth:`CodeVerifier.verify_batch` (parse, compile check, zygote fork, isolation, run, parent-side
judging), so its latency is the sandbox's overhead per program. For scale, the script also times
a bare ``python -I -S -c pass`` subprocess (what a non-zygote sandbox pays before any isolation).
Figures depend on the machine's load: run it on an idle machine for docs/sandbox.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verifiers.code import LEVELS, CodeVerifier, SandboxUnavailable  # noqa: E402

TRIVIAL = {"tests": json.dumps({"entry_point": "f", "calls": [{"args": [1], "expected": 1}]})}
PROGRAM = "def f(x):\n    return x\n"


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


def latency(level: str, runs: int) -> list[float]:
    with CodeVerifier(workers=1, isolation=level) as v:
        v.verify_batch([PROGRAM], [TRIVIAL])  # start the zygote outside the timing
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            result = v.verify_batch([PROGRAM], [TRIVIAL])[0]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"bare `python -I -S -c pass` subprocess: {_ms(bare_interpreter(min(args.runs, 50)))}")
    for level in LEVELS:
        try:
            lat = latency(level, args.runs)
            rate = throughput(level, args.runs * 2, args.workers)
        except SandboxUnavailable as err:
            print(f"{level:9s} unavailable: {err}")
            continue
        print(f"{level:9s} trivial run, 1 worker: {_ms(lat)} | {args.workers} workers: {rate:6.0f} execs/s")


if __name__ == "__main__":
    main()
