"""The zygote: a clean, warm interpreter that forks one sandboxed run per request.

Place: started by :class:`verifiers.code.pool.SandboxPool` as ``python -I -S zygote.py <tag>``
with an empty environment, so it holds no secrets, no dataset and no expected values -- only
the program and test *inputs* of the request in hand. It speaks length-prefixed JSON on the
pipes it was started with (its own stdin/stdout, moved to private fds at start-up).

Per request it forks a **supervisor** (trusted code), which enters the namespaces when they are
in force and forks the **candidate** process; the candidate applies rlimits, Landlock and seccomp
before executing a single byte of the program. The supervisor enforces the wall-clock deadline,
caps the captured output, kills the candidate (its whole pid namespace, or its process group plus
every orphan it left, collected as child subreaper) and reports raw outputs back. The zygote
itself is also a child subreaper, removes the scratch directory and kills anything still alive
after each run, so nothing outlives a request even if the supervisor was killed.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import isolation  # noqa: E402

# Modules candidates commonly import: loaded once here, so the import is free after each fork.
for _name in ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
              "random", "operator", "copy", "fractions", "decimal", "statistics", "typing", "array"):
    __import__(_name)

STDERR_KEEP = 16 * 1024
CHANNEL_FD = 3


def _send(fd: int, obj: dict) -> None:
    data = json.dumps(obj).encode()
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _recv(fd: int) -> dict | None:
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _readonly_paths() -> list[str]:
    paths = {sys.base_prefix, sys.prefix, "/usr/lib", "/usr/lib64", "/lib", "/lib64",
             "/usr/share/zoneinfo", "/dev/null", "/dev/zero", "/dev/urandom"}
    return sorted(paths)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def kill_descendants(timeout: float = 5.0) -> None:
    """SIGKILL every child of this (subreaper) process until none is left, reaping them.

    Orphans of killed processes are re-parented to us, hence the loop.
    """
    end = time.monotonic() + timeout
    while True:
        for kid in _children(os.getpid()):
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            return
        if time.monotonic() > end:
            return
        time.sleep(0.001)


# --------------------------------------------------------------------------- candidate process

def _candidate(job: dict, scratch: str, fds: tuple[int, int, int, int]) -> None:
    """Runs in the forked candidate process; never returns."""
    try:
        os.setsid()
        isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(CHANNEL_FD + 1, 1 << 16)  # above all: the zygote's pipes to the trainer
        os.chdir(scratch)
        os.environ.clear()
        os.environ.update(HOME=scratch, TMPDIR=scratch, PATH="/usr/bin:/bin", LANG="C.UTF-8")
        tempfile.tempdir = scratch
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write raises instead of killing
        layers = job["layers"]
        isolation.apply_rlimits(job["memory"], job["cpu"], job["fsize"], job["nofile"], job["nproc"])
        if "landlock" in layers:
            isolation.apply_landlock(_readonly_paths(), [scratch])
        if "seccomp" in layers:
            isolation.apply_seccomp()
    except BaseException as exc:
        os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
        os._exit(125)
    if job["mode"] == "stdio":
        os._exit(harness.run_stdio(job["source"]))
    harness.run_function(job["source"], job["probes"], job["secret"], CHANNEL_FD, job["call_timeout"])
    os._exit(0)


# --------------------------------------------------------------------------- supervisor process

def _stdin_fd(data: bytes) -> int:
    fd = os.memfd_create("stdin", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _supervise(job: dict, scratch: str) -> dict:
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    namespaces = "namespaces" in job["layers"]
    if namespaces:
        isolation.enter_namespaces(scratch, job["tmpfs"])
    else:
        isolation.prctl(isolation.PR_SET_CHILD_SUBREAPER, 1)
    stdin = _stdin_fd(base64.b64decode(job.get("stdin_b64", "")))
    pipes = [os.pipe() for _ in range(3)]  # stdout, stderr, channel
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _candidate(job, scratch, (stdin, pipes[0][1], pipes[1][1], pipes[2][1]))
    os.close(stdin)
    for _, w in pipes:
        os.close(w)
    pidfd = os.pidfd_open(pid)
    readers = {pipes[0][0]: "stdout", pipes[1][0]: "stderr", pipes[2][0]: "channel"}
    bufs = {"stdout": bytearray(), "stderr": bytearray(), "channel": bytearray()}
    cap = job["max_output"]
    deadline = start + job["timeout"]
    timed_out = output_limit = False

    def take(fd: int, chunk: bytes) -> bool:
        """Store a chunk; False once the stdout/channel cap is exceeded."""
        name = readers[fd]
        buf = bufs[name]
        if name == "stderr":
            buf += chunk[: max(0, STDERR_KEEP - len(buf))]
            return True
        buf += chunk
        return len(buf) <= cap

    exited = False
    while not exited and not output_limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(list(readers) + [pidfd], [], [], remaining)
        for fd in ready:
            if fd == pidfd:
                exited = True
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                del readers[fd]
                os.close(fd)
            elif not take(fd, chunk):
                output_limit = True
    wall = time.monotonic() - start
    for target in (pid, -pid):  # the candidate (pid 1 of its namespace), then its process group
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
    if not namespaces:
        kill_descendants()
    for fd in list(readers):  # whatever is still buffered in the pipes; all writers are dead now
        os.set_blocking(fd, False)
        try:
            while (chunk := os.read(fd, 1 << 16)) and take(fd, chunk):
                pass
            if chunk:
                output_limit = True
        except BlockingIOError:
            pass
        os.close(fd)
    return {
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "timed_out": timed_out,
        "output_limit": output_limit,
        "wall": wall,
        "stdout_b64": base64.b64encode(bytes(bufs["stdout"][:cap])).decode(),
        "stderr_b64": base64.b64encode(bytes(bufs["stderr"])).decode(),
        "channel_b64": base64.b64encode(bytes(bufs["channel"][:cap])).decode(),
    }


# --------------------------------------------------------------------------- zygote loop

def _run(job: dict, private_fds: tuple[int, int], scratch_base: str, tag: str) -> dict:
    scratch = tempfile.mkdtemp(prefix=f"{tag}-", dir=scratch_base)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        for fd in private_fds:
            os.close(fd)
        try:
            result = _supervise(job, scratch)
        except BaseException as exc:
            result = {"error": f"supervisor failed: {exc!r}"}
        data = json.dumps(result).encode()
        while data:
            data = data[os.write(w, data):]
        os._exit(0)
    os.close(w)
    # Backstop only: the supervisor has its own deadline; this catches a supervisor the candidate
    # managed to stop or kill (possible at the portable level, where they share a uid).
    backstop = time.monotonic() + job["timeout"] + 10.0
    data = bytearray()
    while True:
        remaining = backstop - time.monotonic()
        ready = select.select([r], [], [], max(remaining, 0))[0] if remaining > 0 else []
        if not ready:
            break
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        data += chunk
    os.close(r)
    kill_descendants()
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        return json.loads(data)
    except ValueError:
        return {"error": "the supervisor died without a report (killed by the candidate?)"}


def main() -> None:
    # Move the request/reply pipes off fds 0/1 so nothing forked later inherits them by accident.
    req, rep = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    isolation.prctl(isolation.PR_SET_CHILD_SUBREAPER, 1)
    # the pool's tag names our scratch directories, so leftovers can be traced to a pool
    tag = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].replace("-", "").isalnum() else "verifrl-sbx"
    scratch_base = tempfile.gettempdir()
    layers = isolation.probe_layers(scratch_base)
    _send(rep, {"hello": True, "layers": layers, "landlock_abi": isolation.landlock_abi(),
                "pid": os.getpid(), "python": sys.version.split()[0]})
    while (job := _recv(req)) is not None:
        _send(rep, _run(job, (req, rep), scratch_base, tag))


if __name__ == "__main__":
    main()
