"""The off-policy pipeline under torchrun: sampler ranks sample while trainer ranks update.

Place in the data flow: prompts -> **rollouts (on the sampler ranks, on weights up to N updates
old)** -> verifier results -> rewards -> ... (``trainer.off_policy_steps: N`` with
``trainer.sampler_ranks: K``).

``torchrun --nproc_per_node W`` with ``trainer.sampler_ranks: K``: ranks 0..W-K-1 train (ddp, every
collective of :mod:`verifrl.distributed` in their own group), ranks W-K..W-1 sample, each on its
own device. The schedule is the single-device pipeline's (:mod:`verifrl.sampler_process`):
batch s is sampled with version ``max(v0, s - N)``, so every batch is exactly ``min(s - v0, N)``
updates stale. Trainer rank 0 is the only trainer that talks to the samplers:

- requests: after update s it broadcasts ``("sample", s+1+N, version s+1, prompts, seed)`` to the
  samplers, followed by the new weights (one ``broadcast`` per tensor of the state dict: NCCL on
  GPUs, gloo on CPUs). Requests always carry the newest version, so a sampler keeps one copy;
- batches: sampler j samples prompts ``j::K`` of the batch under the batch's seed + j (with one
  sampler the tokens equal the single-device pipeline's) and sends them to trainer rank 0 as
  bytes on a gloo group, without blocking (``isend``), so it is waiting for the next request
  while trainer rank 0 trains; rank 0 receives them when the trainers need the batch, merges the
  parts (prompts reordered to match) and broadcasts the batch to the other trainer ranks, each
  keeping its shard of prompts (``distributed.shard_rows``).

Checkpoints and exact resume are the single-device pipeline's: trainer rank 0 holds every batch
in flight. Failure: a rank that raises ends its process; torchrun then stops every rank.
"""

from __future__ import annotations

import io
import time

import torch
import torch.distributed as dist

from verifrl import distributed
from verifrl.dynamic_sampling import concat_batches
from verifrl.rollout import RolloutBatch
from verifrl.sampler_process import (OffPolicySampler, SampledBatch, _batch_from_state, _batch_to_state,
                                     _select_rows, sampling_kwargs)


def _control(message=None):
    """Trainer rank 0's ``message`` on trainer rank 0 and every sampler rank (a collective of them)."""
    box = [message]
    dist.broadcast_object_list(box, src=0, group=distributed.pipe_groups()[0])
    return box[0]


def _broadcast_weights(model) -> None:
    """Trainer rank 0's state dict into every sampler's model (in place; state-dict order)."""
    group = distributed.pipe_groups()[0]
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0, group=group)


def _to_bytes(value) -> torch.Tensor:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _from_bytes(data: torch.Tensor):
    # tensors, strings, numbers, lists and dicts only: nothing a sampler sends is unpickled as code
    return torch.load(io.BytesIO(data.numpy().tobytes()), weights_only=True)


def merge_parts(rows: list[dict], parts: list[RolloutBatch], pad_id: int) -> tuple[list[dict], RolloutBatch]:
    """K samplers' parts of one batch -> (its prompt rows in the merged order, the merged batch).

    Sampler j sampled prompts ``j::K``; the parts are concatenated sampler after sampler, so row
    ``p`` of the result is prompt ``rows[j::K][i]`` for the p-th (j, i) in that order.
    """
    count = len(parts)
    if count == 1:
        return rows, parts[0]
    return [row for j in range(count) for row in rows[j::count]], concat_batches(parts, pad_id)


def serve_sampler_rank(cfg, log=print) -> dict:
    """A sampler rank's whole run: load the policy when told, then sample what trainer rank 0
    asks for, in order, until it says stop. Returns a one-line summary for the caller."""
    from verifrl.models import load_policy  # noqa: PLC0415
    from verifrl.rollout import generate  # noqa: PLC0415

    samplers = distributed.sampler_ranks()
    j, count = samplers.index(distributed.rank()), len(samplers)
    batches_group = distributed.pipe_groups()[1]
    kwargs = sampling_kwargs(cfg)
    cfg.model.device = distributed.device_for_rank(cfg.model.device)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    model = tokenizer = None
    sends: list = []  # (buffers, works) of batches on their way: kept alive until received
    sampled = 0
    while True:
        message = _control()
        if message[0] == "stop":
            break
        if message[0] == "start":  # trainer rank 0 has built (or downloaded) the model: load it
            model, tokenizer = load_policy(cfg.model, log=lambda *_: None)
            model.eval()
            continue
        _, index, version, prompts, seed, with_weights = message
        if with_weights:
            _broadcast_weights(model)
        torch.manual_seed((seed + j) % (2**63 - 1))
        start = time.perf_counter()
        batch = generate(model, tokenizer, prompts[j::count], **kwargs)
        tensors: dict[str, torch.Tensor] = {}
        state = _batch_to_state(batch, "", tensors)
        payload = _to_bytes({"index": index, "version": version, "seconds": time.perf_counter() - start,
                             "state": state, "tensors": tensors})
        size = torch.tensor([payload.numel()], dtype=torch.int64)
        works = [dist.isend(size, dst=0, group=batches_group), dist.isend(payload, dst=0, group=batches_group)]
        sends = [s for s in sends if not all(w.is_completed() for w in s[1])] + [((size, payload), works)]
        sampled += 1
    log(f"sampler rank {distributed.rank()}: sampled {sampled} batch parts")
    return {"sampler_rank": distributed.rank(), "batches": sampled}


