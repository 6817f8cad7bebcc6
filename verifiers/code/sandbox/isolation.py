"""Kernel isolation primitives for one sandboxed run: rlimits, namespaces, Landlock, seccomp.

Place: imported only by the zygote (``zygote.py``), which runs under ``python -I -S`` and so may
use the standard library alone. Everything here is applied inside a freshly forked process,
before any candidate byte runs, and each layer is independent of the others:

- ``apply_rlimits``: address space, CPU seconds, file size, open files, processes, no core dumps.
- ``enter_namespaces``: user + net + pid + ipc + uts + mount namespaces (empty network, the
  candidate becomes pid 1 of its own pid namespace so every descendant dies with it) and a
  size-capped tmpfs on the scratch directory.
- ``apply_landlock``: read-only access to the interpreter and system libraries, read-write to the
  scratch directory only, no TCP bind/connect, no signals or abstract sockets outside the sandbox.
- ``apply_seccomp``: a hand-assembled BPF filter (x86-64 only) that refuses new processes (threads
  are fine), exec, non-Unix sockets, signals to other processes, ptrace and the kernel-attack
  surface (mount, bpf, io_uring, keyctl, userfaultfd...).

``probe_layers`` tries each layer in a throw-away child, so the zygote can report honestly what
this machine offers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct
import sys

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

LAYERS = ("rlimits", "namespaces", "landlock", "seccomp")


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


# --------------------------------------------------------------------------- rlimits

def apply_rlimits(memory_bytes: int, cpu_seconds: int, file_bytes: int, nofile: int, nproc: int) -> None:
    """Hard limits (soft == hard, so the candidate cannot raise them back)."""
    limits = {
        resource.RLIMIT_AS: memory_bytes,
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_FSIZE: file_bytes,
        resource.RLIMIT_NOFILE: nofile,
        resource.RLIMIT_CORE: 0,
        # Ignored by the kernel for real uid 0 outside a user namespace; effective inside one.
        resource.RLIMIT_NPROC: nproc,
    }
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


# --------------------------------------------------------------------------- namespaces

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 0x4000, 1 << 18


def enter_namespaces(scratch: str, tmpfs_bytes: int) -> None:
    """Unshare everything; the *next* fork becomes pid 1 of the new pid namespace.

    The scratch directory is covered by a private tmpfs capped at ``tmpfs_bytes``, so disk use is
    bounded and the files vanish with the namespace.
    """
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS
    _check(_libc.unshare(flags), "unshare")
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")
    _check(_libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None), "mount private /")
    opts = f"size={max(tmpfs_bytes, 1 << 20)},mode=0700".encode()
    _check(_libc.mount(b"tmpfs", scratch.encode(), b"tmpfs", ctypes.c_ulong(MS_NOSUID | MS_NODEV), opts),
           "mount tmpfs")


# --------------------------------------------------------------------------- landlock

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
_FILE_ONLY_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV


def landlock_abi() -> int:
    """Landlock ABI version, 0 when the kernel lacks it or it is disabled."""
    ret = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(ret), 0)


def apply_landlock(read_only: list[str], read_write: list[str]) -> int:
    """Restrict this process (and its future children) to the given paths; returns the ABI used.

    Also denies TCP bind/connect (ABI >= 4) and signals / abstract Unix sockets reaching outside the
    sandbox (ABI >= 6). Paths that do not exist are skipped.
    """
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available")
    fs = _FS_BY_ABI.get(abi, (1 << 16) - 1)
    net = 0b11 if abi >= 4 else 0
    scoped = 0b11 if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", fs, net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", fs, net)
    else:
        attr = struct.pack("=Q", fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _check(int(_libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)),
                                       ctypes.c_uint32(0))), "landlock_create_ruleset")
    try:
        ro = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
        for paths, access in ((read_only, ro), (read_write, fs)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    rights = access & fs
                    if not os.path.isdir(path):
                        rights &= _FILE_ONLY_RIGHTS
                    rule = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
                    _check(int(_libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, ctypes.c_int(1), rule,
                                             ctypes.c_uint32(0))), f"landlock_add_rule({path})")
                finally:
                    os.close(fd)
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        _check(int(_libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0))),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


# --------------------------------------------------------------------------- seccomp

_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000


def _ret_errno(code: int) -> int:
    return 0x00050000 | code


# x86-64 syscall numbers refused with EPERM: process creation and exec, tracing and cross-process
# memory access, namespaces and mounts, and kernel surfaces a Python program never needs.
_DENY_X86_64 = {
    57: "fork", 58: "vfork", 59: "execve", 322: "execveat", 101: "ptrace", 310: "process_vm_readv",
    311: "process_vm_writev", 312: "kcmp", 165: "mount", 166: "umount2", 155: "pivot_root",
    161: "chroot", 272: "unshare", 308: "setns", 321: "bpf", 248: "add_key", 249: "request_key",
    250: "keyctl", 425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register",
    323: "userfaultfd", 298: "perf_event_open", 246: "kexec_load", 320: "kexec_file_load",
    169: "reboot", 167: "swapon", 168: "swapoff", 175: "init_module", 313: "finit_module",
    176: "delete_module", 163: "acct", 164: "settimeofday", 227: "clock_settime", 170: "sethostname",
    171: "setdomainname", 172: "iopl", 173: "ioperm", 179: "quotactl", 303: "name_to_handle_at",
    304: "open_by_handle_at", 428: "open_tree", 429: "move_mount", 430: "fsopen", 431: "fsconfig",
    432: "fsmount", 433: "fspick", 442: "mount_setattr", 135: "personality", 424: "pidfd_send_signal",
    434: "pidfd_open", 438: "pidfd_getfd", 129: "rt_sigqueueinfo", 297: "rt_tgsigqueueinfo",
}
_NR_CLONE, _NR_CLONE3, _NR_SOCKET = 56, 435, 41
_NR_KILL, _NR_TKILL, _NR_TGKILL = 62, 200, 234
_CLONE_THREAD, _AF_UNIX = 0x00010000, 1


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16  # struct seccomp_data; args are little-endian u64


def seccomp_supported() -> bool:
    return sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


def _filter_program(self_pid: int) -> bytes:
    prog = [
        _insn(_LD_W_ABS, 0, 0, _OFF_ARCH),
        _insn(_JEQ, 1, 0, _AUDIT_ARCH_X86_64),
        _insn(_RET, 0, 0, _RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, _OFF_NR),
        # x32 syscalls alias the x86-64 ones with bit 30 set: refuse them wholesale
        _insn(_JGE, 0, 1, 0x40000000),
        _insn(_RET, 0, 0, _ret_errno(errno.EPERM)),
        # clone3 -> ENOSYS makes glibc fall back to clone, whose flags we can inspect
        _insn(_JEQ, 0, 1, _NR_CLONE3),
        _insn(_RET, 0, 0, _ret_errno(errno.ENOSYS)),
        # clone: threads (CLONE_THREAD) yes, processes no
        _insn(_JEQ, 0, 4, _NR_CLONE),
        _insn(_LD_W_ABS, 0, 0, _OFF_ARG0),
        _insn(_JSET, 0, 1, _CLONE_THREAD),
        _insn(_RET, 0, 0, _RET_ALLOW),
        _insn(_RET, 0, 0, _ret_errno(errno.EPERM)),
        # socket: only AF_UNIX
        _insn(_JEQ, 0, 4, _NR_SOCKET),
        _insn(_LD_W_ABS, 0, 0, _OFF_ARG0),
        _insn(_JEQ, 0, 1, _AF_UNIX),
        _insn(_RET, 0, 0, _RET_ALLOW),
        _insn(_RET, 0, 0, _ret_errno(errno.EACCES)),
    ]
    # kill / tkill / tgkill: only to ourselves (our pid, or 0 = our own process group)
    for nr in (_NR_KILL, _NR_TKILL, _NR_TGKILL):
        prog += [
            _insn(_JEQ, 0, 5, nr),
            _insn(_LD_W_ABS, 0, 0, _OFF_ARG0),
            _insn(_JEQ, 2, 0, self_pid),
            _insn(_JEQ, 1, 0, 0),
            _insn(_RET, 0, 0, _ret_errno(errno.EPERM)),
            _insn(_RET, 0, 0, _RET_ALLOW),
        ]
    for nr in sorted(_DENY_X86_64):
        prog += [_insn(_JEQ, 0, 1, nr), _insn(_RET, 0, 0, _ret_errno(errno.EPERM))]
    prog.append(_insn(_RET, 0, 0, _RET_ALLOW))
    return b"".join(prog)


def apply_seccomp() -> None:
    """Install the filter on this thread group (needs no privileges, only no_new_privs)."""
    if not seccomp_supported():
        raise OSError(errno.ENOSYS, f"seccomp filter is written for x86-64, not {platform.machine()}")
    code = _filter_program(os.getpid())
    n = len(code) // 8
    filt = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(n, ctypes.addressof(filt))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(2), ctypes.byref(fprog), 0, 0), "seccomp")


# --------------------------------------------------------------------------- probing

def _probe_in_child(fn) -> bool:
    pid = os.fork()
    if pid == 0:
        try:
            fn()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def probe_layers(scratch_base: str) -> list[str]:
    """Which layers work on this machine, each tried in a throw-away forked child."""
    import tempfile

    layers = ["rlimits"]
    scratch = tempfile.mkdtemp(prefix="verifrl-probe-", dir=scratch_base)
    try:
        def ns() -> None:
            enter_namespaces(scratch, 1 << 20)
            pid = os.fork()  # the pid namespace only takes effect for children
            if pid == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise OSError("not pid 1 in the new pid namespace")

        if _probe_in_child(ns):
            layers.append("namespaces")
        if landlock_abi() >= 1 and _probe_in_child(lambda: apply_landlock([sys.base_prefix], [scratch])):
            layers.append("landlock")

        def sc() -> None:
            apply_seccomp()
            try:
                os.fork()
            except PermissionError:
                return
            os._exit(1)  # fork succeeded: the filter is not in force (the child also lands here)

        if seccomp_supported() and _probe_in_child(sc):
            layers.append("seccomp")
    finally:
        os.rmdir(scratch)
    return layers
