"""The rollout engines behind :func:`verifrl.rollout.generate`: ``loop`` (default), ``hf``, ``cb``.

Place in the data flow: prompts -> **rollouts** (this module samples, ``rollout.py`` assembles the
batch) -> verifier results -> ...

Each engine takes one chunk of left-padded prompts already on the model's device and returns the
completion ids (N, T), right-padded, and the sampled tokens' log-probs (N, T) under the policy at
the sampling temperature (``log_softmax(logits / T)``, taken before any top-k/top-p truncation,
which is what the GRPO ratio compares against), or None when greedy or not recording:

* ``sample_loop``: verifrl's own KV-cache loop. Each distinct prompt is prefilled once for its G
  samples; rows that end are dropped from the batch and the cache; log-probs recorded while
  sampling (no second forward).
* ``sample_generate``: ``model.generate`` with a logits processor that records the log-probs.
* ``sample_continuous_batching``: transformers' ``generate_batch`` (paged KV cache); it does not
  expose the sampler's distribution, so the log-probs come from one forward of the same weights.
"""

from __future__ import annotations

from typing import Callable

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from verifrl.models import forward_accepts
from verifrl.tool_session import ToolSession

class NonFiniteLogits(RuntimeError):
    """The policy's logits are NaN/inf, so no engine can sample from it."""


RowsDone = Callable[[list[int], list[list[int]]], None]
"""``rows_done(rows, ids)``: chunk-local rows that ended, with their token ids up to the first EOS."""


