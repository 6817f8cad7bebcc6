"""What runs in the candidate's sandboxed process, after isolation: the program and nothing of the tests.

Place: imported by the zygote (stdlib only). This process never receives an expected value or a
line of test code; it gets the program and, in function mode, call requests (function name and
plain-data arguments) from the test process over a dedicated pipe pair, and answers each with a
plain-data value, an exception type, or a refusal. The program can rewrite anything in here (the
encoder, the framing, the builtins): it can then only send malformed or made-up answers, which
the test process rebuilds strictly or counts as failed tests. Its stdout is not the channel.

- stdio mode: the program runs as ``__main__`` with stdin attached; the supervisor reads stdout.
- function mode: the program is executed into a module ``__solution__``; then :func:`serve`
  answers ``{"fn", "a", "k"}`` requests until the test process closes the pipe.

Replies: ``{"v": tagged}`` | ``{"raise": builtin exception name, "msg": str}`` |
``{"timeout": true}`` | ``{"bad": why}`` (the value is not plain data); the first frame is
``{"ok": true, "names": [callable top-level names]}`` or ``{"ok": false, "error": "Type: msg"}``.
"""

from __future__ import annotations

import builtins
import signal
import sys
import traceback
import types

import values


class _CallTimeout(BaseException):
    """Raised by SIGALRM when a call overruns; the test process also stops waiting on its own."""


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


def _builtin_exception_name(exc: BaseException) -> str:
    """The nearest builtin exception class of ``exc`` (a custom ``class E(ValueError)`` -> ValueError)."""
    for cls in type(exc).__mro__:
        if getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return "Exception"


def _resolve(ns: dict, name: str):
    """A top-level function, or a method of ``Solution()`` (LeetCode / LiveCodeBench style)."""
    if name in ns:
        return ns[name]
    solution = ns.get("Solution")
    if isinstance(solution, type) and hasattr(solution, name):
        return getattr(solution(), name)
    raise NameError(f"name {name!r} is not defined")


def serve(source: str, req_fd: int, rep_fd: int, call_timeout: float, max_bytes: int) -> None:
    """Load the program, announce its names, then answer calls until the test side hangs up."""
    write_frame, read_frame, loads, encode, decode = (values.write_frame, values.read_frame, values.loads,
                                                      values.encode, values.decode)
    ns = _module("__solution__")
    try:
        exec(compile(source, "<solution>", "exec"), ns)
    except BaseException as exc:
        write_frame(rep_fd, {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
        return
    names = [k for k, v in list(ns.items()) if type(k) is str and not k.startswith("__") and callable(v)]
    write_frame(rep_fd, {"ok": True, "names": names[:1000]})
    signal.signal(signal.SIGALRM, _on_alarm)
    while True:
        try:
            request = loads(read_frame(req_fd, 1 << 30))
        except (values.ChannelClosed, values.NotPlainData):
            return
        try:
            signal.setitimer(signal.ITIMER_REAL, call_timeout)
            try:
                fn = _resolve(ns, request["fn"])
                value = fn(*decode(request["a"]), **decode(request["k"]))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _CallTimeout:
            reply = {"timeout": True}
        except BaseException as exc:
            try:
                msg = str(exc)[:300] if type(exc).__str__ is BaseException.__str__ else ""
            except BaseException:
                msg = ""
            reply = {"raise": _builtin_exception_name(exc), "msg": msg}
        else:
            try:
                reply = {"v": encode(value)}
            except values.NotPlainData as err:
                reply = {"bad": str(err)[:200]}
            except BaseException as exc:  # e.g. MemoryError while encoding
                reply = {"bad": f"{type(exc).__name__} while encoding"}
        try:
            try:
                write_frame(rep_fd, reply, max_bytes=max_bytes)
            except values.NotPlainData as err:  # too large
                write_frame(rep_fd, {"bad": str(err)[:200]})
        except values.ChannelClosed:
            return
