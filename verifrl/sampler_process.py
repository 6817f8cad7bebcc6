"""The off-policy pipeline: a sampler process samples the next batches while the trainer updates.

Place in the data flow: prompts -> **rollouts (in a sampler process, on weights up to N updates
old)** -> verifier results -> rewards -> ... (``trainer.off_policy_steps: N``).

Schedule. Version v is the policy after v updates; a run starting (or resuming) at version v0
samples batch s with version ``max(v0, s - N)``. Before step s0 the trainer asks for batches
s0 .. s0+N; after update s it publishes version s+1 and asks for batch s+1+N. So while update s
runs, the sampler draws batch s+1 with version s+1-N, and every batch is exactly
``min(s - v0, N)`` updates stale when it is trained on: the same tokens on every run, whatever the
speeds of the two processes.

Weights travel through N+1 shared-memory copies of the state dict ("slots"), version v in slot
v mod (N+1). Overwriting slot v mod (N+1) with version v+N+1 is safe: that version is published
after update v+N, which needed batch v+N, so the sampler (which works in request order) has long
loaded version v. Each batch is sampled under its own seed (``trainer.seed`` and the batch index),
so a batch re-sampled after a resume has the same tokens.

Resume. A checkpoint at version v stores, for every batch in flight, its prompt rows and policy
version (in ``trainer_state.json``), and the finished batch itself if it was sampled with a version
older than v (those weights are gone): its tensors in the checkpoint's
``trainer_tensors.safetensors``, its texts in the JSON. The batch sampled with version v itself is
re-sampled after the resume (same weights, same seed). Nothing is lost or sampled twice.

Shutdown. The sampler ignores SIGINT (Ctrl-C reaches the whole process group; the trainer decides)
and exits when asked, when the trainer's process is gone, or on its own error, which it reports
back as an error with the traceback. ``close()`` asks it to stop and terminates it if it is still
busy after a moment (a run ending on an error, Ctrl-C or SIGTERM leaves no orphan).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch

from verifrl.offpolicy import stale_groups, staleness_metrics
from verifrl.rollout import RolloutBatch

POLL_SECONDS = 0.5
CLOSE_WAIT_SECONDS = 3.0  # an idle sampler stops at once; one mid-batch is terminated after this


class SamplerProcessError(RuntimeError):
    """The sampler process failed or died; the message carries its traceback or exit code."""


@dataclass
class SampledBatch:
    """A batch of the pipeline: batch ``index`` (the step it is for), sampled with ``version``."""

    index: int
    version: int
    rows: list[dict]
    batch: RolloutBatch | None  # None: requested, not yet received
    seconds: float = 0.0  # the sampler's generation time


def batch_seed(seed: int, index: int) -> int:
    """The torch seed batch ``index`` is sampled under (the same on every run and resume)."""
    return (seed * 1_000_003 + index * 7_919 + 1) % (2**63 - 1)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def split_threads(sampler_threads: int, trainer_threads: int) -> tuple[int, int]:
    """(sampler, trainer) torch threads on a CPU: the configured counts, else half the cores each."""
    cores = cpu_cores()
    sampler = sampler_threads or max(1, cores // 2)
    trainer = trainer_threads or max(1, cores - sampler)
    return sampler, trainer


def reserve_sampler_cores(cfg, device: torch.device) -> int:
    """``trainer.off_policy_steps`` on a CPU: leave the sampler process its share of the cores.

    Returns the trainer's thread count to restore once the pipeline is closed.
    """
    threads = torch.get_num_threads()
    if cfg.trainer.off_policy_steps and not cfg.trainer.sampler_ranks and device.type == "cpu":
        torch.set_num_threads(split_threads(cfg.trainer.sampler_threads, cfg.trainer.threads)[1])
    return threads


def _sampler_main(model_cfg, generate_kwargs: dict, slots: list[dict], requests, results, threads: int,
                  parent_pid: int) -> None:
    """The sampler process: load the policy, then sample what the trainer asks for, in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    try:
        torch.set_num_threads(threads)
        from verifrl.models import load_policy  # noqa: PLC0415 (heavy: only in the child)
        from verifrl.rollout import generate  # noqa: PLC0415

        model, tokenizer = load_policy(model_cfg, log=lambda *_: None)
        model.eval()
        loaded = None
        while True:
            try:
                message = requests.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if os.getppid() != parent_pid:  # the trainer is gone (killed): no orphan left behind
                    return
                continue
            if message[0] == "stop":
                return
            _, index, version, prompts, seed = message
            if version != loaded:
                model.load_state_dict(slots[version % len(slots)])
                loaded = version
            torch.manual_seed(seed)
            start = time.perf_counter()
            batch = generate(model, tokenizer, prompts, **generate_kwargs)
            results.put(("batch", index, version, batch, time.perf_counter() - start))
    except Exception:  # reported to the trainer, which raises it there
        results.put(("error", -1, -1, traceback.format_exc(), 0.0))


