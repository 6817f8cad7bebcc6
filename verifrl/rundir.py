"""Run directories: one run at a time, never silently overwritten, and clean to resume.

Place: around the whole training loop (the trainer claims its run directory first, before any
model loads, and holds it to the end).

- **Lock.** ``<run_dir>/.lock`` holds the pid and host of the run using the directory, under an
  ``fcntl.flock`` that the kernel releases when that process dies, however it dies. A second run on
  the same directory fails at once naming the holder's pid; a lock file left by a run that is gone
  (killed, crashed, the machine rebooted) is taken over with a message. (``flock`` is per host:
  two machines sharing the directory over NFS are not kept apart.)
- **No silent overwrite.** A directory that already holds a run (metrics, samples, summary,
  checkpoints, final model, wandb files) is refused unless the run continues it (``--resume``)
  or replaces it (``--overwrite``: its previous contents are deleted first).
- **Resume from a clean state.** Checkpoint staging left by a kill mid-write is cleaned
  (:func:`verifrl.checkpoint.remove_stale_staging`), and the per-step logs are cut back to the
  checkpoint's step (:func:`truncate_step_logs`), so a resumed run never repeats a step.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from verifrl.checkpoint import remove_stale_staging

LOCK_NAME = ".lock"
RUN_FILES = ("metrics.jsonl", "samples.jsonl", "summary.json", "checkpoints", "final_model", "wandb")
"""What marks a directory as holding a run."""
STEP_LOGS = ("metrics.jsonl", "samples.jsonl")
"""Files of one JSON object per line with a ``step``, appended to as a run goes."""


class RunDirError(RuntimeError):
    """The run directory is in use by another run, or holds a run this one would overwrite."""


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


@contextmanager
def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Lock ``run_dir`` for this process (released on exit), refuse to overwrite a run in it unless
    asked, and clean checkpoint staging left by a killed writer."""
    import fcntl  # POSIX; imported here so that importing the trainer works everywhere

    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other: continue the run or replace it")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
        os.close(fd)
        raise RunDirError(f"run directory {run_dir} is in use by {holder} (its {LOCK_NAME}); wait for that run "
                          f"to end, or use another --run-dir") from None
    try:
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if previous:
            log(f"run directory {run_dir}: took over the lock left by {_holder(previous)}, which is no longer running")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        existing = sorted(name for name in RUN_FILES if (run_dir / name).exists())
        if existing and not resume:
            if not overwrite:
                raise RunDirError(f"run directory {run_dir} already holds a run ({', '.join(existing)}): continue it "
                                  f"with --resume, replace it with --overwrite, or use another --run-dir")
            for entry in run_dir.iterdir():
                if entry.name != LOCK_NAME:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            log(f"run directory {run_dir}: --overwrite deleted the previous run ({', '.join(existing)})")
        for removed in remove_stale_staging(run_dir):
            log(f"run directory {run_dir}: removed {removed}, left by a checkpoint write that was interrupted")
        yield run_dir
    finally:
        os.ftruncate(fd, 0)  # an empty lock file: the next run has nothing to take over
        os.close(fd)  # releases the flock


def truncate_step_logs(run_dir: Path, step: int) -> dict[str, int]:
    """Cut every per-step log back to the records before ``step`` (the checkpoint's step, where a
    resumed run starts again); records with a negative step (the pre-RL evaluation) are kept and
    a line cut in half by a kill is dropped. Each file is rewritten atomically. Returns the
    number of lines dropped per file."""
    dropped = {}
    for name in STEP_LOGS:
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        kept, lines = [], path.read_text(errors="replace").splitlines()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] < step:
                kept.append(line)
        if len(kept) != len(lines):
            staging = path.with_name(f".{name}.tmp")
            staging.write_text("".join(line + "\n" for line in kept))
            os.replace(staging, path)
        dropped[name] = len(lines) - len(kept)
    return dropped
