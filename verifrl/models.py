"""Loading the policy, its tokenizer and the frozen reference model.

Any Hugging Face causal LM by hub name or local path takes the same path as the embedded
default, which is first built into an ordinary model directory (:mod:`verifrl.embedded`).
"""

from __future__ import annotations

import copy

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from verifrl.embedded import embedded_policy


class ModelLoadError(RuntimeError):
    """The configured model cannot be loaded; the message names it."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device is {name!r} but no CUDA device is available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32  # CPU: bf16 matmuls are slower than fp32 on most CPUs, and less exact
    return getattr(torch, name)


def model_path(model_cfg, log=print) -> str:
    if model_cfg.name_or_path == "embedded:tiny-arith":
        return str(embedded_policy(model_cfg.embedded, log=log))
    return model_cfg.name_or_path


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load a tokenizer from {path!r}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        # Padding positions are masked everywhere, so any id works; EOS is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(model_cfg, log=print) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The trainable policy and its tokenizer, on the configured device and dtype."""
    path = model_path(model_cfg, log=log)
    device = resolve_device(model_cfg.device)
    dtype = resolve_dtype(model_cfg.dtype, device)
    tokenizer = load_tokenizer(path, model_cfg.trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot load a causal LM from {path!r}: {str(err).splitlines()[0]}") from None
    model.to(device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # incompatible with checkpointing in training; generate re-enables
    return model, tokenizer


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """The reference model: a frozen copy of the initial policy (only built when beta > 0)."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference
