"""Checkpoints that survive a crash at any instant, and resume exactly.

A checkpoint is a directory ``<run_dir>/checkpoints/step-<N>/`` holding the policy weights (only
the adapter of a LoRA policy), optimizer and scheduler state, every RNG state (python, numpy,
torch CPU, CUDA), the prompt sampler's position, the step, the resolved config and any trainer
state (such as the pre-RL evaluation), and with PPO's critic ``critic.pt`` (its weights, optimizer
and update count). It is written under a temporary name, fsynced, then renamed
into place; ``latest`` is a small file replaced atomically afterwards. A crash mid-write leaves at
worst an ignored temporary directory, never a corrupt ``latest``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verifrl import distributed


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


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def _trainable_state(model) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of the model: all weights, or only the adapter of a LoRA policy
    (the base weights come from ``model.name_or_path`` again on resume). An FSDP-sharded model's
    full weights are gathered to rank 0 (every rank must call this; the others get nothing)."""
    if distributed.is_sharded(model):
        return distributed.full_model_state(model)
    if _is_peft(model):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)
    return model.state_dict()


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, trainer_state: dict, config: dict,
                    keep_last: int = 2, critic=None) -> Path:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; prune old ones."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    staging = Path(tempfile.mkdtemp(prefix=f".step-{step}-", dir=root))
    torch.save({k: v.detach().cpu() for k, v in _trainable_state(model).items()}, staging / "model.pt")
    # fsdp: the full optimizer state, keyed by parameter name (gathered by every rank, held by rank 0)
    optimizer_state = (distributed.full_optimizer_state(model, optimizer) if distributed.is_sharded(model)
                       else optimizer.state_dict())
    torch.save(
        {"optimizer": optimizer_state, "scheduler": scheduler.state_dict() if scheduler else None,
         "rng": rng_state(), "trainer": trainer_state, "step": step},
        staging / "state.pt",
    )
    if critic is not None:
        torch.save(critic.state_dict(), staging / "critic.pt")
    (staging / "config.json").write_text(json.dumps(config, indent=2, default=str))
    for file in staging.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    trash = None
    if final.exists():  # re-saving a step: move the old copy aside first, delete it once replaced
        trash = Path(tempfile.mkdtemp(prefix=f".old-step-{step}-", dir=root))
        os.replace(final, trash / final.name)
    os.replace(staging, final)
    _fsync_dir(root)
    pointer_tmp = root / ".latest.tmp"
    pointer_tmp.write_text(final.name)
    with open(pointer_tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(pointer_tmp, root / "latest")
    _fsync_dir(root)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    if keep_last > 0:
        steps = sorted((int(p.name[5:]), p) for p in root.glob("step-*") if re.fullmatch(r"step-\d+", p.name))
        for _, old in steps[:-keep_last]:
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def _complete(path: Path) -> bool:
    return path.is_dir() and (path / "state.pt").is_file() and (path / "model.pt").is_file()


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names; if that is unreadable or incomplete (a crash in the
    middle of a re-save), the highest complete ``step-N``. Temporary ``.step-*`` directories
    and ``.latest.tmp`` are never considered."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        name = pointer.read_text(errors="replace").strip()
        if re.fullmatch(r"step-\d+", name) and _complete(root / name):
            return root / name
    steps = [(int(p.name[5:]), p) for p in root.glob("step-*") if re.fullmatch(r"step-\d+", p.name) and _complete(p)]
    return max(steps)[1] if steps else None


def load_checkpoint(path: Path, model, optimizer=None, scheduler=None, critic=None) -> dict:
    """Restore weights (and optimizer, scheduler, critic, RNG when given); returns the trainer state."""
    path = Path(path)
    if critic is not None and not (path / "critic.pt").is_file():
        raise FileNotFoundError(f"{path}: no critic.pt (the run was not trained with advantage.estimator=gae)")
    weights = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    if _is_peft(model):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, weights)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected or not weights:
            raise ValueError(f"{path}: not a LoRA adapter checkpoint of this model "
                             f"({len(weights)} tensors, unexpected {unexpected[:3]})")
    elif distributed.is_sharded(model):  # every rank reads the full weights and keeps its shard
        distributed.load_full_model_state(model, weights)
    else:
        model.load_state_dict(weights)
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    if optimizer is not None and distributed.is_sharded(model):
        distributed.load_full_optimizer_state(model, optimizer, state["optimizer"])
    elif optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if critic is not None:
        critic.load_state_dict(torch.load(path / "critic.pt", map_location="cpu", weights_only=False))
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if optimizer is not None:
        set_rng_state(state["rng"])
    return {"step": state["step"], **state["trainer"]}


def save_final_model(model, tokenizer, path: Path) -> None:
    """The policy as a plain Hugging Face model directory. An FSDP-sharded policy's full weights
    are gathered (every rank must call this) and written by rank 0 only. A LoRA policy is saved
    as its adapter in ``path`` and, merged into the base weights, as a plain model in ``path/merged``."""
    state = distributed.full_model_state(model) if distributed.is_sharded(model) else None
    if state is not None and not distributed.is_main():
        return
    model.save_pretrained(path, state_dict=state)
    tokenizer.save_pretrained(path)
    if hasattr(model, "merge_adapter"):
        _save_merged_lora(model, tokenizer, path / "merged")


def _save_merged_lora(model, tokenizer, path: Path) -> None:
    """Merge the adapter into the base weights in place, save them under plain names, unmerge.

    In place (not a merged copy) so that a large model on a GPU is never held twice.
    """
    model.merge_adapter()
    try:
        base = model.get_base_model()
        merged = {name.replace(".base_layer.", "."): tensor for name, tensor in base.state_dict().items()
                  if "lora_" not in name}
        base.save_pretrained(path, state_dict=merged)
        tokenizer.save_pretrained(path)
    finally:
        model.unmerge_adapter()
