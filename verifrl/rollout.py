"""Rollouts: sample G completions per prompt with the policy and record what the update needs.

Place in the data flow: prompts -> **rollouts** -> verifier results -> rewards -> ...

``generate`` tokenizes the prompts (left-padded), samples each chunk of prompts x group size with
one engine of :mod:`verifrl.samplers` (``loop`` by default: KV cache, each prompt prefilled once,
rows dropped as they end, log-probs recorded while sampling so the on-policy "old" log-probs cost
no second forward), and assembles a :class:`RolloutBatch`.

Masks are built from the position of the first EOS, never from ``token == pad_id`` (pad may
equal EOS); the EOS itself is part of the completion and is trained on.

``on_finished(rows, texts)`` hands completions over as soon as they are final, so verification can
run while the rest of the batch is still sampling (``verifrl.scoring.StreamingScorer``). The texts
are decoded by the same function as ``RolloutBatch.texts``, so they are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from verifrl import distributed
from verifrl.registry import Registry
from verifrl.samplers import (RowsDone, completion_mask_from_ids, sample_continuous_batching, sample_generate,
                              sample_loop)


@dataclass
class RolloutBatch:
    """N = num_prompts * group_size completions; row p*G + g is sample g of prompt p."""

    prompt_ids: torch.Tensor  # (N, Lp) left-padded
    prompt_mask: torch.Tensor  # (N, Lp) 1 on real prompt tokens
    completion_ids: torch.Tensor  # (N, Lc) right-padded with pad_token_id
    completion_mask: torch.Tensor  # (N, Lc) 1 up to and including the first EOS
    sampler_logprobs: torch.Tensor | None  # (N, Lc) log pi_old(token) at the sampling temperature
    lengths: torch.Tensor  # (N,) completion tokens, EOS included
    truncated: torch.Tensor  # (N,) bool: ended by the length limit, not by EOS
    texts: list[str]  # decoded completions without special tokens
    group_size: int

    @property
    def num_completions(self) -> int:
        return self.completion_ids.shape[0]


@dataclass(frozen=True)
class SamplingRequest:
    """What every engine is asked for one chunk (see :func:`generate` for the meaning)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    greedy: bool
    record_logprobs: bool
    group_size: int
    stop_check_every: int
    engine_options: dict


ENGINES: Registry = Registry("rollout engine", "rollout.engine")
"""``name -> fn(model, tokenizer, enc, eos_ids, request, rows_done) -> (completion_ids, logprobs)``:
``enc`` is the left-padded tokenized chunk on the model's device; the engine reports finished
rows through ``rows_done`` (when not None) and returns (n, <= max_new_tokens) token ids and the
sampler's log-probs (or None)."""

FinishedCallback = Callable[[list[int], list[str]], None]
"""``on_finished(rows, texts)``: rows (indices into the whole ``generate`` call) whose completions are final."""


def decode_completion(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """Text of one completion: ``ids`` are its tokens up to and including the first EOS.

    The single place completions are decoded, for ``RolloutBatch.texts`` and for ``on_finished``
    alike, so the text a verifier saw while sampling is the text of the batch.
    """
    return tokenizer.decode(ids, skip_special_tokens=True)


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    group_size: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
    chunk_size: int = 0,
    record_logprobs: bool = True,
    engine: str = "loop",
    on_finished: FinishedCallback | None = None,
    stop_check_every: int = 0,
    engine_options: dict | None = None,
) -> RolloutBatch:
    """Sample ``group_size`` completions for each prompt (or one greedy completion each).

    Args:
        prompts: P prompt strings, already templated.
        chunk_size: most rows per ``generate`` call (0: all N = P * group_size at once).
        record_logprobs: record the sampler's tempered log-probs (ignored when greedy).
        engine: ``loop`` (verifrl's own KV-cache sampling loop: shared prompt prefill, finished
            rows dropped), ``hf`` (``model.generate`` with a log-prob recorder), ``cb``
            (transformers' continuous batching, log-probs from one extra forward) or ``vllm``
            (colocated vLLM engine, GPU only, :mod:`verifrl.vllm_engine`).
        on_finished: called with ``(rows, texts)`` as completions become final, every row exactly
            once, texts equal to the returned ``texts[rows]``; called on this thread, so it should
            return quickly (hand the work to another thread). ``loop`` reports rows at the step
            they sample an EOS and the rest when the chunk ends; ``hf`` and ``cb`` once per chunk.
        stop_check_every: ``loop`` only: look for ended rows every this many tokens. Each look
            waits for the device; between looks a GPU can run ahead of the host, while ended rows
            keep decoding (writing padding) until the next look. Same tokens when greedy. 0: 8 on
            a GPU, where waiting each token cost 25 % of the tokens/s (bench/generation_engines.py),
            1 on a CPU, where it costs nothing and extra tokens cost compute.
        engine_options: keyword arguments for the engine (vllm: ``gpu_memory_utilization``, ``sleep``,
            ``seed``).
    Returns:
        RolloutBatch with N = P * group_size rows, prompt p's samples contiguous.
    """
    sample = ENGINES.lookup(engine)  # a typo must not silently fall back to another sampler
    request = SamplingRequest(max_new_tokens, temperature, top_p, top_k, greedy, record_logprobs and not greedy,
                              group_size, stop_check_every, dict(engine_options or {}))
    was_training = model.training
    model.eval()
    eos_ids = eos_token_ids(model, tokenizer)
    expanded = [p for p in prompts for _ in range(group_size)]
    chunk = chunk_size or len(expanded)
    pieces = []
    # fsdp: all weights gathered once, so ranks that stop sampling at different tokens never wait
    # for each other's per-layer all-gathers (a no-op for an unsharded model)
    with distributed.gathered_parameters(model):
        for start in range(0, len(expanded), chunk):
            rows_done = None if on_finished is None else _reporter(on_finished, tokenizer, start)
            enc = tokenizer(expanded[start : start + chunk], return_tensors="pt", padding=True, padding_side="left",
                            add_special_tokens=False)
            enc = {k: v.to(model.device) for k, v in enc.items()}
            completion, logprobs = sample(model, tokenizer, enc, eos_ids, request, rows_done)
            pieces.append((enc["input_ids"].cpu(), enc["attention_mask"].cpu(), completion, logprobs))
    if was_training:
        model.train()

    pad = tokenizer.pad_token_id
    prompt_ids = _pad_cat([p[0] for p in pieces], pad, left=True)
    prompt_mask = _pad_cat([p[1] for p in pieces], 0, left=True)
    completion_ids = _pad_cat([p[2] for p in pieces], pad, left=False)
    logprobs = None if pieces[0][3] is None else _pad_cat([p[3] for p in pieces], 0.0, left=False)
    completion_mask, lengths, truncated = completion_mask_from_ids(completion_ids, eos_ids)
    if logprobs is not None:
        logprobs = logprobs * completion_mask  # zero (not garbage) on padding
    texts = [decode_completion(tokenizer, completion_ids[i, : lengths[i]].tolist())
             for i in range(completion_ids.shape[0])]
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, logprobs,
                        lengths, truncated, texts, group_size)


