"""A pool of zygote workers that run sandboxed programs concurrently.

Place: between :class:`verifiers.code.CodeVerifier` (which builds :class:`Run` requests and
judges the outputs) and ``sandbox/zygote.py`` (which executes them). One zygote pair per slot
(a test zygote and the candidate zygote it forked at start-up), each slot a separate
``python -I -S`` process with an empty environment in its own session; a thread per slot feeds
it one run at a time. The pool stays warm across batches: the zygotes start once and serve every
later run. A zygote that stops answering (or dies) is killed and replaced, and its run reported
as a sandbox error, so a hung or crashed program never stalls the pool.

The lower-level entry point, for callers that just want a program run in the sandbox (the
``python`` tool, the command line): ``pool.run_one(Run("stdio", source, stdin=b"..."))`` ->
:class:`RunResult` with ``exit``, ``signal``, ``timed_out``, ``output_limit``, ``stdout``,
``stderr``.

Isolation levels, strongest first (see docs/sandbox.md):

- ``full``:      rlimits + user/pid/net/mount/ipc/uts namespaces + Landlock + seccomp
- ``landlock``:  rlimits + Landlock + seccomp (no namespaces: e.g. containers without userns)
- ``portable``:  rlimits, new session, process-group kill and subreaper cleanup only
"""

from __future__ import annotations

import base64
import json
import logging
import os
import platform
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("verifiers.code")

ZYGOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox", "zygote.py")
LEVELS: dict[str, tuple[str, ...]] = {
    "full": ("rlimits", "namespaces", "landlock", "seccomp"),
    "landlock": ("rlimits", "landlock", "seccomp"),
    "portable": ("rlimits",),
}


class SandboxUnavailable(RuntimeError):
    """The requested isolation level cannot be had on this machine."""


@dataclass
class Limits:
    """Per-run resource limits."""

    timeout: float = 5.0  # wall-clock seconds for the whole run
    call_timeout: float = 2.0  # per function call (best effort inside the child)
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # largest file the program may write
    disk_mb: int = 64  # tmpfs size of the scratch directory (full level)
    max_output_bytes: int = 4 << 20  # stdout and result channel, each
    nofile: int = 64
    nproc: int = 32  # enforced inside a user namespace or for a non-root uid only


@dataclass
class Run:
    """One sandboxed execution request.

    ``stdio``: run ``source`` with ``stdin``, capture stdout/stderr/exit status (candidate process only).
    ``function``: ``test`` (the test side's job, see ``sandbox/testside.py``) runs in a test process
    that calls ``source``'s functions in a separate candidate process. ``judge``: ``test`` (a special
    judge and outputs) runs in a test process alone. The candidate's process gets ``source`` only.
    """

    mode: str  # "stdio" | "function" | "judge"
    source: str = ""
    stdin: bytes = b""
    test: dict | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass
class RunResult:
    exit: int | None = None
    signal: int | None = None
    timed_out: bool = False
    output_limit: bool = False
    wall: float = 0.0
    stdout: bytes = b""
    stderr: bytes = b""
    channel: bytes = b""  # the test process's result lines
    error: str | None = None  # the sandbox itself failed: never a pass
    cancelled: bool = False  # stopped because the test side was done (function mode)
    candidate: "RunResult | None" = None  # function mode: the candidate process, beside the test process

    @classmethod
    def from_report(cls, report: dict | None) -> "RunResult | None":
        if report is None:
            return None
        if "error" in report:
            return cls(error=str(report["error"]))
        return cls(exit=report["exit"], signal=report["signal"], timed_out=report["timed_out"],
                   output_limit=report["output_limit"], wall=report["wall"], cancelled=report["cancelled"],
                   stdout=base64.b64decode(report["stdout_b64"]), stderr=base64.b64decode(report["stderr_b64"]),
                   channel=base64.b64decode(report["channel_b64"]))


