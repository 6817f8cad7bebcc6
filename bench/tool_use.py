"""Benchmark of tool use: the python tool's cost per call (and of notebook replay), and a summary of
a tool run against its no-tool baseline.

    python bench/tool_use.py calls [--calls 40]
    python bench/tool_use.py runs RUN_DIR_TOOL RUN_DIR_BASELINE

``calls`` times one batch of calls of the sandboxed python tool with 0, 1 and 3 earlier cells to
replay (notebook state is kept by replaying a completion's earlier cells in a fresh sandboxed
process), one call at a time and as one batch. ``runs`` reads two run directories (summary.json,
metrics.jsonl) and prints accuracy before/after, the tool call rate over training and the mean
step time of each, and their ratio. Figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verifrl.tools import ToolCall, build_tool  # noqa: E402

CELL = "x{i} = {i} * 37 + 25"


def bench_calls(calls: int) -> None:
    tool = build_tool("python")
    try:
        tool.run_batch([ToolCall("1")])  # start the sandbox workers
        for history in (0, 1, 3):
            cells = [CELL.format(i=i) for i in range(history)]
            one = []
            for i in range(calls):
                start = time.perf_counter()
                tool.run_batch([ToolCall(f"{i} * 48 + 1", list(cells))])
                one.append(time.perf_counter() - start)
            start = time.perf_counter()
            tool.run_batch([ToolCall(f"{i} * 48 + 1", list(cells)) for i in range(calls)])
            batch = (time.perf_counter() - start) / calls
            print(f"{history} earlier cells: one call {1000 * statistics.median(one):6.1f} ms (median)   "
                  f"in a batch of {calls}: {1000 * batch:6.1f} ms per call   (sandbox level {tool.pool.level})")
    finally:
        tool.close()


def _steps(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("step", -1) >= 0 and "time/step" in r]


def bench_runs(tool_run: Path, baseline_run: Path) -> None:
    times = {}
    for label, run in (("tool", tool_run), ("no-tool", baseline_run)):
        summary = json.loads((run / "summary.json").read_text())
        steps = _steps(run)
        times[label] = statistics.mean(r["time/step"] for r in steps)
        before, after = summary["eval_before"] or {}, summary["eval_after"]
        line = (f"{label:8} greedy accuracy {before.get('accuracy', float('nan')):.1%} -> {after['accuracy']:.1%}  "
                f"mean step {times[label]:.2f} s over {len(steps)} steps  wall {summary['wall_seconds']:.0f} s")
        if "tool_calls_per_completion" in after:
            tenth = max(1, len(steps) // 10)
            early = statistics.mean(r["tool/call_rate"] for r in steps[:tenth])
            late = statistics.mean(r["tool/call_rate"] for r in steps[-tenth:])
            line += (f"\n         greedy tool calls/completion {before.get('tool_calls_per_completion', 0):.2f} -> "
                     f"{after['tool_calls_per_completion']:.2f}; sampled call rate first/last tenth of training "
                     f"{early:.1%} -> {late:.1%}; time in tools {statistics.mean(r['time/tools'] for r in steps):.2f}"
                     f" s a step")
        print(line)
    print(f"step time ratio tool / no-tool: {times['tool'] / times['no-tool']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    calls = sub.add_parser("calls")
    calls.add_argument("--calls", type=int, default=40)
    runs = sub.add_parser("runs")
    runs.add_argument("tool_run", type=Path)
    runs.add_argument("baseline_run", type=Path)
    args = parser.parse_args()
    if args.command == "calls":
        bench_calls(args.calls)
    else:
        bench_runs(args.tool_run, args.baseline_run)


if __name__ == "__main__":
    main()
