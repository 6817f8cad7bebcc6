"""Entry point of a checking worker process: ``python -m verifiers.math.worker MAX_MEMORY_MB``.

Place: started by :mod:`verifiers.math.guard`; reads one JSON request per line on stdin
(``{"pred", "gold", "policy"}``), answers one JSON line ``{"equal", "reason"}`` on stdout, and
exits when stdin closes (its host is gone). It prints ``ready`` once sympy is imported so that
start-up time is never charged to a check's deadline. Exceptions become ``reason="error"``;
running out of the address-space cap becomes ``reason="memory"``.
"""

from __future__ import annotations

import json
import sys


def _limit_memory(max_mb: int) -> None:
    try:
        import resource
    except ImportError:  # not POSIX: the deadline still bounds the check
        return
    limit = max_mb * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass


def main(argv: list[str]) -> int:
    max_mb = int(argv[1]) if len(argv) > 1 else 1024
    from verifiers.math.core import check
    from verifiers.math.policy import Policy

    _limit_memory(max_mb)
    policies: dict[str, Policy] = {}
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            key = json.dumps(req["policy"], sort_keys=True)
            policy = policies.get(key)
            if policy is None:
                policy = policies[key] = Policy(**req["policy"])
            equal, reason = check(req["pred"], req["gold"], policy)
        except MemoryError:
            equal, reason = False, "memory"
        except RecursionError:
            equal, reason = False, "unparseable"
        except Exception:  # noqa: BLE001 -- any failure of sympy on model text is a wrong answer
            equal, reason = False, "error"
        out.write(json.dumps({"equal": equal, "reason": reason}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