def choose_layers(requested: str, available: list[str], machine: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Pick the isolation level: ``auto`` = the strongest available, loudly warned when weak.

    The seccomp filter is written for x86-64. On another architecture (``machine``, default this
    one's) ``full`` and ``landlock`` run without it, with a one-line warning saying so, rather than
    dropping to ``portable`` and losing namespaces and Landlock too.
    """
    machine = machine or platform.machine()
    levels = LEVELS
    if "seccomp" not in available and machine not in ("x86_64", "AMD64"):
        levels = {name: tuple(layer for layer in layers if layer != "seccomp") for name, layers in LEVELS.items()}
    if requested != "auto":
        if requested not in levels:
            raise ValueError(f"unknown isolation level {requested!r}; choose auto, {', '.join(LEVELS)}")
        missing = [layer for layer in levels[requested] if layer not in available]
        if missing:
            raise SandboxUnavailable(f"isolation {requested!r} needs {missing}, this machine offers {available}")
        _warn_without_seccomp(requested, levels, machine)
        return requested, levels[requested]
    for level, layers in levels.items():
        if all(layer in available for layer in layers):
            if level == "portable":
                log.warning("code sandbox: only the PORTABLE level (rlimits) is available here: no "
                            "file-system, network or signal isolation. Programs can read and damage "
                            "anything this user can. Do not train on untrusted code like this.")
            elif level != "full":
                log.warning("code sandbox: no user namespaces here; running at level %r", level)
            _warn_without_seccomp(level, levels, machine)
            return level, layers
    raise SandboxUnavailable(f"no isolation level works here (layers: {available})")


def _warn_without_seccomp(level: str, levels: dict[str, tuple[str, ...]], machine: str) -> None:
    if "seccomp" in LEVELS[level] and "seccomp" not in levels[level]:
        log.warning("code sandbox: level %r runs WITHOUT seccomp on %s (the filter is x86-64 only): "
                    "fork/exec, non-Unix sockets and ptrace are not refused by the kernel", level, machine)


class _Zygote:
    """One zygote process and the pipes to it; used by one thread at a time."""

    def __init__(self, tag: str) -> None:
        debug = os.environ.get("VERIFRL_SANDBOX_DEBUG")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", ZYGOTE, tag], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.DEVNULL, env={}, start_new_session=True, close_fds=True)
        self.hello = self._recv(60.0)
        if self.hello is None:
            self.kill()
            raise SandboxUnavailable("the sandbox zygote did not start")

    def _recv(self, timeout: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        buf = b""
        need = 4
        length = None
        while len(buf) < need:
            remaining = end - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, need - len(buf))
            if not chunk:
                return None
            buf += chunk
            if length is None and len(buf) == 4:
                length = struct.unpack(">I", buf)[0]
                need, buf = length, b""
                if need == 0:
                    break
        return json.loads(buf)

    def request(self, job: dict, timeout: float) -> dict | None:
        data = json.dumps(job).encode()
        try:
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self._recv(timeout)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # EOF: the zygote leaves its loop
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class SandboxPool:
    """``size`` zygotes running :class:`Run` requests concurrently at one isolation level."""

    def __init__(self, size: int = 0, isolation: str = "auto") -> None:
        self.size = size or max(1, os.cpu_count() or 1)
        self.tag = f"verifrl-sandbox-{uuid.uuid4().hex[:12]}"  # visible in every sandbox process's cmdline
        self._idle: queue.Queue[_Zygote] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        first = _Zygote(self.tag)
        self.available: list[str] = first.hello["layers"]
        self.level, self.layers = choose_layers(isolation, self.available)
        log.info("code sandbox: isolation level %r (layers %s; this machine offers %s), %d workers",
                 self.level, "+".join(self.layers), "+".join(self.available), self.size)
        self._idle.put(first)
        for _ in range(self.size - 1):
            self._idle.put(_Zygote(self.tag))
        self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="sandbox")

    def worker_pids(self) -> list[int]:
        """The pids of the idle zygotes (test and candidate zygote of each slot)."""
        return [pid for z in list(self._idle.queue) for pid in (z.proc.pid, z.hello["candidate_zygote_pid"])]

    def _job(self, run: Run) -> dict:
        lim = run.limits
        test = None
        if run.test is not None:
            test = dict(run.test, timeout=lim.timeout, call_timeout=lim.call_timeout,
                        max_value_bytes=lim.max_output_bytes)
        return {
            "mode": run.mode, "source": run.source, "stdin_b64": base64.b64encode(run.stdin).decode(),
            "test": test, "layers": list(self.layers),
            "timeout": lim.timeout, "call_timeout": lim.call_timeout, "cpu": max(1, int(lim.timeout + 1)),
            "memory": lim.memory_mb << 20, "fsize": lim.file_mb << 20, "tmpfs": lim.disk_mb << 20,
            "max_output": lim.max_output_bytes, "max_value_bytes": lim.max_output_bytes,
            "nofile": lim.nofile, "nproc": lim.nproc,
        }

    def run_one(self, run: Run) -> RunResult:
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        zygote = self._idle.get()
        try:
            reply = zygote.request(self._job(run), run.limits.timeout + 20.0)
            if reply is None:  # dead or unresponsive zygote: replace it, never wait on it again
                zygote.kill()
                zygote = _Zygote(self.tag)
                return RunResult(error="sandbox worker died or stopped answering")
        finally:
            self._idle.put(zygote)
        if "error" in reply:
            return RunResult(error=str(reply["error"]))
        candidate = RunResult.from_report(reply.get("candidate"))
        if run.mode == "stdio":
            return candidate
        result = RunResult.from_report(reply["test"])
        result.candidate = candidate
        return result

    def run_many(self, runs: list[Run]) -> list[RunResult]:
        return list(self._executor.map(self.run_one, runs))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=True)
        while not self._idle.empty():
            self._idle.get().close()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
