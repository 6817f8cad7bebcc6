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

``trainer.parallel: fsdp`` shards instead of copying: after loading (and after rank 0's weights
are broadcast), every decoder layer and then the root get FSDP2 ``fully_shard``, so parameters,
gradients and AdamW state are split over the ranks (the reference, when beta > 0, is sharded the
same way). FSDP all-gathers a layer's weights in every forward and reduce-scatters its gradient
in every backward, collectives that every rank must join, so under fsdp:

* generation and the reference's log-probs run inside :func:`gathered_parameters` (every FSDP
  module unsharded once, before; resharded after), so their forwards issue no collectives and
  ranks may stop sampling after different numbers of tokens;
* the update pads every rank to the same number of micro-batch forward/backward passes with
  zero-weight passes (:func:`missing_passes`, :func:`idle_pass`);
* the reduce-scatter sums (divide factor 1), as the explicit all-reduce does, so the global loss
  normalisers stay right, and :func:`all_reduce_gradients` is skipped;
* checkpoints hold the weights and optimizer state in ``torch.distributed.checkpoint`` format, each
  rank writing its own shard (:func:`save_sharded`), and are re-sharded onto any number of ranks
  when loaded (:func:`load_sharded`); the full weights are gathered only for the from_pretrained
  copy in the checkpoint and ``final_model`` (:func:`full_model_state`).

