"""Command line: run one program against one test file and print one JSON line.

    python -m verifiers.code --program solution.py --tests tests.json [--isolation auto]

Output: ``{"reward", "passed", "total", "reason", "isolation", "layers", "tests", ...}``. The
program file is run as is (no code-block extraction unless ``--extract``). Exit status 0 whenever
a verdict was reached (whatever the reward), 2 on bad arguments or an unreadable test file.
"""

from __future__ import annotations

import argparse
import json
import sys

from verifiers.code.verifier import CodeVerifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifiers.code", description=__doc__.split("\n\n")[0])
    parser.add_argument("--program", required=True, help="Python source file to judge")
    parser.add_argument("--tests", required=True, help="tests.json: function calls/asserts or stdio cases")
    parser.add_argument("--timeout", type=float, default=5.0, help="wall seconds per run (default 5)")
    parser.add_argument("--call-timeout", type=float, default=2.0, help="seconds per function call")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address-space limit (default 1024)")
    parser.add_argument("--isolation", default="auto", choices=["auto", "full", "landlock", "portable"])
    parser.add_argument("--all-or-nothing", action="store_true", help="reward 1 only when every test passes")
    parser.add_argument("--extract", action="store_true", help="take the last ```python block of the file")
    args = parser.parse_args(argv)
    try:
        with open(args.program, encoding="utf-8", errors="replace") as f:
            program = f.read()
        with open(args.tests, encoding="utf-8") as f:
            tests = json.load(f)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verifier = CodeVerifier(timeout=args.timeout, call_timeout=args.call_timeout, memory_mb=args.memory_mb,
                            all_or_nothing=args.all_or_nothing, isolation=args.isolation, workers=1)
    try:
        if args.extract:
            result = verifier(program, {"tests": tests})
        else:
            result = verifier.verify_program(program, tests)
        info = result.info
        print(json.dumps({"reward": result.score, "passed": info["passed"], "total": info["total"],
                          "reason": info["reason"], "isolation": verifier.isolation,
                          "layers": list(verifier.pool.layers), "tests": info["tests"],
                          **({"error": info["error"]} if "error" in info else {})}))
    finally:
        verifier.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
