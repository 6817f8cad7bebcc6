"""Checkpoints that survive a crash at any instant, and resume exactly.

A checkpoint is a directory ``<run_dir>/checkpoints/step-<N>/`` holding the policy weights,
optimizer and scheduler state, every RNG state (python, torch CPU, CUDA), the prompt sampler's
position, the step, the resolved config and any trainer state (such as the pre-RL evaluation).
It is written under a temporary name, fsynced, then renamed into place; ``latest`` is a small
file replaced atomically afterwards. A crash mid-write leaves at worst an ignored temporary
directory, never a corrupt ``latest``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, trainer_state: dict, config: dict,
                    keep_last: int = 2) -> Path:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; prune old ones."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    staging = Path(tempfile.mkdtemp(prefix=f".step-{step}-", dir=root))
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, staging / "model.pt")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
         "rng": rng_state(), "trainer": trainer_state, "step": step},
        staging / "state.pt",
    )
    (staging / "config.json").write_text(json.dumps(config, indent=2, default=str))
    for file in staging.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _fsync_dir(root)
    pointer_tmp = root / ".latest.tmp"
    pointer_tmp.write_text(final.name)
    with open(pointer_tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(pointer_tmp, root / "latest")
    _fsync_dir(root)
    if keep_last > 0:
        steps = sorted((int(p.name.split("-")[1]), p) for p in root.glob("step-*") if p.is_dir())
        for _, old in steps[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "state.pt").exists() and (path / "model.pt").exists() else None


def load_checkpoint(path: Path, model, optimizer=None, scheduler=None) -> dict:
    """Restore weights (and optimizer, scheduler, RNG when given); returns the trainer state."""
    path = Path(path)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if optimizer is not None:
        set_rng_state(state["rng"])
    return {"step": state["step"], **state["trainer"]}