def completion_mask_from_ids(completion_ids: torch.Tensor, eos_ids: set[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask up to and including the first EOS; lengths; truncated flags. (N, Lc) -> ..."""
    is_eos = torch.zeros_like(completion_ids, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= completion_ids == eos
    width = completion_ids.shape[1]
    has_eos = is_eos.any(dim=1)  # (N,)
    first_eos = torch.where(has_eos, is_eos.float().argmax(dim=1), torch.full_like(has_eos, width, dtype=torch.long))
    lengths = torch.where(has_eos, first_eos + 1, torch.full_like(first_eos, width))  # (N,)
    positions = torch.arange(width)[None, :]  # (1, Lc)
    mask = (positions < lengths[:, None]).long()  # (N, Lc)
    return mask, lengths, ~has_eos



def completion_mask_with_tools(completion_ids: torch.Tensor, tool_mask: torch.Tensor, eos_ids: set[int],
                               max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`completion_mask_from_ids` for rows with spliced observations. (N, Lc) -> ...

    A row ends at its first EOS or at its ``max_new_tokens``-th own (non-observation) token,
    whichever comes first; padding after a row cut by the budget is never counted, even when the
    padding id is an EOS id.
    """
    width = completion_ids.shape[1]
    _, eos_lengths, no_eos = completion_mask_from_ids(completion_ids, eos_ids)
    eos_lengths = torch.where(no_eos, torch.full_like(eos_lengths, width + 1), eos_lengths)  # (N,)
    own = (~tool_mask.bool()).long().cumsum(dim=1)  # (N, Lc) own tokens up to and including each column
    spent = own >= max_new_tokens
    budget_lengths = torch.where(spent.any(dim=1), spent.long().argmax(dim=1) + 1,
                                 torch.full_like(eos_lengths, width + 1))  # (N,)
    lengths = torch.minimum(eos_lengths, budget_lengths).clamp(max=width)  # (N,)
    truncated = (budget_lengths < eos_lengths) | (eos_lengths > width)
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()  # (N, Lc)
    return mask, lengths, truncated


class _TemperedLogprobRecorder(LogitsProcessor):
    """Applies the temperature and records log pi(sampled token) at that temperature.

    ``generate`` runs user processors before its own top-k/top-p warpers, so this sees raw
    logits. The token sampled after call k is the last column of ``input_ids`` at call k+1;
    only the previous step's log-softmax is kept, so memory is O(N * vocab), not O(N * T * vocab).
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.previous: torch.Tensor | None = None  # (N, V) log-softmax of the last step
        self.recorded: list[torch.Tensor] = []  # each (N,)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.gather(input_ids[:, -1])
        scores = scores.float() / self.temperature
        self.previous = torch.log_softmax(scores, dim=-1)
        return scores

    def gather(self, sampled: torch.Tensor) -> None:
        if self.previous is not None:
            self.recorded.append(self.previous.gather(1, sampled[:, None]).squeeze(1))
            self.previous = None


def sample_generate(model, enc, eos_ids, pad_id, max_new_tokens, temperature, top_p, top_k, greedy, record):
    """Sampling with ``model.generate``; the recorder keeps the tempered log-probs of sampled tokens."""
    recorder = _TemperedLogprobRecorder(temperature) if record else None
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=sorted(eos_ids),
    )
    if greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        # temperature is applied by the recorder (or here when not recording), never twice
        kwargs.update(do_sample=True, top_p=top_p if top_p < 1.0 else None, top_k=top_k or None,
                      temperature=1.0 if record else temperature)
        if record:
            kwargs["logits_processor"] = LogitsProcessorList([recorder])
    try:
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
    except RuntimeError as err:  # torch.multinomial's own words for NaN/inf probabilities
        if "inf" in str(err) and "nan" in str(err):
            raise NonFiniteLogits(f"the policy's next-token distribution contains NaN/inf ({err}): its weights "
                                  "have diverged (a learning rate too high, float16 overflow?)") from err
        raise
    prompt_len = enc["input_ids"].shape[1]
    completion = out[:, prompt_len:].cpu()
    logprobs = None
    if recorder is not None:
        recorder.gather(out[:, -1])
        logprobs = torch.stack(recorder.recorded, dim=1).cpu() if recorder.recorded else torch.zeros(completion.shape)
    return completion, logprobs


def sample_continuous_batching(model, enc, eos_ids, pad_id, max_new_tokens, temperature, top_p, top_k, greedy,
                               record):
    """Sampling with transformers' continuous batching (``model.generate_batch``, paged KV cache).

    Rows are scheduled independently, so a finished row frees its slot at once. The engine does not
    hand back the sampler's distribution, so the tempered log-probs are recomputed with one forward
    pass of the same weights: exact by construction, at the cost of that forward.
    """
    if not hasattr(model, "generate_batch"):
        raise RuntimeError("rollout.engine=cb needs transformers with continuous batching (model.generate_batch)")
    from transformers import GenerationConfig

    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p if top_p < 1.0 else None,
                                  "top_k": top_k or None}
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=not greedy, eos_token_id=sorted(eos_ids),
                              pad_token_id=pad_id, **sampling)
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"].cpu(), enc["attention_mask"].cpu())]
    outputs = model.generate_batch(inputs=rows, generation_config=config, progress_bar=False,
                                   **_paged_cache_for(rows, max_new_tokens, next(model.parameters()).device))
    # request ids are "req_<index in inputs>"; identical prompts make prompt_ids useless as a key
    ordered = sorted(outputs.values(), key=lambda out: int(str(out.request_id).rsplit("_", 1)[-1]))
    if len(ordered) != len(rows) or any(out.error for out in ordered):
        raise RuntimeError(f"continuous batching returned {len(ordered)} of {len(rows)} rows "
                           f"({next((out.error for out in ordered if out.error), '')})")
    width = max(1, max(len(out.generated_tokens) for out in ordered))
    completion = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, out in enumerate(ordered):
        completion[i, : len(out.generated_tokens)] = torch.tensor(out.generated_tokens, dtype=torch.long)
    prompt_ids, prompt_mask = enc["input_ids"].cpu(), enc["attention_mask"].cpu()
    logprobs = None
    if record and not greedy:
        # the update's own log-prob function, so the recorded values are those the loss would compute
        from verifrl.update import completion_logprobs  # noqa: PLC0415 (a later stage, needed only here)

        device = next(model.parameters()).device
        logprobs = completion_logprobs(model, prompt_ids.to(device), prompt_mask.to(device), completion.to(device),
                                       torch.ones_like(completion).to(device), temperature)[0].float().cpu()
    return completion, logprobs


def _paged_cache_for(rows: list[list[int]], max_new_tokens: int, device: torch.device) -> dict:
    """The paged KV cache sized to what these rows can use, not to the device's free memory.

    Left to itself, transformers sizes the cache (and its attention masks) from a share of the
    device's total memory: on a CPU that is a share of system RAM, 14 GB for two 12-token rows.
    Every row fits at once here: its prompt plus ``max_new_tokens``, in pages of 64 tokens.
    """
    try:
        from transformers import ContinuousBatchingConfig
    except ImportError:  # older transformers size the cache from the generation config alone
        return {}
    page = 64
    longest = max(len(row) for row in rows) + max_new_tokens
    blocks = len(rows) * -(-longest // page)
    batch_tokens = None  # transformers' default on an accelerator
    if device.type == "cpu":  # the masks cost batch_tokens x cache tokens floats: keep them small
        batch_tokens = max(longest, min(2048, sum(len(row) for row in rows) + len(rows)))
    return {"continuous_batching_config": ContinuousBatchingConfig(page_size=page, num_blocks=blocks,
                                                                   max_batch_tokens=batch_tokens)}


def _filter_top_k_top_p(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """HF's TopK then TopP warpers: -inf outside the kept set. (N, V) -> (N, V)."""
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[:, -1] = False  # always keep the most likely token
        remove = remove_sorted.scatter(1, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


@torch.no_grad()
def sample_loop(model, input_ids, attention_mask, max_new_tokens, temperature, top_p, top_k, greedy, record,
                 eos_ids, pad_id, group_size=1, rows_done: RowsDone | None = None, stop_check_every=0,
                 tools: ToolSession | None = None):
    """Sampling with the KV cache, without ``model.generate``'s per-token machinery.

    Two savings over ``generate`` (what TRL calls): each distinct prompt is prefilled once and its
    cache repeated for its ``group_size`` samples (rows p*G..p*G+G-1 must share a prompt), and
    rows that have ended are dropped from the batch (and the cache), so a step costs the rows
    still running, not all N. Sampling matches ``generate``: temperature, then top-k, then top-p,
    then a multinomial draw; the recorded log-prob is log_softmax(logits / T) of the sampled token.
    ``rows_done(rows, ids)`` gets the rows that sampled an EOS at the step they are dropped (their
    tokens, EOS included), and every row still running when the loop ends. With
    ``stop_check_every`` k > 1 ended rows are found (and dropped, and reported) every k tokens only.
    With ``tools`` (a :class:`~verifrl.tool_session.ToolSession`), a row whose token closed a tool
    block gets the observation's ids fed one per step instead of sampled ones (log-prob 0, marked in
    the tool mask), and ``max_new_tokens`` counts its own tokens only.
    Returns completion ids (N, T) right-padded with ``pad_id`` and log-probs (N, T) or None; with
    ``tools`` also the tool mask (N, T), true on observation tokens.
    """
    from transformers import DynamicCache

    device = input_ids.device
    n = input_ids.shape[0]
    shared = group_size > 1 and n % group_size == 0 and bool(
        (input_ids.view(-1, group_size, input_ids.shape[1]) == input_ids[::group_size, None]).all())
    cache = DynamicCache(config=model.config)
    positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
    # the prefill needs only the last position's logits (not (N, Lp, V))
    last_only = {"logits_to_keep": 1} if forward_accepts(model, "logits_to_keep") else {}
    # transformers >= 5.2x renamed past_key_values to cache (the old name warns on every token)
    cache_arg = "cache" if forward_accepts(model, "cache") else "past_key_values"
    if shared:
        out = model(input_ids=input_ids[::group_size], attention_mask=attention_mask[::group_size],
                    position_ids=positions[::group_size], **{cache_arg: cache}, use_cache=True, **last_only)
        cache.batch_repeat_interleave(group_size)
        logits = out.logits[:, -1].float().repeat_interleave(group_size, dim=0)  # (N, V)
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                    **{cache_arg: cache}, use_cache=True, **last_only)
        logits = out.logits[:, -1].float()  # (N, V)
    del out
    # diverged weights show up here first; one check per call, instead of a multinomial failure deep
    # in the loop (on a GPU a device-side assert that takes the process down)
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteLogits("the policy's next-token logits contain NaN/inf: its weights have diverged "
                              "(a learning rate too high, float16 overflow?); nothing was sampled")
    width = max_new_tokens if tools is None else tools.width
    tokens = torch.full((n, width), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((n, width), dtype=torch.float32, device=device) if record and not greedy else None
    tool_mask = None if tools is None else torch.zeros((n, width), dtype=torch.bool, device=device)
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)  # original row of each running row
    mask = attention_mask
    next_position = positions[:, -1] + 1  # (n_running,)
    # deferred checks: running rows that sampled an EOS since the last look (None: look every token)
    if stop_check_every <= 0 or tools is not None:  # tool calls are detected at the token that closes them
        stop_check_every = 1 if device.type == "cpu" or tools is not None else 8
    ended_early = torch.zeros(n, dtype=torch.bool, device=device) if stop_check_every > 1 else None
    steps = 0
    for t in range(width):
        if greedy:
            sampled = logits.argmax(dim=-1)
        else:
            scores = logits / temperature
            filtered = _filter_top_k_top_p(scores, top_k, top_p)
            sampled = torch.multinomial(filtered.softmax(dim=-1), 1).squeeze(1)
        if ended_early is not None:
            sampled = sampled.masked_fill(ended_early, pad_id)
        if tools is not None:  # rows inside an observation are fed its next token instead
            forced, forced_ids = tools.forced(rows, device)
            sampled = torch.where(forced, forced_ids, sampled)
            tool_mask[rows, t] = forced
        if logprobs is not None:
            sampled_logprobs = torch.log_softmax(scores, dim=-1).gather(1, sampled[:, None]).squeeze(1)
            if ended_early is not None:
                sampled_logprobs = sampled_logprobs.masked_fill(ended_early, 0.0)
            if tools is not None:
                sampled_logprobs = sampled_logprobs.masked_fill(forced, 0.0)
            logprobs[rows, t] = sampled_logprobs
        tokens[rows, t] = sampled
        steps = t + 1
        ended = torch.isin(sampled, eos) if ended_early is None else ended_early | torch.isin(sampled, eos)
        if tools is not None:
            ended = ended | tools.after_token(tokens, rows, sampled, forced, t)
        if ended_early is not None and (t + 1) % stop_check_every and t + 1 < width:
            ended_early = ended  # no look this token: no wait for the device either
        else:
            running = ~ended
            if t + 1 == width or not bool(running.any()):
                break
            if not bool(running.all()):
                keep = running.nonzero().squeeze(1)
                if rows_done is not None:
                    # only at steps where rows end, which sync here anyway (nonzero); one copy of their tokens
                    _report_rows(rows_done, tokens, rows[~running], t + 1,
                                 None if ended_early is None else eos_ids)
                cache.batch_select_indices(keep)
                rows, sampled, mask, next_position = rows[keep], sampled[keep], mask[keep], next_position[keep]
            if ended_early is not None:
                ended_early = torch.zeros(rows.shape[0], dtype=torch.bool, device=device)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(input_ids=sampled[:, None], attention_mask=mask, position_ids=next_position[:, None],
                    **{cache_arg: cache}, use_cache=True)
        logits = out.logits[:, -1].float()
        next_position = next_position + 1
    if rows_done is not None:
        # the rows left: those that sampled an EOS at the last step and those cut by the length limit
        _report_rows(rows_done, tokens, rows, steps, eos_ids)
    tokens = tokens[:, :steps].cpu()
    if ended_early is not None:  # drop the all-padding columns decoded after every row had ended
        steps = max(1, int(completion_mask_from_ids(tokens, set(eos_ids))[1].max()))
        tokens = tokens[:, :steps]
    logprobs = None if logprobs is None else logprobs[:, :steps].cpu()
    if tools is not None:
        return tokens, logprobs, tool_mask[:, :steps].cpu()
    return tokens, logprobs


def _report_rows(rows_done: RowsDone, tokens: torch.Tensor, rows: torch.Tensor, steps: int,
                 eos_ids: list[int] | None = None) -> None:
    """Hand ``rows`` of the (N, T) token buffer to ``rows_done``, cut after their first EOS.

    Rows reported mid-loop at every token sampled their (only) EOS at ``steps - 1``, so ``eos_ids`` are
    needed only for deferred looks and for the rows left at the end, some of which never sampled one.
    """
    ids = tokens[rows, :steps].cpu()
    lengths = torch.full((ids.shape[0],), steps, dtype=torch.long)
    if eos_ids is not None:
        _, lengths, _ = completion_mask_from_ids(ids, set(eos_ids))
    rows_done(rows.tolist(), [ids[i, : lengths[i]].tolist() for i in range(ids.shape[0])])
