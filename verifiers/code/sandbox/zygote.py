"""The zygotes: clean, warm interpreters that fork one sandboxed process per side of a run.

Place: started by :class:`verifiers.code.pool.SandboxPool` as ``python -I -S zygote.py <tag>``
with an empty environment. It speaks length-prefixed JSON on the pipes it was started with (its
own stdin/stdout, moved to private fds at start-up).

Two zygotes per slot, so that the candidate never shares memory with a test:

- the **test zygote** (this process) receives each job, tests included, and forks the *test*
  process (``testside.py``);
- the **candidate zygote**, forked from it at start-up *before any job was read*, receives only
  programs (and pipe ends, by SCM_RIGHTS) and forks the *candidate* process
  (``candidate.py``). Its memory never held a test or an expected value, so neither does any
  candidate forked from it, even as freed heap.

Each side is forked through a **supervisor** (trusted code): it enters the namespaces when they
are in force, forks the sandboxed process, which applies rlimits, Landlock and seccomp before
running anything else, enforces the wall-clock deadline, caps captured output, kills the process
(its whole pid namespace, or its process group plus every orphan, collected as child subreaper)
and reports raw outputs. In a function run the two processes talk over a pipe pair that nothing
else holds; the candidate's supervisor also watches an *alive* pipe held by the test side's
supervisor and kills the candidate as soon as the test side is done.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import sysconfig
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import candidate  # noqa: E402
import isolation  # noqa: E402
import testside  # noqa: E402

# Modules candidates and suites commonly import: loaded once here, so the import is free after a fork.
for _name in ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
              "random", "operator", "copy", "fractions", "decimal", "statistics", "typing", "array",
              "unittest", "inspect", "hashlib"):
    __import__(_name)

STDERR_KEEP = 16 * 1024
PRIVATE_FDS: list[int] = []  # this zygote's own channels: closed in everything it forks
SITE_PACKAGES = sysconfig.get_paths()["purelib"]  # test code may `import pytest`; candidates get stdlib only


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


def kill_descendants(timeout: float = 5.0, keep: int | None = None) -> None:
    """SIGKILL every child of this (subreaper) process but ``keep`` until none is left, reaping them.

    Orphans of killed processes are re-parented to us, hence the loop.
    """
    end = time.monotonic() + timeout
    while True:
        kids = [k for k in _children(os.getpid()) if k != keep]
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for kid in kids:
            try:
                os.waitpid(kid, 0)
            except ChildProcessError:
                pass
        if not kids or time.monotonic() > end:
            return


# --------------------------------------------------------------------------- sandboxed processes

def _isolate(job: dict, scratch: str, fds: list[int]) -> None:
    """In the freshly forked child: fds 0.. = ``fds``, scrubbed environment, then every layer."""
    os.setsid()
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 256) for fd in fds]  # first out of the way, so no target clobbers a source
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(len(fds), 1 << 16)  # above all: the zygote's pipes to the trainer
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


def _candidate_main(job: dict) -> None:
    """The candidate process: fd 0 stdin, 1 stdout, 2 stderr; in function mode 3 = calls in, 4 = replies out."""
    if job["mode"] == "stdio":
        os._exit(candidate.run_stdio(job["source"]))
    candidate.serve(job["source"], 3, 4, job["call_timeout"], job["max_value_bytes"])
    os._exit(0)


def _test_main(job: dict) -> None:
    """The test process: fd 3 = results out; in function mode 4 = calls out, 5 = replies in."""
    sys.path.append(SITE_PACKAGES)
    if job["mode"] == "judge":
        testside.run_judge(job["test"], 3)
    else:
        testside.run_function_suite(job["test"], 3, 4, 5)
    os._exit(0)


# --------------------------------------------------------------------------- supervisor process

def _memfd(data: bytes) -> int:
    fd = os.memfd_create("stdin", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _supervise(job: dict, scratch: str, role: str, link: list[int], watch: int | None) -> dict:
    """Fork the sandboxed process of ``role`` ("candidate" | "test"), watch it, report raw outputs.

    ``link``: the pipe ends it gets as fds 3.. (besides the results pipe of the test side);
    ``watch``: a pipe read end whose hang-up means "the other side is done, stop now".
    """
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    namespaces = "namespaces" in job["layers"]
    if namespaces:
        isolation.enter_namespaces(scratch, job["tmpfs"])
    else:
        isolation.prctl(isolation.PR_SET_CHILD_SUBREAPER, 1)
    devnull = os.open(os.devnull, os.O_RDWR)
    capture_stdout = role == "candidate" and job["mode"] == "stdio"
    stdin = _memfd(base64.b64decode(job.get("stdin_b64", ""))) if capture_stdout else devnull
    out = os.pipe() if capture_stdout else None
    err = os.pipe()
    chan = os.pipe() if role == "test" else None
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            fds = [stdin, out[1] if out else devnull, err[1]]
            fds += ([chan[1]] if chan else []) + link
            _isolate(job, scratch, fds)
        except BaseException as exc:
            os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
            os._exit(125)
        if role == "candidate":
            _candidate_main(job)
        _test_main(job)
    for fd in [stdin, devnull, err[1]] + ([out[1]] if out else []) + ([chan[1]] if chan else []) + link:
        try:
            os.close(fd)
        except OSError:
            pass
    pidfd = os.pidfd_open(pid)
    readers = {err[0]: "stderr"}
    if out:
        readers[out[0]] = "stdout"
    if chan:
        readers[chan[0]] = "channel"
    bufs = {"stdout": bytearray(), "stderr": bytearray(), "channel": bytearray()}
    cap = job["max_output"]
    deadline = start + job["timeout"] + (0.5 if role == "candidate" else 0.0)
    timed_out = output_limit = cancelled = False
    poller = select.poll()
    for fd in readers:
        poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    if watch is not None:
        poller.register(watch, 0)  # only POLLHUP: the test side's supervisor has exited

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
    while not exited and not output_limit and not cancelled:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, _ in poller.poll(remaining * 1000):
            if fd == pidfd:
                exited = True
            elif fd == watch:
                cancelled = True
            elif fd in readers:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    del readers[fd]
                    os.close(fd)
                elif not take(fd, chunk):
                    output_limit = True
    wall = time.monotonic() - start
    for target in (pid, -pid):  # the process (pid 1 of its namespace), then its process group
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
        "signal": _own_death_signal(status, exited, cancelled),
        "timed_out": timed_out,
        "output_limit": output_limit,
        "cancelled": cancelled,
        "wall": wall,
        "stdout_b64": base64.b64encode(bytes(bufs["stdout"][:cap])).decode(),
        "stderr_b64": base64.b64encode(bytes(bufs["stderr"])).decode(),
        "channel_b64": base64.b64encode(bytes(bufs["channel"][:cap])).decode(),
    }


def _own_death_signal(status: int, exited: bool, cancelled: bool) -> int | None:
    """The signal that ended the program, unless it was only our SIGKILL after a cancel.

    A crashing candidate closes its channel before its pidfd turns readable, so under load the
    test side can finish and cancel this run first: a signal other than our SIGKILL (SIGSEGV...)
    is still the program's own death, and so is any signal seen before the cancel.
    """
    if not os.WIFSIGNALED(status):
        return None
    sig = os.WTERMSIG(status)
    return sig if exited or not cancelled or sig != signal.SIGKILL else None


def _launch(job: dict, role: str, link: list[int], watch: int | None, scratch_base: str,
            tag: str) -> tuple[int, str]:
    """Fork the supervisor of one side; returns (the read end of its report, its scratch directory)."""
    scratch = tempfile.mkdtemp(prefix=f"{tag}-", dir=scratch_base)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        for fd in PRIVATE_FDS:
            os.close(fd)
        try:
            result = _supervise(job, scratch, role, link, watch)
        except BaseException as exc:
            result = {"error": f"supervisor failed: {exc!r}"}
        data = json.dumps(result).encode()
        while data:
            data = data[os.write(w, data):]
        os._exit(0)
    os.close(w)
    return r, scratch


def _collect(r: int, scratch: str, timeout: float, keep: int | None) -> dict:
    """Read a supervisor's report (backstop ``timeout``), then clean up everything it left."""
    backstop = time.monotonic() + timeout
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
    kill_descendants(keep=keep)
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        return json.loads(data)
    except ValueError:
        return {"error": "the supervisor died without a report (killed by the sandboxed process?)"}


