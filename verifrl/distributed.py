"""Data parallelism over processes: ``torchrun --nproc_per_node N -m verifrl train RECIPE``.

Every rank holds a full copy of the policy (and reference). Each step, every rank draws the same
``rollout.num_prompts`` prompt rows from the identically seeded sampler and keeps its shard
``rows[rank::world_size]``; a prompt's whole group of ``group_size`` completions is generated,
verified and normalised on the rank that owns the prompt, so group statistics never cross ranks.
In the update the loss normalisers are global (dapo's token count, the number of sequences for
grpo/dr_grpo/bnpo weights) and the gradients are summed over ranks with one flat all-reduce after the
last micro-batch, so W ranks x B prompts give the same step as 1 rank x W*B prompts (to float
rounding). Ranks may run different numbers of micro-batches (zero-advantage rows are skipped,
lengths differ), which is why the gradient is reduced explicitly rather than by the DDP wrapper's
per-backward hooks. Metrics, checkpoints, wandb and ``summary.json`` are written by rank 0 only.

Backend: ``nccl`` when CUDA is available (each rank on ``cuda:LOCAL_RANK``), ``gloo`` otherwise.
Outside torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(backend: str = "auto") -> bool:
    """Join the process group torchrun set up (env://); True when running with several ranks."""
    if is_initialized():
        return True
    if not launched_by_torchrun():
        return False
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def device_for_rank(configured: str) -> str:
    """``auto``/``cuda`` become ``cuda:LOCAL_RANK`` under torchrun on GPUs; anything else is kept."""
    if is_initialized() and torch.cuda.is_available() and configured in ("auto", "cuda"):
        return f"cuda:{local_rank()}"
    return configured


def shard_rows(rows: list, num_prompts: int) -> list:
    """This rank's prompts: ``rows[rank::world_size]`` (whole groups stay on their rank)."""
    w = world_size()
    if w == 1:
        return rows
    if num_prompts % w:
        raise ValueError(f"rollout.num_prompts={num_prompts} must be divisible by the {w} ranks")
    return rows[rank()::w]


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over ranks (the tensor itself in one process); returned on its device."""
    if not is_initialized():
        return value
    buffer = value.detach().to(_comm_device(), torch.float64 if not value.is_floating_point() else value.dtype).clone()
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return buffer.to(value.device, value.dtype)


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum every parameter gradient over ranks with one flat all-reduce."""
    if not is_initialized() or world_size() == 1:
        return
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_comm_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g).to(g.device))
        offset += g.numel()


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Make every rank start from rank 0's weights."""
    if not is_initialized() or world_size() == 1:
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        buffer = tensor.data.to(_comm_device())
        dist.broadcast(buffer, src=0)
        tensor.data.copy_(buffer.to(tensor.device))


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def destroy() -> None:
    if is_initialized():
        dist.destroy_process_group()


def mean_metrics(metrics: dict) -> dict:
    """Each numeric metric averaged over ranks (keys a rank lacks are averaged over the others)."""
    if not is_initialized() or world_size() == 1:
        return metrics
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    out = dict(metrics)
    for key in {k for g in gathered for k in g}:
        values = [g[key] for g in gathered if key in g]
        out[key] = sum(values) / len(values)
    return out


def scratch_run_dir() -> "os.PathLike":
    """Where a non-zero rank's trainer writes what rank 0 writes for real (deleted at the end)."""
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix=f"verifrl-rank{rank()}-"))
