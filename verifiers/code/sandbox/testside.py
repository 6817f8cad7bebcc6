"""What runs in the test process: the suite's own code, with the candidate reachable only by calls.

Place: imported by the zygote (stdlib only); runs sandboxed like the candidate, in a separate
process that never contains the candidate's code. The suite (MBPP asserts, HumanEval's
``check(candidate)``, ``setup`` code, pytest-style ``test_*`` functions, unittest ``TestCase``
classes, structured calls, a special judge) runs here; every name the tests use for the
candidate's functions is a :class:`CandidateFunction`, whose calls travel to the candidate's
process as plain data and come back as plain data rebuilt here (``values.decode``). So the
values the tests compare are always exact builtins built in this process: an always-equal object,
a ``str`` subclass, patched builtins or a frame peek stay in the other process.

Results go to the supervisor as JSON lines on fd 3, one per test unit:
``{"u": index, "s": status, "d": detail}`` (``"v"``: the tagged value, for structured calls that
the trusted parent judges itself). Statuses: ok, wrong, runtime_error (the candidate raised),
timeout, candidate_gone (its process ended), not_plain_data, test_error (the suite itself failed).
"""

from __future__ import annotations

import builtins
import inspect
import json
import os
import sys
import time
import types

import values


class CandidateFailure(BaseException):
    """A call of the candidate that produced no value: timeout, process gone, not plain data.

    A BaseException, so a suite's ``except Exception`` does not swallow it; and recorded by the
    link, so a unit during which one happened fails even if the suite swallowed it anyway.
    """

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class CandidateLink:
    """The test side of the pipe pair to the candidate's process."""

    def __init__(self, req_fd: int, rep_fd: int, call_timeout: float, max_bytes: int, deadline: float) -> None:
        self.req_fd, self.rep_fd = req_fd, rep_fd
        os.set_blocking(req_fd, False)  # a candidate that stops reading cannot block a large write
        self.call_timeout = call_timeout
        self.grace = max(0.5, 0.25 * call_timeout)  # the candidate's own alarm should answer first
        self.max_bytes, self.deadline = max_bytes, deadline
        self.failures: list[CandidateFailure] = []
        self.dead: CandidateFailure | None = None
        self.names: list[str] = []
        self.calls = 0

    def _die(self, status: str, detail: str) -> CandidateFailure:
        self.dead = CandidateFailure(status, detail)
        return self._fail(status, detail)

    def _fail(self, status: str, detail: str) -> CandidateFailure:
        failure = CandidateFailure(status, detail)
        self.failures.append(failure)
        return failure

    def _reply(self, deadline: float) -> dict:
        try:
            reply = values.loads(values.read_frame(self.rep_fd, self.max_bytes, deadline))
        except values.ChannelTimeout:
            raise self._die("timeout", "no answer from the candidate in time") from None
        except values.ChannelClosed:
            raise self._die("candidate_gone", "the candidate process ended") from None
        except values.NotPlainData as err:
            raise self._die("not_plain_data", str(err)) from None
        if type(reply) is not dict:
            raise self._die("not_plain_data", "malformed reply")
        return reply

    def hello(self) -> None:
        """Wait for the program to load; afterwards ``dead`` says why it cannot be called."""
        try:
            reply = self._reply(self.deadline)
        except CandidateFailure:
            self.failures.clear()
            return
        if reply.get("ok") is True and type(reply.get("names")) is list:
            self.names = [n for n in reply["names"] if type(n) is str and n.isidentifier()]
        else:
            error = reply.get("error")
            self.dead = CandidateFailure("runtime_error", f"the program failed to load: {error}"
                                         if type(error) is str else "the program failed to load")

    def call(self, name: str, args: tuple, kwargs: dict) -> object:
        if self.dead is not None:
            raise self._fail(self.dead.status, self.dead.detail)
        try:
            request = {"fn": name, "a": values.encode(tuple(args)), "k": values.encode(dict(kwargs))}
        except values.NotPlainData as err:
            raise self._fail("test_error", f"the test passes an argument that is not plain data ({err})") from None
        self.calls += 1
        deadline = min(time.monotonic() + self.call_timeout + self.grace, self.deadline)
        try:
            values.write_frame(self.req_fd, request, deadline)
        except values.ChannelTimeout:
            raise self._die("timeout", "the candidate stopped reading its calls") from None
        except values.ChannelClosed:
            raise self._die("candidate_gone", "the candidate process ended") from None
        reply = self._reply(deadline)
        if "v" in reply:
            try:
                return values.decode(reply["v"])
            except values.NotPlainData as err:
                raise self._fail("not_plain_data", str(err)) from None
        if reply.get("timeout") is True:
            raise self._fail("timeout", f"call exceeded {self.call_timeout:g} s")
        if type(reply.get("bad")) is str:
            raise self._fail("not_plain_data", reply["bad"][:200])
        if type(reply.get("raise")) is str:
            raise self._rebuilt_exception(reply["raise"], reply.get("msg"))
        raise self._die("not_plain_data", "malformed reply")

    def _rebuilt_exception(self, name: str, msg: object) -> BaseException:
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):  # SystemExit, KeyboardInterrupt...
            return self._fail("runtime_error", f"the candidate raised {name[:60]}")
        text = msg if type(msg) is str else ""
        try:
            exc = cls(text)
        except Exception:  # e.g. UnicodeDecodeError wants five arguments
            exc = cls.__new__(cls)
            exc.args = (text,)
        exc._verifrl_from_candidate = True
        return exc


