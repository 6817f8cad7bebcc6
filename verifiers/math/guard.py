"""Time and memory bounds for symbolic checks: persistent worker processes with deadlines.

Place: between :mod:`verifier` (main process, no sympy) and :mod:`core` (sympy, unbounded).

Why a process and not a signal: ``signal.alarm`` only works in the main thread of a POSIX
process, cancels alarms the host program set, and cannot interrupt long C-level calls. A worker
process can always be killed. To avoid paying a process start per check, a worker is started once
(lazily, via ``python -m verifiers.math.worker``, so it never re-imports the host's ``__main__``)
and serves many checks over a pipe; only a check that runs past its deadline costs a kill and a
restart (the replacement starts immediately, in the background). The worker caps its own address
space (``RLIMIT_AS``, policy ``max_memory_mb``) on POSIX, so a memory bomb raises MemoryError
there instead of swapping the machine. The reader thread + queue makes the deadline wait portable
(works in any thread, on Windows, under any multiprocessing start method).

Workers are per host process (keyed by pid, so a forked child never shares its parent's pipes)
and shut down at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

STARTUP_TIMEOUT = 60.0


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [pkg_root] + [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # sympy should not grab every core of the machine in the worker
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class Worker:
    """One persistent checking process; one request at a time (guarded by a lock)."""

    def __init__(self, max_memory_mb: int) -> None:
        self.max_memory_mb = max_memory_mb
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.ready = False
        self.lock = threading.Lock()
        self.restarts = 0

    def _start(self) -> None:
        self.lines = queue.Queue()
        self.ready = False
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "verifiers.math.worker", str(self.max_memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=_child_env(), text=True, encoding="utf-8", bufsize=1)
        out, lines = self.proc.stdout, self.lines

        def pump() -> None:
            for line in out:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True, name="math-worker-reader").start()

    def _ensure(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        if not self.ready:
            line = self.lines.get(timeout=STARTUP_TIMEOUT)
            if line is None or line.strip() != "ready":
                self.kill()
                raise RuntimeError("math worker failed to start")
            self.ready = True

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        self.ready = False
        if proc is not None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass

    def check(self, pred: str, gold: str, policy: dict[str, Any], timeout: float) -> tuple[bool, str]:
        with self.lock:
            try:
                self._ensure()
            except (queue.Empty, RuntimeError, OSError):
                self.kill()
                return False, "worker_error"
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"pred": pred, "gold": gold, "policy": policy}) + "\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):
                self.kill()
                return False, "worker_error"
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                line = "timeout"
            if line is None or line == "timeout":
                self.kill()
                self.restarts += 1
                self._start()  # the replacement imports while the caller moves on
                return False, "timeout" if line == "timeout" else "worker_crash"
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                self.kill()
                return False, "worker_error"
            return bool(reply["equal"]), str(reply["reason"])


class WorkerPool:
    """``size`` workers; ``map`` spreads checks over them from as many driver threads."""

    def __init__(self, size: int, max_memory_mb: int) -> None:
        self.workers = [Worker(max_memory_mb) for _ in range(max(1, size))]
        self.free: queue.Queue[Worker] = queue.Queue()
        for w in self.workers:
            self.free.put(w)

    def check(self, pred: str, gold: str, policy: dict[str, Any], timeout: float) -> tuple[bool, str]:
        w = self.free.get()
        try:
            return w.check(pred, gold, policy, timeout)
        finally:
            self.free.put(w)

    def map(self, jobs: list[tuple[str, str]], policy: dict[str, Any], timeout: float,
            parallel: int) -> list[tuple[bool, str]]:
        n = max(1, min(parallel, len(self.workers), len(jobs)))
        if n == 1:
            return [self.check(p, g, policy, timeout) for p, g in jobs]
        with ThreadPoolExecutor(n, thread_name_prefix="math-verify") as ex:
            return list(ex.map(lambda pg: self.check(pg[0], pg[1], policy, timeout), jobs))

    def close(self) -> None:
        for w in self.workers:
            with w.lock:
                w.kill()


_POOLS: dict[tuple[int, int, int], WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def get_pool(size: int, max_memory_mb: int) -> WorkerPool:
    key = (os.getpid(), size, max_memory_mb)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = WorkerPool(size, max_memory_mb)
        return pool


def close_pools() -> None:
    with _POOLS_LOCK:
        mine = [k for k in _POOLS if k[0] == os.getpid()]
        for k in mine:
            _POOLS.pop(k).close()


atexit.register(close_pools)