``trainer.sampler_ranks: K`` (with ``trainer.off_policy_steps``) takes the last K ranks out of
training: :func:`split_sampler_ranks` makes the first W-K ranks the *trainers* (every collective
here runs in their group, and :func:`world_size` / :func:`rank` count them only) and the last K
the *samplers*, which sample the next batches while the trainers update
(:mod:`verifrl.sampler_ranks`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist


_TRAINERS = None  # the trainer ranks' process group when sampler ranks are split off (None: the world)
_SAMPLER_RANKS: tuple[int, ...] = ()
_PIPE = None  # trainer rank 0 + the samplers: requests and weights (the world's backend)
_PIPE_BATCHES = None  # the same ranks on gloo: sampled batches, as bytes on the CPU, sent without blocking


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Data-parallel (trainer) ranks: the world less the sampler ranks."""
    return dist.get_world_size() - len(_SAMPLER_RANKS) if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def is_sampler_rank() -> bool:
    return rank() in _SAMPLER_RANKS


def sampler_ranks() -> tuple[int, ...]:
    return _SAMPLER_RANKS


def split_sampler_ranks(count: int) -> None:
    """The last ``count`` ranks become sampler ranks, the others trainer ranks (every rank calls
    this, once, right after :func:`init`: creating process groups is a collective)."""
    global _TRAINERS, _SAMPLER_RANKS, _PIPE, _PIPE_BATCHES
    if not count or not is_initialized():
        return
    world = dist.get_world_size()
    if count >= world:
        raise ValueError(f"trainer.sampler_ranks={count} leaves no trainer rank in a world of {world} ranks")
    samplers = list(range(world - count, world))
    _TRAINERS = dist.new_group(list(range(world - count)))
    _PIPE = dist.new_group([0, *samplers])
    _PIPE_BATCHES = dist.new_group([0, *samplers], backend="gloo")
    _SAMPLER_RANKS = tuple(samplers)


def pipe_groups():
    """(requests and weights group, batches group): trainer rank 0 and the sampler ranks."""
    return _PIPE, _PIPE_BATCHES


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
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=_TRAINERS)
    return buffer.to(value.device, value.dtype)


def all_reduce_gradients(model: torch.nn.Module) -> None:
    """Sum every parameter gradient over ranks with one flat all-reduce."""
    if not is_initialized() or world_size() == 1:
        return
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_comm_device())
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=_TRAINERS)
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
        dist.broadcast(buffer, src=0, group=_TRAINERS)
        tensor.data.copy_(buffer.to(tensor.device))


def barrier() -> None:
    if is_initialized():
        dist.barrier(group=_TRAINERS)


def destroy() -> None:
    """Leave the process group, after a barrier so that no rank tears it down while another rank
    still has a collective in flight."""
    if is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def mean_metrics(metrics: dict) -> dict:
    """Each numeric metric averaged over ranks (keys a rank lacks are averaged over the others)."""
    if not is_initialized() or world_size() == 1:
        return metrics
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                           group=_TRAINERS)
    out = dict(metrics)
    for key in {k for g in gathered for k in g}:
        values = [g[key] for g in gathered if key in g]
        out[key] = sum(values) / len(values)
    return out


# ---------------------------------------------------------------------------------------------
# FSDP2 (trainer.parallel: fsdp)


def _fsdp_modules(model: torch.nn.Module) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_sharded(model: torch.nn.Module | None) -> bool:
    """True when ``fully_shard`` was applied to the model (its root is an FSDP module)."""
    if model is None:
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks to shard one by one: modules whose class name ends in ``DecoderLayer``
    (every Hugging Face causal LM), else the children of ``model.model.layers``."""
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not layers:
        layers = list(getattr(getattr(model, "model", None), "layers", []) or [])
    if not layers:
        raise ValueError(f"trainer.parallel=fsdp: found no decoder layers in {type(model).__name__}")
    return layers


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """Apply FSDP2 ``fully_shard`` to every decoder layer, then to the root (in place; returned).

    Gradients are reduced by plain SUM over ranks (divide factor 1, sum-only collectives), because
    the loss already divides by global normalisers, like the DDP-style all-reduce.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device_type = "cuda" if dist.get_backend() == "nccl" else "cpu"
    mesh = init_device_mesh(device_type, (world_size(),))
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    # the root keeps its (embedding, final norm, head) weights gathered between forward and backward
    fully_shard(model, mesh=mesh, reshard_after_forward=False)
    for module in _fsdp_modules(model):
        module.set_gradient_divide_factor(1.0)
        module.set_force_sum_reduction_for_comms(True)  # SUM, not AVG/PREMUL_SUM (gloo has neither)
    return model


def prepare_models(policy: torch.nn.Module, reference: torch.nn.Module | None, parallel: str
                   ) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """Shard policy and reference for ``parallel == "fsdp"`` under torchrun; otherwise unchanged.

    Call after :func:`broadcast_parameters` and after the reference copy was made and loaded, and
    before the optimizer is built (it must see the sharded parameters).
    """
    if parallel != "fsdp" or world_size() == 1:
        return policy, reference
    shard_model(policy)
    if reference is not None:
        shard_model(reference)
    return policy, reference


@contextmanager
def gathered_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Every FSDP module of ``model`` unsharded for the block, so its forwards need no collectives.

    Generation stops when a rank's rows have all ended, so ranks run different numbers of
    forwards; with all weights gathered once up front (one all-gather per module, the same on
    every rank) none of those forwards communicates. A no-op for an unsharded model. Costs the
    memory of the full weights while inside (no gradients or optimizer state).
    """
    modules = _fsdp_modules(model)
    if not modules:
        yield
        return
    for module in modules:
        module.set_reshard_after_forward(False, recurse=False)
        module.unshard()
    try:
        yield
    finally:
        for module in modules:
            module.reshard()
            module.set_reshard_after_forward(module is not model, recurse=False)  # as shard_model set it


def max_across_ranks(value: int) -> int:
    """The largest of an integer over ranks (the integer itself in one process)."""
    if not is_initialized():
        return value
    buffer = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(buffer, op=dist.ReduceOp.MAX, group=_TRAINERS)
    return int(buffer.item())


def missing_passes(model: torch.nn.Module, passes: int) -> int:
    """How many zero-weight forward/backward passes this rank must add so that every rank runs as
    many as the busiest one (FSDP's per-layer collectives pair up across ranks); 0 unless sharded."""
    if not is_sharded(model):
        return 0
    return max_across_ranks(passes) - passes


def idle_pass(model: torch.nn.Module) -> None:
    """One forward/backward of a single token with the loss times zero: joins every FSDP
    collective of a real micro-batch and adds exactly nothing to the gradients."""
    device = next(model.parameters()).device
    token = torch.zeros((1, 1), dtype=torch.long, device=device)
    logits = model(input_ids=token, attention_mask=torch.ones_like(token), use_cache=False).logits
    (logits.float().sum() * 0.0).backward()


def _state_dict_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # full (unsharded) tensors on CPU, on rank 0 only: a checkpoint the same as a one-process one
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on rank 0 (empty on the others). A collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_state_dict_options())


def load_full_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Shard a full state dict (every rank passes the same one, read from the checkpoint) into the model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def save_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer, directory) -> None:
    """Weights and optimizer state in ``torch.distributed.checkpoint`` format: every rank writes its
    own shards into ``directory`` (shared by the ranks), no rank ever holds the whole. A collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(directory))


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, directory) -> None:
    """Read a :func:`save_sharded` directory into this run's model (and optimizer): sharded over any
    number of ranks, or a plain model in one process. Every rank calls it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_state_dict

    if optimizer is None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        model_state = get_model_state_dict(model)
        dcp.load({"model": model_state}, checkpoint_id=str(directory), no_dist=not is_initialized())
        set_model_state_dict(model, model_state)
        return
    model_state, optimizer_state = get_state_dict(model, optimizer)  # initialises empty AdamW state to load into
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(directory), no_dist=not is_initialized())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def gather_objects(value) -> list:
    """``[value of rank 0, value of rank 1, ...]`` on every rank (``[value]`` in one process)."""
    if not is_initialized() or world_size() == 1:
        return [value]
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, value, group=_TRAINERS)
    return gathered


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    if not is_initialized() or world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_TRAINERS)
    return box[0]