# --------------------------------------------------------------------------- candidate zygote

def _send_msg(sock: socket.socket, obj: dict, fds: list[int] = ()) -> None:
    data = json.dumps(obj).encode()
    socket.send_fds(sock, [struct.pack(">I", len(data))], list(fds))
    sock.sendall(data)


def _recv_msg(sock: socket.socket) -> tuple[dict | None, list[int]]:
    head, fds, _, _ = socket.recv_fds(sock, 4, 8)
    while head and len(head) < 4:
        more = sock.recv(4 - len(head))
        if not more:
            return None, fds
        head += more
    if len(head) < 4:
        return None, fds
    size = struct.unpack(">I", head)[0]
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            return None, fds
        body += chunk
    return json.loads(body), fds


def candidate_zygote(sock: socket.socket, scratch_base: str, tag: str) -> None:
    """Serve candidate runs: ``{"job"}`` + fds [calls in, replies out, alive] (function mode)."""
    isolation.prctl(isolation.PR_SET_CHILD_SUBREAPER, 1)
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    while True:
        try:
            job, fds = _recv_msg(sock)
        except (OSError, ValueError):
            return
        if job is None:
            return
        link, watch = (fds[:2], fds[2]) if len(fds) == 3 else ([], None)
        r, scratch = _launch(job, "candidate", link, watch, scratch_base, tag)
        for fd in fds:
            os.close(fd)
        _send_msg(sock, _collect(r, scratch, job["timeout"] + 10.0, None))


