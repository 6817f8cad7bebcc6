"""``rollout.engine: vllm``: sampling with a vLLM engine colocated in the training process (GPU only).

Place in the data flow: prompts -> **rollouts** (one of the engines of :mod:`verifrl.samplers`) -> ...

One ``vllm.LLM`` per model directory is created on first use in this process
(``distributed_executor_backend="external_launcher"``: the engine runs in-process, so its model
object is reachable for weight loading) and kept. Every call first pushes the policy's current
weights into it (``load_weights``), so what vLLM samples from is always the policy being trained;
no version bookkeeping can go stale. With ``sleep`` the engine releases its weights and KV cache
between calls (``LLM.sleep(level=2)``), leaving the GPU memory to the update.

Log-probs: vLLM reports the sampled tokens' log-probs with ``logprobs_mode="processed_logprobs"``,
i.e. after temperature; that equals verifrl's ``log_softmax(logits / T)`` only without top-k/top-p
truncation, so this engine refuses ``top_p < 1`` or ``top_k > 0`` (config error).

Status: written against vLLM's public ``LLM`` / ``SamplingParams`` API and the colocation pattern
TRL 1.16 uses; it has NOT been run (vLLM could not be installed where verifrl was built: no GPU
here, no network and a 64 MB carry limit on the borrowed GPU). ``tests/test_vllm_engine.py`` runs
where vLLM and a GPU are present and checks the log-probs against the policy's own forward.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import torch

_ENGINES: dict[tuple, Any] = {}


def _engine(model: torch.nn.Module, gpu_memory_utilization: float, sleep: bool, seed: int):
    """The process's vLLM engine for this model directory and dtype, created on first use."""
    path = getattr(model, "name_or_path", None) or model.config._name_or_path
    dtype = next(model.parameters()).dtype
    key = (str(path), dtype, gpu_memory_utilization, sleep)
    if key not in _ENGINES:
        from vllm import LLM  # optional dependency: pip install 'verifrl[vllm]'

        # external_launcher joins a torch.distributed group; a lone process needs these set
        for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
            os.environ.setdefault(name, value)
        if "MASTER_PORT" not in os.environ:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
        llm = LLM(model=str(path), dtype=str(dtype).removeprefix("torch."), seed=seed,
                  gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep,
                  distributed_executor_backend="external_launcher", logprobs_mode="processed_logprobs",
                  skip_tokenizer_init=True, enable_prefix_caching=True)
        if sleep:
            llm.sleep(level=2)
        _ENGINES[key] = llm
    return _ENGINES[key]


def _push_weights(llm, model: torch.nn.Module, sleep: bool) -> None:
    if sleep:
        llm.wake_up(tags=["weights"])
    target = llm.llm_engine.model_executor.driver_worker.model_runner.model
    with torch.no_grad():
        for name, param in model.named_parameters():
            target.load_weights([(name, param.detach())])
    llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
    if sleep:
        llm.wake_up(tags=["kv_cache"])


def sample_vllm(model, enc, eos_ids, pad_id, max_new_tokens, temperature, top_p, top_k, greedy, record,
                gpu_memory_utilization: float = 0.3, sleep: bool = True, seed: int = 0):
    """Same contract as the other engines: completion ids (N, T) right-padded, log-probs (N, T) or None."""
    from vllm import SamplingParams

    if top_p < 1.0 or top_k:
        raise ValueError("rollout.engine=vllm reports log-probs after truncation: use top_p=1 and top_k=0")
    if hasattr(model, "get_base_model"):
        raise ValueError("rollout.engine=vllm does not load LoRA adapters: merge them or use engine=loop")
    llm = _engine(model, gpu_memory_utilization, sleep, seed)
    _push_weights(llm, model, sleep)
    params = SamplingParams(n=1, temperature=0.0 if greedy else temperature, max_tokens=max_new_tokens,
                            stop_token_ids=sorted(eos_ids), logprobs=0 if record and not greedy else None,
                            detokenize=False)
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"].cpu(), enc["attention_mask"].cpu())]
    try:
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in rows], sampling_params=params, use_tqdm=False)
    finally:
        if sleep:
            llm.sleep(level=2)
    sampled, logprobs = [], []
    for out in outputs:
        completion = out.outputs[0]
        ids = list(completion.token_ids)
        # a stop token may or may not be echoed in token_ids; the batch needs it (masks end at the EOS)
        if completion.finish_reason == "stop" and (not ids or ids[-1] not in eos_ids):
            if isinstance(completion.stop_reason, int):
                if params.logprobs is not None:  # its log-prob is missing too: refuse rather than guess
                    raise RuntimeError("vLLM left the stop token out of token_ids; its log-prob is unknown")
                ids.append(completion.stop_reason)
        sampled.append(ids)
        if completion.logprobs is not None:
            logprobs.append([step[token].logprob for step, token in zip(completion.logprobs, ids)])
    width = max(1, max(len(ids) for ids in sampled))
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    recorded = torch.zeros((len(rows), width)) if logprobs else None
    for i, ids in enumerate(sampled):
        tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        if recorded is not None:
            recorded[i, : len(logprobs[i])] = torch.tensor(logprobs[i])
    return tokens, recorded
