"""Code tasks for :mod:`verifiers.code`: MBPP/HumanEval loaders and the toy one-line-function task.

Place in the data flow: **prompts** (rows with ``prompt`` and ``tests``) -> rollouts -> the
``code`` verifier, which reads ``example["tests"]`` (a JSON string of the suite, see
:mod:`verifiers.code.spec`) and optional ``example["code_prefix"]``.

- :func:`mbpp_rows`: MBPP rows (``text``/``prompt``, ``code``, ``test_list``,
  ``test_setup_code``) -> our rows; the entry point is the function the asserts call.
- :func:`humaneval_rows`: HumanEval rows (``prompt``, ``entry_point``, ``test`` with
  ``check(candidate)``) -> our rows, asserts rewritten to call the entry point.
- :func:`load_code_rows`: either of them from a local JSON/JSONL file or a ``datasets.Dataset``.
- :func:`toy_code_rows`: seeded one-line arithmetic functions (``def f(x): return 3 * x + 2``).
- ``python -m verifrl.tasks.code mbpp IN.jsonl OUT_DIR``: writes ``OUT_DIR/{train,test}.jsonl`` that the
  ``json`` data source of a recipe reads (``question_field: prompt``, ``answer_field: tests``).

Every assert is parsed by the verifier's own :func:`verifiers.code.spec.parse_assert`, so a row
is kept only if the sandbox can judge all of its tests; dropped rows are counted, not hidden.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
from pathlib import Path
from typing import Any, Iterable

from verifiers.code.spec import SpecError, parse_assert, parse_suite

MBPP_PROMPT = "{text}\nYour code should pass these tests:\n\n{tests}\n\nWrite the function in a ```python code block."


def _called_function(assert_text: str) -> str | None:
    """Name of the first function called inside an assert (MBPP has no entry_point column)."""
    try:
        tree = ast.parse(assert_text.strip())
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in (
                "set", "sorted", "list", "tuple", "abs", "isclose", "len", "frozenset", "str", "int", "float"):
            return node.func.id
    return None


def _judgeable(asserts: list[str]) -> bool:
    try:
        for text in asserts:
            parse_assert(text)
    except SpecError:
        return False
    return bool(asserts)


def mbpp_rows(records: Iterable[dict]) -> tuple[list[dict], int]:
    """MBPP-schema records -> (rows, number skipped because a test cannot be judged safely)."""
    rows, skipped = [], 0
    for rec in records:
        asserts = list(rec.get("test_list") or [])
        entry = _called_function(asserts[0]) if asserts else None
        if not entry or not _judgeable(asserts) or rec.get("test_setup_code", "").strip():
            skipped += 1
            continue
        text = rec.get("text") or rec.get("prompt") or ""
        tests = {"entry_point": entry, "asserts": asserts}
        rows.append({"task_id": str(rec.get("task_id", len(rows))), "entry_point": entry,
                     "prompt": MBPP_PROMPT.format(text=text.strip(), tests="\n".join(asserts)),
                     "tests": json.dumps(tests), "reference": rec.get("code", "")})
    return rows, skipped


class _RenameCandidate(ast.NodeTransformer):
    def __init__(self, entry: str) -> None:
        self.entry = entry

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(self.entry, node.ctx), node) if node.id == "candidate" else node


def humaneval_rows(records: Iterable[dict]) -> tuple[list[dict], int]:
    """HumanEval-schema records -> rows whose program is ``prompt`` + completion (``code_prefix``)."""
    rows, skipped = [], 0
    for rec in records:
        entry = rec["entry_point"]
        try:
            tree = ast.parse(rec["test"])
        except SyntaxError:
            skipped += 1
            continue
        asserts = [ast.unparse(_RenameCandidate(entry).visit(node)) for node in ast.walk(tree)
                   if isinstance(node, ast.Assert)]
        if not _judgeable(asserts):
            skipped += 1
            continue
        rows.append({"task_id": rec["task_id"], "entry_point": entry, "prompt": rec["prompt"],
                     "code_prefix": rec["prompt"], "tests": json.dumps({"entry_point": entry, "asserts": asserts}),
                     "reference": rec.get("canonical_solution", "")})
    return rows, skipped


def _records(source: Any) -> list[dict]:
    if hasattr(source, "column_names"):  # a datasets.Dataset
        return [dict(source[i]) for i in range(len(source))]
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    return data if isinstance(data, list) else list(data.values())


def load_code_rows(source: Any, schema: str = "mbpp") -> tuple[list[dict], int]:
    """Rows from a local .json/.jsonl file or a ``datasets.Dataset`` in the MBPP or HumanEval schema."""
    if schema not in ("mbpp", "humaneval"):
        raise ValueError(f"schema must be 'mbpp' or 'humaneval', not {schema!r}")
    records = _records(source)
    return mbpp_rows(records) if schema == "mbpp" else humaneval_rows(records)


# ----------------------------------------------------------------------------- toy task

_OPS = ("+", "-", "*")


def toy_code_rows(n: int, seed: int = 0) -> list[dict]:
    """One-line arithmetic functions ``f(x) = a op1 x op2 b``, tested on five inputs.

    The prompt ends inside the function (``code_prefix``), so a completion is just the expression;
    ``answer`` holds the reference expression for inspection.
    """
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        op1, op2 = rng.choice(_OPS), rng.choice(_OPS)
        expr = f"{a} {op1} x {op2} {b}"
        xs = rng.sample(range(-20, 21), 5)
        calls = [{"args": [x], "expected": eval(expr, {"x": x})} for x in xs]  # our own arithmetic only
        prefix = "def f(x):\n    return "
        rows.append({"task_id": f"toy-{seed}-{k}", "entry_point": "f",
                     "prompt": f"Complete f so that f(x) = {expr}.\n{prefix}",
                     "question": f"Complete f so that f(x) = {expr}.\n{prefix}",
                     "code_prefix": prefix, "answer": expr,
                     "tests": json.dumps({"entry_point": "f", "calls": calls})})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifrl.tasks.code",
                                     description="Convert MBPP/HumanEval files into train/test JSONL for the code recipe")
    parser.add_argument("schema", choices=["mbpp", "humaneval", "toy"])
    parser.add_argument("input", help="input .json/.jsonl (ignored for toy)")
    parser.add_argument("output_dir")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num", type=int, default=2000, help="rows to generate (toy)")
    args = parser.parse_args(argv)
    if args.schema == "toy":
        rows, skipped = toy_code_rows(args.num, args.seed), 0
    else:
        rows, skipped = load_code_rows(args.input, args.schema)
    for row in rows:
        parse_suite(row["tests"])  # fail here, not in the middle of a training run
    random.Random(args.seed).shuffle(rows)
    n_test = max(1, int(len(rows) * args.test_fraction))
    out = Path(args.output_dir)
    write_jsonl(rows[n_test:], out / "train.jsonl")
    write_jsonl(rows[:n_test], out / "test.jsonl")
    print(f"{len(rows) - n_test} train / {n_test} test rows in {out} ({skipped} skipped: tests not judgeable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