# --------------------------------------------------------------------------- test zygote

class Zygote:
    def __init__(self, tag: str, scratch_base: str) -> None:
        self.tag, self.scratch_base = tag, scratch_base
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            mine.close()
            for fd in PRIVATE_FDS:
                os.close(fd)
            PRIVATE_FDS[:] = [theirs.fileno()]
            try:
                candidate_zygote(theirs, scratch_base, tag)
            finally:
                os._exit(0)
        theirs.close()
        PRIVATE_FDS.append(mine.fileno())
        self.sock, self.candidate_zygote_pid = mine, pid

    def _candidate(self, job: dict, fds: list[int]) -> None:
        _send_msg(self.sock, {k: v for k, v in job.items() if k != "test"}, fds)

    def _candidate_report(self, timeout: float) -> dict:
        self.sock.settimeout(timeout)
        try:
            report, _ = _recv_msg(self.sock)
        except (OSError, ValueError):
            report = None
        if report is None:
            return {"error": "the candidate zygote stopped answering"}
        return report

    def run(self, job: dict) -> dict:
        backstop = job["timeout"] + 10.0
        if job["mode"] == "stdio":
            self._candidate(job, [])
            return {"candidate": self._candidate_report(backstop)}
        if job["mode"] == "judge":
            r, scratch = _launch(job, "test", [], None, self.scratch_base, self.tag)
            return {"test": _collect(r, scratch, backstop, self.candidate_zygote_pid)}
        calls_r, calls_w = os.pipe()
        replies_r, replies_w = os.pipe()
        alive_r, alive_w = os.pipe()
        self._candidate(job, [calls_r, replies_w, alive_r])
        for fd in (calls_r, replies_w, alive_r):
            os.close(fd)
        r, scratch = _launch(job, "test", [calls_w, replies_r], None, self.scratch_base, self.tag)
        for fd in (calls_w, replies_r, alive_w):  # the test supervisor holds the only alive_w now
            os.close(fd)
        test = _collect(r, scratch, backstop, self.candidate_zygote_pid)
        return {"test": test, "candidate": self._candidate_report(backstop)}


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
    PRIVATE_FDS[:] = [req, rep]
    zygote = Zygote(tag, scratch_base)  # forks the candidate zygote now, before any job was read
    _send(rep, {"hello": True, "layers": layers, "landlock_abi": isolation.landlock_abi(),
                "pid": os.getpid(), "candidate_zygote_pid": zygote.candidate_zygote_pid,
                "python": sys.version.split()[0]})
    while (job := _recv(req)) is not None:
        _send(rep, zygote.run(job))


if __name__ == "__main__":
    main()