class RankSampler(OffPolicySampler):
    """The trainer ranks' handle on the sampler ranks (the single-device pipeline's interface)."""

    def __init__(self, cfg, policy, tokenizer, prompt_for, draw_rows, start_version: int,
                 pending: list[dict] | None = None, pending_tensors: dict[str, torch.Tensor] | None = None,
                 log=print) -> None:
        self.leader = distributed.rank() == 0
        self.closed, self.pad_id = False, tokenizer.pad_token_id
        if self.leader:  # the other trainer ranks only receive their shards (next_batch)
            super().__init__(cfg, policy, tokenizer, prompt_for, draw_rows, start_version, pending,
                             pending_tensors, log)

    def _start(self, cfg, policy, log) -> None:
        self.samplers = distributed.sampler_ranks()
        self.policy, self.published, self.sent_version = policy, None, None
        _control(("start",))
        log(f"off-policy: sampler ranks {list(self.samplers)}, {self.ahead} step(s) ahead")

    def publish(self, policy, version: int) -> None:
        """Version ``version`` goes to the samplers with the next request (requests always carry
        the newest version, so nothing older needs keeping)."""
        self.policy, self.published = policy, version

    def _request(self, index: int, version: int, prompts: list[str], seed: int) -> None:
        if version != self.published:
            raise RuntimeError(f"batch {index} asked for version {version}; the newest is {self.published}")
        with_weights = version != self.sent_version
        _control(("sample", index, version, prompts, seed, with_weights))
        if with_weights:
            _broadcast_weights(self.policy)
            self.sent_version = version

    def _receive(self) -> tuple[str, int, int, object, float]:
        """The next batch, its parts received from every sampler and merged (:func:`merge_parts`)."""
        group = distributed.pipe_groups()[1]
        parts = []
        for rank in self.samplers:
            size = torch.zeros(1, dtype=torch.int64)
            dist.recv(size, src=rank, group=group)
            data = torch.empty(int(size), dtype=torch.uint8)
            dist.recv(data, src=rank, group=group)
            parts.append(_from_bytes(data))
        index, version = parts[0]["index"], parts[0]["version"]
        entry = self.batches[index]
        entry.rows, batch = merge_parts(entry.rows, [_batch_from_state(p["state"], p["tensors"]) for p in parts],
                                        self.pad_id)
        return "batch", index, version, batch, max(part["seconds"] for part in parts)

    def next_batch(self, step: int) -> tuple[SampledBatch | None, dict[str, float]]:
        """Every trainer rank's shard of batch ``step`` (see the single-device method)."""
        sampled, metrics = super().next_batch(step) if self.leader else (None, None)
        if distributed.world_size() == 1:
            return sampled, metrics
        sampled, metrics = distributed.broadcast_object((sampled, metrics))
        if sampled is None:
            return None, metrics
        G, P = sampled.batch.group_size, len(sampled.rows)
        mine = distributed.shard_rows(list(range(P)), P)  # this rank's prompts
        rows = torch.tensor([p * G + g for p in mine for g in range(G)], dtype=torch.long)
        return SampledBatch(sampled.index, sampled.version, [sampled.rows[p] for p in mine],
                            _select_rows(sampled.batch, rows), sampled.seconds), metrics

    def after_update(self, policy, step: int) -> None:
        if self.leader:
            super().after_update(policy, step)

    def state_dict(self, version: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
        return super().state_dict(version) if self.leader else ([], {})

    def close(self) -> None:
        """Tell the samplers to stop (they are then free to leave the process group)."""
        if self.leader and not self.closed:
            self.closed = True
            _control(("stop",))
