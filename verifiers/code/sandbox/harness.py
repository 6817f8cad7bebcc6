"""What runs inside the sandboxed process, after isolation and before/around the candidate's code.

Place: imported by the zygote (stdlib only). The harness never sees an expected value: it gets
the program and the *inputs* of each test, and sends back only *outputs*:

- stdio mode: the candidate runs as ``__main__`` with stdin already attached; the supervisor
  reads its stdout. The exit status is ``sys.exit``'s code (0 when it returns normally).
- function mode: the candidate is executed into a fresh namespace, then each probe (a call with
  JSON arguments, or an expression taken from an ``assert``) is evaluated and its value written
  as one frame ``<secret>\\t<index>\\t<status>\\t<payload>\\n`` on a dedicated fd. The payload is
  a tagged JSON encoding that accepts exact builtin types only, so an object with a forged
  ``__eq__`` (or an ``int`` subclass) cannot even be sent; the trusted parent rebuilds plain
  values from it and compares them. Tampering with this module from the candidate gains nothing:
  the child never holds the expected values, so it can only send guesses.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import signal
import sys
import traceback
import types

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000


class Unserialisable(Exception):
    pass


def encode(value: object) -> object:
    """Tagged JSON-ready form of a plain builtin value (exact types only, no subclasses)."""
    budget = [MAX_ITEMS]

    def enc(v: object, depth: int) -> object:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise Unserialisable("value too deep or too large")
        t = type(v)
        if v is None or t is bool or t is str:
            return v
        if t is int:
            return v if -(1 << 53) < v < (1 << 53) else {"I": hex(v)}
        if t is float:
            return v if math.isfinite(v) else {"f": repr(v)}
        if t is list:
            return [enc(x, depth + 1) for x in v]
        if t is tuple:
            return {"t": [enc(x, depth + 1) for x in v]}
        if t is set or t is frozenset:
            return {"s" if t is set else "F": [enc(x, depth + 1) for x in v]}
        if t is dict:
            return {"d": [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]}
        if t is bytes:
            return {"b": v.hex()}
        if t is complex:
            return {"c": [enc(v.real, depth + 1), enc(v.imag, depth + 1)]}
        raise Unserialisable(f"type {t.__name__} is not a plain builtin")

    return enc(value, 0)


class _CallTimeout(BaseException):
    """Raised by SIGALRM when one probe overruns (the supervisor's deadline is the real guard)."""


def _on_alarm(signum, frame):  # noqa: ARG001
    raise _CallTimeout()


def _module(name: str) -> dict:
    """A fresh module registered in sys.modules (dataclasses, pickle, typing look it up there)."""
    module = types.ModuleType(name)
    module.__dict__["__builtins__"] = builtins
    sys.modules[name] = module
    return module.__dict__


def run_stdio(source: str) -> int:
    """Run the program as __main__; return its exit status."""
    ns = _module("__main__")
    try:
        exec(compile(source, "<solution>", "exec"), ns)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code & 0xFF
        else:
            print(code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    else:
        status = 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    return status


def run_function(source: str, probes: list[dict], secret: str, channel_fd: int, call_timeout: float) -> None:
    """Execute the program, then each probe; one frame per probe on ``channel_fd``."""
    write, dumps = os.write, json.dumps  # bound now, before the candidate can rebind anything

    def emit(index: object, status: str, payload: object = None) -> None:
        line = f"{secret}\t{index}\t{status}\t{dumps(payload, allow_nan=False)}\n".encode()
        while line:
            line = line[write(channel_fd, line):]

    ns = _module("__solution__")
    try:
        exec(compile(source, "<solution>", "exec"), ns)
    except BaseException as exc:
        emit("load", "error", f"{type(exc).__name__}: {exc}"[:300])
        return
    signal.signal(signal.SIGALRM, _on_alarm)
    for index, probe in enumerate(probes):
        try:
            signal.setitimer(signal.ITIMER_REAL, call_timeout)
            try:
                if "expr" in probe:
                    value = eval(compile(probe["expr"], "<test>", "eval"), ns)
                else:
                    value = ns[probe["fn"]](*probe.get("args", []), **probe.get("kwargs", {}))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _CallTimeout:
            emit(index, "timeout")
            continue
        except BaseException as exc:
            emit(index, "error", type(exc).__name__)
            continue
        try:
            emit(index, "ok", encode(value))
        except BaseException as exc:
            emit(index, "unserialisable", type(exc).__name__)