class CandidateFunction:
    """Stands for one of the candidate's functions in the test namespace."""

    def __init__(self, link: CandidateLink, name: str) -> None:
        self._link, self.__name__ = link, name

    def __call__(self, *args, **kwargs):
        return self._link.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.__name__}>"


def classify(exc: BaseException) -> tuple[str, str]:
    """Status and detail for an exception that ended a test unit."""
    if isinstance(exc, CandidateFailure):
        return exc.status, exc.detail
    text = f"{type(exc).__name__}: {exc}"[:300]
    if getattr(exc, "_verifrl_from_candidate", False):
        return "runtime_error", f"the candidate raised {text}"
    if isinstance(exc, AssertionError):
        return "wrong", "assertion failed" + (f": {exc}"[:300] if str(exc) else "")
    return "wrong", f"the test raised {text}"


class Reporter:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sent: set[int] = set()

    def send(self, unit: int, status: str, detail: str = "", value: object = None) -> None:
        if unit in self.sent:
            return
        self.sent.add(unit)
        record = {"u": unit, "s": status, "d": detail}
        if value is not None:
            record["v"] = value
        data = (json.dumps(record) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]


class CheckRecorder:
    """``__verifrl__`` in the test namespace: the rewritten asserts of a ``check(candidate)`` suite.

    Every assert of the suite is a unit and is non-fatal; a unit fails at its first failing
    evaluation, and a candidate failure raised outside any assert fails the next assert evaluated.
    """

    def __init__(self, link: CandidateLink, report: Reporter, units: list[int]) -> None:
        self.link, self.report, self.units = link, report, units
        self.state: dict[int, str] = {}  # unit -> "ok" | "failed"
        self.seen = 0  # failures already attributed
        self.pending: CandidateFailure | None = None  # raised outside any assert, not yet attributed
        self.outside: CandidateFailure | None = None  # the first failure ever raised outside an assert

    def _take_failures(self) -> CandidateFailure | None:
        new = self.link.failures[self.seen:]
        self.seen = len(self.link.failures)
        return new[0] if new else None

    def fail(self, unit: int, status: str, detail: str) -> None:
        if self.state.get(unit) != "failed":
            self.state[unit] = "failed"
            self.report.send(unit, status, detail)

    def begin(self, unit: int) -> None:
        outside = self._take_failures()
        self.pending = self.pending or outside
        self.outside = self.outside or outside

    def end(self, unit: int, value: object) -> None:
        try:
            ok = bool(value)
        except BaseException as exc:
            return self.raised(unit, exc)
        failure = self._take_failures() or self.pending
        if failure is not None:
            self.pending = None
            return self.fail(unit, failure.status, failure.detail)
        if not ok:
            return self.fail(unit, "wrong", "assertion failed")
        self.state.setdefault(unit, "ok")

    def raised(self, unit: int, exc: BaseException) -> None:
        failure = self._take_failures()
        self.pending = None
        if failure is not None and not isinstance(exc, CandidateFailure) and \
                not getattr(exc, "_verifrl_from_candidate", False):
            exc = failure  # the suite swallowed a candidate failure, then failed on something else
        self.fail(unit, *classify(exc))

    def finish(self, abort: BaseException | None) -> None:
        """After ``check`` returned (abort None) or raised: settle every unit.

        An abort fails every unit not evaluated yet (or, if none is left, the last one): a check
        that would fail under HumanEval's own harness never earns full reward here. So does a
        candidate failure the suite swallowed outside any assert: control flow after it proves
        nothing, so the asserts it skipped fail too.
        """
        leftover = self._take_failures()
        self.outside = self.outside or leftover
        cause = classify(abort) if abort is not None else (
            (self.outside.status, self.outside.detail) if self.outside is not None else None)
        if cause is not None:
            status, detail = cause
            unevaluated = [u for u in self.units if u not in self.state]
            if abort is not None or leftover is not None or self.pending is not None:
                unevaluated = unevaluated or [u for u in self.units if self.state.get(u) != "failed"][-1:]
            for unit in unevaluated:
                self.fail(unit, status, f"not reached: {detail}" if unit not in self.state else detail)
        for unit in self.units:
            if self.state.get(unit) != "failed":
                self.report.send(unit, "ok")