class OffPolicySampler:
    """The trainer's handle on the sampler process (one device, one sampler, one trainer)."""

    def __init__(self, cfg, policy, tokenizer, prompt_for, draw_rows, start_version: int,
                 pending: list[dict] | None = None, pending_tensors: dict[str, torch.Tensor] | None = None,
                 log=print) -> None:
        """Start the sampler with ``policy``'s weights as ``start_version`` and fill the pipeline.

        ``prompt_for(row)`` formats a prompt; ``draw_rows(n)`` draws the next prompt rows;
        ``pending`` and ``pending_tensors`` are a checkpoint's :meth:`state_dict` (the batches in
        flight when it was written).
        """
        self.steps, self.ahead, self.seed = cfg.trainer.steps, cfg.trainer.off_policy_steps, cfg.trainer.seed
        self.start_version, self.prompt_for, self.draw_rows = start_version, prompt_for, draw_rows
        self.num_prompts = cfg.rollout.num_prompts
        self.batches: dict[int, SampledBatch] = {}
        self._start(cfg, policy, log)
        self.publish(policy, start_version)
        for entry in pending or []:
            batch = None if entry["batch"] is None else _batch_from_state(entry["batch"], pending_tensors or {})
            restored = SampledBatch(entry["index"], entry["version"], entry["rows"], batch, entry["seconds"])
            if restored.batch is None:  # sampled with the version the run resumes from: sample it again
                self._send(restored.index, restored.rows, max(start_version, restored.version))
            else:
                self.batches[restored.index] = restored
        for index in range(start_version, min(self.steps, start_version + self.ahead + 1)):
            if index not in self.batches:
                self._send(index, self.draw_rows(self.num_prompts), start_version)

    def _start(self, cfg, policy, log) -> None:
        """Start the sampler process with N+1 shared-memory weight slots."""
        self.slots = [{k: v.detach().cpu().clone().share_memory_() for k, v in _state_dict(policy).items()}
                      for _ in range(self.ahead + 1)]
        threads = split_threads(cfg.trainer.sampler_threads, cfg.trainer.threads)[0]
        context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and locks
        self.requests, self.results = context.Queue(), context.Queue()
        self.process = context.Process(target=_sampler_main, name="verifrl-sampler", daemon=True,
                                       args=(cfg.model, sampling_kwargs(cfg), self.slots, self.requests, self.results,
                                             threads, os.getpid()))
        with _main_module_hidden():
            self.process.start()
        log(f"off-policy: sampler process {self.process.pid} ({threads} threads), {self.ahead} step(s) ahead")

    def version_for(self, index: int) -> int:
        return max(self.start_version, index - self.ahead)

    def publish(self, policy, version: int) -> None:
        """Copy the trainer's weights into the slot of ``version`` (see the module docstring)."""
        with torch.no_grad():
            for name, value in _state_dict(policy).items():
                self.slots[version % len(self.slots)][name].copy_(value)

    def _send(self, index: int, rows: list[dict], version: int) -> None:
        check_rows_storable(rows)
        self.batches[index] = SampledBatch(index, version, rows, None)
        self._request(index, version, [self.prompt_for(row) for row in rows], batch_seed(self.seed, index))

    def _request(self, index: int, version: int, prompts: list[str], seed: int) -> None:
        self.requests.put(("sample", index, version, prompts, seed))

    def _receive(self) -> tuple[str, int, int, object, float] | None:
        """The sampler's next message ``(kind, index, version, batch or traceback, seconds)``;
        None when nothing came within the poll interval."""
        try:
            return self.results.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if not self.process.is_alive():
                raise SamplerProcessError(f"the sampler process died (exit code {self.process.exitcode})")
            return None

    def after_update(self, policy, step: int) -> None:
        """Update ``step`` is done: publish version step+1 and ask for batch step+1+N."""
        version, index = step + 1, step + 1 + self.ahead
        if index < self.steps:
            self.publish(policy, version)
            self._send(index, self.draw_rows(self.num_prompts), version)

    def take(self, index: int) -> SampledBatch:
        """Batch ``index``, waiting for the sampler if it is not there yet."""
        self._wait_for(index)
        return self.batches.pop(index)

    def next_batch(self, step: int) -> tuple[SampledBatch | None, dict[str, float]]:
        """Batch ``step`` for the trainer at version ``step``, without its groups that are more than
        off_policy_steps versions old (None: all were), and the step's staleness metrics."""
        start = time.perf_counter()
        sampled = self.take(step)
        waited = time.perf_counter() - start
        fresh, dropped = self.drop_stale(sampled, trainer_version=step)
        versions = torch.full((sampled.batch.num_completions,), sampled.version)  # (N,) one version a row
        return fresh, {**staleness_metrics(versions, step, dropped), "time/sampler_wait": waited}

    def drop_stale(self, sampled: SampledBatch, trainer_version: int) -> tuple[SampledBatch | None, int]:
        """The groups of ``sampled`` at most off_policy_steps versions old, and the rows dropped.

        Batches of this pipeline are exactly min(s - v0, N) stale, so rows go only when a run
        resumes with a smaller ``trainer.off_policy_steps`` than the checkpoint's batches were
        sampled for. None when every group is too old.
        """
        batch, G = sampled.batch, sampled.batch.group_size
        versions = torch.full((batch.num_completions,), sampled.version)  # (N,) one sampling version a row
        stale = stale_groups(versions, trainer_version, self.ahead, G)  # (P,)
        if not bool(stale.any()):
            return sampled, 0
        keep = (~stale).nonzero().squeeze(1).tolist()
        if not keep:
            return None, batch.num_completions
        rows = torch.tensor([g * G + j for g in keep for j in range(G)], dtype=torch.long)
        kept = _select_rows(batch, rows)
        return (SampledBatch(sampled.index, sampled.version, [sampled.rows[g] for g in keep], kept, sampled.seconds),
                batch.num_completions - len(rows))

    def _wait_for(self, index: int) -> None:
        while self.batches[index].batch is None:
            message = self._receive()
            if message is None:
                continue
            kind, got, version, payload, seconds = message
            if kind == "error":
                raise SamplerProcessError(f"the sampler process failed:\n{payload}")
            entry = self.batches[got]
            entry.batch, entry.seconds = _owned(payload), seconds

    def state_dict(self, version: int) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """Batches in flight at a checkpoint of ``version``: JSON entries and the named tensors of
        the finished ones. Those sampled with older weights are waited for and kept; the ones of
        ``version`` itself are re-sampled on resume."""
        pending, tensors = [], {}
        for index in sorted(self.batches):
            entry = self.batches[index]
            kept = None
            if entry.version < version:
                self._wait_for(index)
                kept = _batch_to_state(entry.batch, f"batch{index}.", tensors)
            pending.append({"index": index, "version": entry.version, "rows": entry.rows, "batch": kept,
                            "seconds": entry.seconds})
        return pending, tensors

    def close(self) -> None:
        """Stop the sampler process (asked first, terminated if it does not go) and free the queues."""
        if self.process.is_alive():
            try:
                self.requests.put(("stop",))
            except (ValueError, OSError):
                pass
            self.process.join(timeout=CLOSE_WAIT_SECONDS)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        for q in (self.requests, self.results):
            q.cancel_join_thread()
            q.close()


