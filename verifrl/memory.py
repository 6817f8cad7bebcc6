"""A memory bound for sampling, checked from the model config before anything is allocated.

Place in the data flow: before **rollouts** (and evaluation): the largest batch the run will
sample is known when it starts (rows per generate call, longest prompt, ``max_new_tokens``), and
so is what that costs, to a first approximation:

- KV cache: ``2 (K and V) x layers x kv_heads x head_dim x rows x (prompt + new tokens) x dtype bytes``;
- prefill attention scores, where the attention kernel materialises them (eager attention, or any
  attention on a CPU): ``prefill rows x heads x prompt^2 x dtype bytes``;
- logits: the prefill's (``prefill rows x prompt x vocab``, float32) when the model cannot keep
  only the last position's, and ``rows x vocab`` float32 three times over for the sampling step
  (logits, tempered probabilities, the sort of top-p).

Weights and optimizer state are already allocated when this runs, so the estimate is compared
with the memory still free (``rollout.max_memory_gb`` overrides). It is a lower bound on the real
peak (activations, fragmentation and the allocator's cache are not counted): it catches the batch
that cannot fit, in a second and with a message, instead of the kernel's OOM killer minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from verifrl.models import forward_accepts

GB = 1024**3


class SamplingMemoryError(ValueError):
    """The configured sampling batch cannot fit in the memory available to it."""


@dataclass
class SamplingShape:
    """One generate call: ``rows`` sequences, ``prefill_rows`` of them prefilled (the loop engine
    prefills each prompt once for its group), prompts up to ``prompt_tokens`` long."""

    rows: int
    prefill_rows: int
    prompt_tokens: int
    new_tokens: int


def sampling_bytes(model_config, shape: SamplingShape, *, dtype_bytes: int, scores_materialised: bool,
                   last_logits_only: bool) -> dict[str, int]:
    """Bytes of the KV cache, prefill attention scores and logits of one generate call (see module doc)."""
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    layers = int(text.num_hidden_layers)
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    vocab = int(text.vocab_size)
    length = shape.prompt_tokens + shape.new_tokens
    kv_cache = 2 * layers * kv_heads * head_dim * shape.rows * length * dtype_bytes
    attention = shape.prefill_rows * heads * shape.prompt_tokens**2 * dtype_bytes if scores_materialised else 0
    prefill_logits = 0 if last_logits_only else shape.prefill_rows * shape.prompt_tokens * vocab * 4
    logits = prefill_logits + 3 * shape.rows * vocab * 4
    return {"kv_cache": kv_cache, "attention": attention, "logits": logits}


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device``: CUDA's free memory, or the host's MemAvailable (None: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def generate_calls(cfg, longest_prompt: int) -> list[tuple[str, SamplingShape]]:
    """The largest generate call of each kind the run makes: the rollout and the evaluations."""
    G = cfg.rollout.group_size
    loop = cfg.rollout.engine == "loop"
    rollout_rows = cfg.rollout.num_prompts * G
    rows = min(cfg.rollout.chunk_size or rollout_rows, rollout_rows)
    calls = [("rollout", SamplingShape(rows, -(-rows // G) if loop else rows, longest_prompt,
                                       cfg.rollout.max_new_tokens))]
    eval_new = cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens
    eval_rows = cfg.data.num_test or 1000
    rows = min(cfg.rollout.chunk_size or eval_rows, eval_rows)
    calls.append(("evaluation", SamplingShape(rows, rows, longest_prompt, eval_new)))
    if cfg.eval.pass_k:
        k = cfg.eval.pass_k
        rows = min(cfg.rollout.chunk_size or eval_rows * k, eval_rows * k)
        calls.append(("pass@k evaluation", SamplingShape(rows, -(-rows // k) if loop else rows, longest_prompt,
                                                         eval_new)))
    return calls


def check_sampling_memory(cfg, policy, longest_prompt: int) -> None:
    """Raise :class:`SamplingMemoryError` (one line naming the knobs) when the largest generate call
    of the run would not fit; nothing is allocated."""
    parameter = next(policy.parameters())
    device = parameter.device
    limit = int(cfg.rollout.max_memory_gb * GB) if cfg.rollout.max_memory_gb else available_bytes(device)
    if limit is None:
        return
    attention = getattr(policy.config, "_attn_implementation", "eager") or "eager"
    scores_materialised = device.type == "cpu" or attention == "eager"
    last_only = forward_accepts(policy, "logits_to_keep")
    for kind, shape in generate_calls(cfg, longest_prompt):
        parts = sampling_bytes(policy.config, shape, dtype_bytes=parameter.element_size(),
                               scores_materialised=scores_materialised, last_logits_only=last_only)
        need = sum(parts.values())
        if need > limit:
            detail = ", ".join(f"{name.replace('_', ' ')} {size / GB:.1f}" for name, size in parts.items())
            source = "rollout.max_memory_gb" if cfg.rollout.max_memory_gb else f"free on {device}"
            raise SamplingMemoryError(
                f"{kind} would need ~{need / GB:.1f} GB ({detail}) for {shape.rows} rows of up to "
                f"{shape.prompt_tokens}+{shape.new_tokens} tokens, more than the {limit / GB:.1f} GB {source}: lower "
                f"rollout.chunk_size, rollout.num_prompts x rollout.group_size, data.num_test, data.max_prompt_tokens "
                f"or rollout.max_new_tokens (or set rollout.max_memory_gb)")