def _namespace(job: dict, link: CandidateLink) -> dict:
    """The suite's globals: setup code, stand-ins for the candidate's functions, stdlib modules."""
    module = types.ModuleType("__test__")
    sys.modules["__test__"] = module
    ns = module.__dict__
    ns["__builtins__"] = builtins
    exec(compile(job.get("setup") or "", "<setup>", "exec"), ns)
    entry = job.get("entry_point")
    if entry:
        ns[entry] = CandidateFunction(link, entry)
        ns.setdefault("candidate", ns[entry])
    for name in job.get("free_names", []):
        if name in ns or hasattr(builtins, name):
            continue
        if name in sys.stdlib_module_names:
            try:
                ns[name] = __import__(name)
                continue
            except ImportError:
                pass
        if name in link.names:
            ns[name] = CandidateFunction(link, name)
    for mod_name in job.get("modules", []):  # `from solution import f`
        fake = types.ModuleType(mod_name)
        fake.__all__ = list(link.names)
        for name in set(link.names) | ({entry} if entry else set()):
            setattr(fake, name, CandidateFunction(link, name))
        sys.modules[mod_name] = fake
    return ns


def _run_unit(link: CandidateLink, report: Reporter, unit: int, fn) -> None:
    """Run one self-contained unit; any candidate failure during it fails it, swallowed or not."""
    mark = len(link.failures)
    try:
        value = fn()
    except BaseException as exc:
        report.send(unit, *classify(exc))
        return
    if len(link.failures) > mark:
        failure = link.failures[mark]
        report.send(unit, failure.status, failure.detail)
    elif value is not None:
        report.send(unit, "ok", value=value)
    else:
        report.send(unit, "ok")


def _pytest_function(ns: dict, unit: dict):
    def run():
        if unit.get("cls"):
            owner = ns[unit["cls"]]()
            if hasattr(owner, "setup_method"):
                owner.setup_method(None)
            fn = getattr(owner, unit["name"])
        else:
            fn = ns[unit["name"]]
        required = [p for p in inspect.signature(fn).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if required:
            raise CandidateFailure("test_error", f"pytest fixtures are not supported ({required[0].name})")
        fn()
    return run


def _unittest_method(ns: dict, unit: dict):
    def run():
        import unittest

        cls = ns[unit["cls"]]
        case = cls(unit["name"])
        cls.setUpClass()
        try:
            case.setUp()
            try:
                getattr(case, unit["name"])()
            finally:
                case.tearDown()
                case.doCleanups()
        except unittest.SkipTest:
            pass
        finally:
            cls.tearDownClass()
    return run


def run_function_suite(job: dict, channel_fd: int, req_fd: int, rep_fd: int) -> None:
    """Run every unit of the suite, reporting each on ``channel_fd``."""
    start = time.monotonic()
    report = Reporter(channel_fd)
    units = job["units"]
    link = CandidateLink(req_fd, rep_fd, job["call_timeout"], job["max_value_bytes"], start + job["timeout"])
    link.hello()
    try:
        ns = _namespace(job, link)
    except BaseException as exc:
        for k in range(len(units)):
            report.send(k, "test_error", f"setup failed: {type(exc).__name__}: {exc}"[:300])
        return
    for k, unit in enumerate(units):
        if unit["kind"] == "call":
            fn = CandidateFunction(link, unit["fn"])
            _run_unit(link, report, k, lambda fn=fn, u=unit: values.encode(fn(*u["args"], **u["kwargs"])))
        elif unit["kind"] == "code":
            code = compile(unit["source"], "<test>", "exec")
            _run_unit(link, report, k, lambda code=code: exec(code, ns))
    check_units = [k for k, u in enumerate(units) if u["kind"] == "check_assert"]
    recorder = CheckRecorder(link, report, check_units)
    ns["__verifrl__"] = recorder
    if job.get("test"):
        try:
            exec(compile(job["test"], "<test>", "exec"), ns)
        except BaseException as exc:
            for k, unit in enumerate(units):
                if unit["kind"] != "call" and unit["kind"] != "code":
                    report.send(k, "test_error", f"the test code failed: {type(exc).__name__}: {exc}"[:300])
            return
    if check_units:
        abort = None
        try:
            ns["check"](ns.get("candidate", CandidateFunction(link, job.get("entry_point") or "candidate")))
        except BaseException as exc:
            abort = exc
        recorder.finish(abort)
    for k, unit in enumerate(units):
        if unit["kind"] == "pytest":
            _run_unit(link, report, k, _pytest_function(ns, unit))
        elif unit["kind"] == "unittest":
            _run_unit(link, report, k, _unittest_method(ns, unit))


def run_judge(job: dict, channel_fd: int) -> None:
    """Special judge: ``check(input, output, expected)`` on each stdin/stdout case's output."""
    report = Reporter(channel_fd)
    cases = job["cases"]
    try:
        ns = {"__builtins__": builtins, "__name__": "__checker__"}
        exec(compile(job["checker"], "<checker>", "exec"), ns)
        check = ns["check"]
    except BaseException as exc:
        for k in range(len(cases)):
            report.send(k, "test_error", f"the checker failed to load: {type(exc).__name__}: {exc}"[:300])
        return
    for k, case in enumerate(cases):
        try:
            ok = bool(check(case["input"], case["output"], case["expected"]))
        except BaseException as exc:
            report.send(k, *classify(exc))
            continue
        report.send(k, "ok" if ok else "wrong", "" if ok else "the checker rejected the output")