def sampling_kwargs(cfg) -> dict:
    """``verifrl.rollout.generate`` keyword arguments of the training rollouts (a sampler's own copy)."""
    return dict(group_size=cfg.rollout.group_size, max_new_tokens=cfg.rollout.max_new_tokens,
                temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k,
                chunk_size=cfg.rollout.chunk_size, engine=cfg.rollout.engine, stop_check_every=cfg.rollout.stop_check_every)


def check_rows_storable(rows: list[dict]) -> None:
    """Rows sampled ahead are written into the checkpoint's JSON state (exact resume): refuse, when
    they are drawn, a row that JSON cannot hold, rather than fail at the first checkpoint."""
    try:
        json.dumps(rows)
    except (TypeError, ValueError) as error:
        raise SamplerProcessError(
            f"trainer.off_policy_steps needs dataset rows of JSON values (str, numbers, lists, dicts) to "
            f"checkpoint the batches sampled ahead: {error}; convert those columns or set "
            f"trainer.off_policy_steps=0") from None


def rows_sampled_ahead(pending: list[dict] | None, group_size: int) -> int:
    """Completions a checkpoint's pipeline state holds or has drawn prompts for (``state_dict``)."""
    return sum(len(entry["rows"]) * group_size for entry in pending or [])


@contextmanager
def _main_module_hidden():
    """Start a spawned process without it re-importing the caller's ``__main__``.

    The sampler runs only :func:`_sampler_main`; a script calling ``train()`` without an
    ``if __name__ == "__main__"`` guard would otherwise be re-run in the child, start a second
    training there and fail in multiprocessing's bootstrap check.
    """
    main = sys.modules["__main__"]
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
    if "__file__" in saved:
        del main.__file__
    main.__spec__ = None
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _state_dict(policy) -> dict[str, torch.Tensor]:
    return {k: v for k, v in policy.state_dict().items()}


