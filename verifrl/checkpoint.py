"""Checkpoints that survive a crash at any instant, resume exactly, and load with plain transformers.

A checkpoint is a directory ``<run_dir>/checkpoints/step-<N>/`` in the layout of a Hugging Face
model directory plus the run's own state beside it, like the Hugging Face Trainer's:

* ``config.json``, ``model.safetensors``, the tokenizer files: ``AutoModelForCausalLM`` /
  ``AutoTokenizer.from_pretrained(step_dir)`` give the policy of that step
  (:func:`verifrl.hf_export.save_model_dir`); a LoRA policy's step holds its adapter
  (``adapter_config.json``, ``adapter_model.safetensors``) instead, which transformers with peft
  loads on top of the base model the adapter config names;
* ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pt``: tensors and plain values only, read back
  with ``torch.load(weights_only=True)`` (nothing in a checkpoint can run code when loaded);
  ``rng_state.pt`` holds every rank's python, numpy, torch and CUDA generator states;
* ``trainer_state.json``: the step, the prompt sampler's position, the pre-RL evaluation, the
  training time; ``verifrl_config.json``: the resolved run config;
* with PPO's critic (``advantage.estimator: gae``), ``critic/``: its trainable weights
  (``model.safetensors``; under LoRA its adapter and value head), its optimizer
  (``optimizer.pt``, ``weights_only``) and ``critic_state.json`` (its update count), written and
  read by :class:`verifrl.critic.Critic`;
* ``trainer_tensors.safetensors`` (only when the trainer has tensors to keep): e.g. the off-policy
  pipeline's batches sampled but not yet trained on, described by ``trainer_state.json``;
* under ``trainer.parallel: fsdp``, ``distributed/``: the sharded weights and optimizer state in
  ``torch.distributed.checkpoint`` format, each rank writing its own shard, loadable on any number
  of ranks (``model.safetensors`` is then the gathered copy, for other tools).

Under torchrun only rank 0 writes (FSDP: every rank writes its shard of ``distributed/``). A
checkpoint is written under a temporary name, fsynced, then renamed into place; ``latest`` is a
small file replaced atomically afterwards. A crash mid-write leaves at worst an ignored temporary
directory, never a corrupt ``latest``; :func:`remove_stale_staging`
clears it when the run directory is next claimed.
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

from verifrl import distributed, hf_export

_STATE_FILE = "trainer_state.json"  # written last into the staging directory: its presence marks a complete checkpoint
CRITIC_DIR = "critic"  # PPO's value model, its optimizer and update count (advantage.estimator: gae)
_TENSORS_FILE = "trainer_tensors.safetensors"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """This process's generator states as tensors and plain values (``weights_only``-loadable)."""
    version, mt_state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": [version, torch.tensor(mt_state, dtype=torch.int64), gauss],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in mt_state.tolist()), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def _write_weights(model, tokenizer, directory: Path, full_state: dict | None) -> None:
    """The policy into ``directory`` as from_pretrained files (rank 0; ``full_state``: gathered FSDP weights)."""
    if _is_peft(model):
        model.save_pretrained(directory)
    elif hasattr(model, "save_pretrained") and tokenizer is not None:
        hf_export.save_model_dir(model, tokenizer, directory, state_dict=full_state)
        return
    elif hasattr(model, "save_pretrained"):
        model.save_pretrained(directory, state_dict=full_state)
    else:  # a bare torch module (tests): its weights, shared tensors stored once
        from safetensors.torch import save_model

        save_model(model, str(directory / "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
        hf_export.declare_generic_tokenizer_class(directory)


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, trainer_state: dict, config: dict,
                    keep_last: int = 2, tokenizer=None, tensors: dict[str, torch.Tensor] | None = None,
                    critic=None) -> Path | None:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; prune old ones.
    ``critic``: PPO's :class:`verifrl.critic.Critic`, saved into ``critic/`` (replicated on every
    rank, so rank 0's copy is the critic).

    ``trainer_state`` must be JSON; ``tensors`` (named CPU tensors the trainer state refers to) go
    to ``trainer_tensors.safetensors`` and come back with :func:`load_trainer_tensors`.

    Under torchrun every rank must call it (it gathers RNG states, and FSDP shards); rank 0 writes
    and returns the path, the other ranks return None.
    """
    root = Path(run_dir) / "checkpoints"
    sharded = distributed.is_sharded(model)
    rng = distributed.gather_objects(rng_state())  # every rank's generators, in rank order
    full_state = distributed.full_model_state(model) if sharded else None  # for the from_pretrained copy
    staging = None
    if distributed.is_main():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".step-{step}-", dir=root))
    if sharded:  # every rank writes its own shard of weights and optimizer state into rank 0's staging directory
        staging = Path(distributed.broadcast_object(str(staging) if staging else None))
        distributed.save_sharded(model, optimizer, staging / "distributed")
    if not distributed.is_main():
        return None
    final = root / f"step-{step}"
    _write_weights(model, tokenizer, staging, full_state)
    if not sharded:
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    if scheduler is not None:
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    torch.save({"world_size": len(rng), "ranks": rng}, staging / "rng_state.pt")
    if critic is not None:
        critic.save(staging / CRITIC_DIR)
    (staging / "verifrl_config.json").write_text(json.dumps(config, indent=2, default=str))
    if tensors:
        from safetensors.torch import save_file

        save_file({name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()},
                  str(staging / _TENSORS_FILE))
    (staging / _STATE_FILE).write_text(json.dumps({"step": step, "trainer": trainer_state}, indent=2))
    for file in staging.rglob("*"):
        if file.is_file():
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


def remove_stale_staging(run_dir: Path) -> list[str]:
    """Clear what an interrupted :func:`save_checkpoint` left under ``checkpoints/`` (call it only
    while no other process writes there, e.g. under the run directory's lock): staging
    directories ``.step-N-*`` and ``.latest.tmp`` are deleted; a step moved aside to
    ``.old-step-N-*`` for a re-save that never completed is put back when ``step-N`` is missing,
    else deleted. Returns what was removed or restored, for the log."""
    root = Path(run_dir) / "checkpoints"
    done = []
    for path in sorted(root.glob(".old-step-*")) if root.is_dir() else []:
        name = re.sub(r"^\.old-(step-\d+)-.*$", r"\1", path.name)
        moved = path / name
        if _complete(moved) and not (root / name).exists():
            os.replace(moved, root / name)
            done.append(f"{path.name} (restored as {name})")
        else:
            done.append(path.name)
        shutil.rmtree(path, ignore_errors=True)
    for path in [*root.glob(".step-*"), *root.glob(".latest.tmp")] if root.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        done.append(path.name)
    return done


def _complete(path: Path) -> bool:
    return path.is_dir() and (path / _STATE_FILE).is_file()


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a ``step-N`` checkpoint directory (not a bare model directory)."""
    return _complete(Path(path))


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


def _load_weights(path: Path, model) -> None:
    if _is_peft(model):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        file = path / "adapter_model.safetensors"
        weights = load_file(file) if file.is_file() else {}
        result = set_peft_model_state_dict(model, weights)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected or not weights:
            raise ValueError(f"{path}: not a LoRA adapter checkpoint of this model "
                             f"({len(weights)} tensors, unexpected {unexpected[:3]})")
        return
    weights = hf_export.load_exported_weights(path)
    if distributed.is_sharded(model):  # every rank reads the full weights and keeps its shard
        distributed.load_full_model_state(model, weights)
        return
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # a tied output layer is stored once (under the embedding's name) and is loaded with it
    stored = {model.state_dict()[name].data_ptr() for name in weights if name in model.state_dict()}
    missing = [name for name in missing if model.state_dict()[name].data_ptr() not in stored]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_checkpoint(path: Path, model, optimizer=None, scheduler=None, critic=None) -> dict:
    """Restore weights (and optimizer, scheduler, critic, RNG when given); returns the trainer
    state. Everything is read with safetensors, ``torch.load(weights_only=True)`` or as JSON."""
    path = Path(path)
    if not _complete(path):
        old = " (written by verifrl < 0.2 in the pickle format, which is no longer read)" \
            if (path / "state.pt").exists() else ""
        raise FileNotFoundError(f"{path}: not a complete checkpoint, no {_STATE_FILE}{old}")
    if critic is not None and not (path / CRITIC_DIR).is_dir():
        raise FileNotFoundError(f"{path}: no {CRITIC_DIR}/ (the run was not trained with advantage.estimator=gae)")
    if (path / "distributed").is_dir():  # FSDP: weights and optimizer re-sharded onto this run's ranks
        distributed.load_sharded(model, optimizer, path / "distributed")
    else:
        _load_weights(path, model)
        if optimizer is not None:
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    if scheduler is not None and (path / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if critic is not None:
        critic.load(path / CRITIC_DIR)
    if optimizer is not None:
        rng = torch.load(path / "rng_state.pt", weights_only=True)
        # the same number of ranks: each its own generators; otherwise every rank takes rank 0's
        same_world = rng["world_size"] == distributed.world_size()
        set_rng_state(rng["ranks"][distributed.rank() if same_world else 0])
    state = json.loads((path / _STATE_FILE).read_text())
    return {"step": state["step"], **state["trainer"]}


def load_trainer_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors :func:`save_checkpoint` kept beside the trainer state ({} when none)."""
    file = Path(path) / _TENSORS_FILE
    if not file.is_file():
        return {}
    from safetensors.torch import load_file

    return load_file(str(file))


def save_final_model(model, tokenizer, path: Path, log=print) -> None:
    """The policy as a plain Hugging Face model directory (:func:`verifrl.hf_export.save_model_dir`).
    An FSDP-sharded policy's full weights are gathered (every rank must call this) and written by
    rank 0 only. A LoRA policy is saved as its adapter in ``path`` and, merged into the base
    weights, as a plain model in ``path/merged``."""
    state = distributed.full_model_state(model) if distributed.is_sharded(model) else None
    if not distributed.is_main():
        return
    if _is_peft(model):
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        hf_export.declare_generic_tokenizer_class(Path(path))
        _save_merged_lora(model, tokenizer, Path(path) / "merged", log)
    else:
        hf_export.save_model_dir(model, tokenizer, path, state_dict=state, log=log)


def _save_merged_lora(model, tokenizer, path: Path, log=print) -> None:
    """Merge the adapter into the base weights in place, save them under plain names, unmerge.

    In place (not a merged copy) so that a large model on a GPU is never held twice.
    """
    model.merge_adapter()
    try:
        base = model.get_base_model()
        merged = {name.replace(".base_layer.", "."): tensor for name, tensor in base.state_dict().items()
                  if "lora_" not in name}
        hf_export.save_model_dir(base, tokenizer, path, state_dict=merged, log=log)
    finally:
        model.unmerge_adapter()