def _reporter(on_finished: FinishedCallback, tokenizer: PreTrainedTokenizerBase, offset: int) -> RowsDone:
    """Chunk-local rows and token ids -> ``on_finished`` with global rows and decoded texts."""

    def rows_done(rows: list[int], ids: list[list[int]]) -> None:
        on_finished([offset + r for r in rows], [decode_completion(tokenizer, row_ids) for row_ids in ids])

    return rows_done


def _report_chunk(completion: torch.Tensor, eos_ids: set[int], rows_done: RowsDone | None) -> None:
    """Engines that return a whole chunk at once (hf, cb) report all of its rows afterwards."""
    if rows_done is None:
        return
    _, lengths, _ = completion_mask_from_ids(completion, eos_ids)
    rows_done(list(range(completion.shape[0])), [completion[i, : lengths[i]].tolist() for i in range(len(lengths))])


@ENGINES.register("loop")
def _sample_with_loop(model, tokenizer, enc, eos_ids, request: SamplingRequest, rows_done: RowsDone | None):
    """verifrl's KV-cache loop; an encoder-decoder model falls back to ``model.generate``."""
    if getattr(model.config, "is_encoder_decoder", False):
        return _sample_with_generate(model, tokenizer, enc, eos_ids, request, rows_done)
    r = request
    return sample_loop(model, enc["input_ids"], enc["attention_mask"], r.max_new_tokens, r.temperature, r.top_p,
                       r.top_k, r.greedy, r.record_logprobs, sorted(eos_ids), tokenizer.pad_token_id, r.group_size,
                       rows_done, r.stop_check_every)


@ENGINES.register("hf")
def _sample_with_generate(model, tokenizer, enc, eos_ids, request: SamplingRequest, rows_done: RowsDone | None):
    r = request
    completion, logprobs = sample_generate(model, enc, eos_ids, tokenizer.pad_token_id, r.max_new_tokens,
                                           r.temperature, r.top_p, r.top_k, r.greedy, r.record_logprobs)
    _report_chunk(completion, eos_ids, rows_done)
    return completion, logprobs


@ENGINES.register("cb")
def _sample_with_continuous_batching(model, tokenizer, enc, eos_ids, request: SamplingRequest,
                                     rows_done: RowsDone | None):
    r = request
    completion, logprobs = sample_continuous_batching(model, enc, eos_ids, tokenizer.pad_token_id, r.max_new_tokens,
                                                      r.temperature, r.top_p, r.top_k, r.greedy, r.record_logprobs)
    _report_chunk(completion, eos_ids, rows_done)
    return completion, logprobs


@ENGINES.register("vllm")
def _sample_with_vllm(model, tokenizer, enc, eos_ids, request: SamplingRequest, rows_done: RowsDone | None):
    from verifrl.vllm_engine import sample_vllm  # optional dependency, GPU only

    r = request
    completion, logprobs = sample_vllm(model, enc, eos_ids, tokenizer.pad_token_id, r.max_new_tokens, r.temperature,
                                       r.top_p, r.top_k, r.greedy, r.record_logprobs, **r.engine_options)
    _report_chunk(completion, eos_ids, rows_done)
    return completion, logprobs


def _pad_cat(tensors: list[torch.Tensor], value, *, left: bool) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    padded = []
    for t in tensors:
        extra = width - t.shape[1]
        if extra:
            filler = torch.full((t.shape[0], extra), value, dtype=t.dtype)
            t = torch.cat([filler, t] if left else [t, filler], dim=1)
        padded.append(t)
    return torch.cat(padded, dim=0)