def _select_rows(batch: RolloutBatch, rows: torch.Tensor) -> RolloutBatch:
    """The completions ``rows`` (N',) of ``batch``: every per-row field indexed, the rest kept."""
    picked = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, torch.Tensor):
            value = value[rows]
        elif isinstance(value, list):
            value = [value[i] for i in rows.tolist()]
        picked[f.name] = value
    return RolloutBatch(**picked)


def _batch_to_state(batch: RolloutBatch, prefix: str, tensors: dict[str, torch.Tensor]) -> dict:
    """JSON description of ``batch``; its tensors go into ``tensors`` under ``prefix + field``."""
    state: dict = {"tensors": []}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, torch.Tensor):
            tensors[prefix + f.name] = value
            state["tensors"].append(f.name)
        else:
            state[f.name] = value
    state["prefix"] = prefix
    return state


def _batch_from_state(state: dict, tensors: dict[str, torch.Tensor]) -> RolloutBatch:
    """Inverse of :func:`_batch_to_state` (fields stored as None come back as None)."""
    missing = [state["prefix"] + name for name in state["tensors"] if state["prefix"] + name not in tensors]
    if missing:
        raise FileNotFoundError(f"checkpoint: the off-policy batch tensors {missing[:3]} are missing from "
                                "trainer_tensors.safetensors")
    values = {k: v for k, v in state.items() if k not in ("tensors", "prefix")}
    values.update({name: tensors[state["prefix"] + name] for name in state["tensors"]})
    return RolloutBatch(**values)


def _owned(batch: RolloutBatch) -> RolloutBatch:
    """A copy of a batch received from the sampler in this process's own memory (not shared segments)."""
    fields = {name: (value.clone() if isinstance(value, torch.Tensor) else value)
              for name, value in vars(batch).items()}
    return RolloutBatch(**fields)
