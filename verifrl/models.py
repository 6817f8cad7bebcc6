"""Loading the policy, its tokenizer and the frozen reference model.

Any Hugging Face causal LM by hub name or local path takes the same path as the embedded
default, which is first built into an ordinary model directory (:mod:`verifrl.embedded`).
"""

from __future__ import annotations

import copy
import inspect
import random
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from verifrl.embedded import embedded_policy
from verifrl.hf_export import TOKENIZER_PROBE


class ModelLoadError(RuntimeError):
    """The configured model cannot be loaded; the message names it."""



def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (sampling, prompt order, initial weights)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

def forward_accepts(model: torch.nn.Module, name: str) -> bool:
    """Whether the transformers model under any peft wrapper takes ``name`` in ``forward``
    (peft's own forward takes ``**kwargs`` and would hide it)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


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


@contextmanager
def preserved_rng():
    """Leave the global python/numpy/torch RNG states as they were (CUDA too when present).

    Building the embedded model seeds and draws from the global generators; without this a run that
    built it would sample differently from one that found it cached, and a resumed run differently
    from a straight one.
    """
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        yield
    random.setstate(py)
    np.random.set_state(np_state)


def model_path(model_cfg, log=print) -> str:
    if model_cfg.name_or_path == "embedded:tiny-arith":
        with preserved_rng():
            return str(embedded_policy(model_cfg.embedded, log=log))
    return model_cfg.name_or_path


def _tokenizer_json_disagrees(tokenizer: PreTrainedTokenizerBase, path: str) -> bool:
    """True when a local ``tokenizer.json`` encodes differently from the loaded tokenizer.

    ``AutoTokenizer`` picks a class from ``config.json``'s ``model_type`` (Qwen2 -> ``Qwen2Tokenizer``)
    and that class may rebuild the pre-tokenizer from its own regex, silently replacing the one saved
    in ``tokenizer.json`` (the embedded tokenizer splits every digit). The file is the ground truth.
    """
    file = Path(path) / "tokenizer.json"
    if not file.is_file():
        return False
    saved = Tokenizer.from_file(str(file))
    loaded = tokenizer.encode(TOKENIZER_PROBE, add_special_tokens=False)
    return saved.encode(TOKENIZER_PROBE, add_special_tokens=False).ids != loaded


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        if _tokenizer_json_disagrees(tokenizer, path):
            tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
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
        # transformers >= 5.2x renamed it activation_checkpointing_enable (the old name warns)
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False  # incompatible with checkpointing in training; generate re-enables
    if model_cfg.lora.r > 0:
        model = with_lora(model, model_cfg.lora)
    return model, tokenizer


def with_lora(model: PreTrainedModel, lora_cfg, task_type: str = "CAUSAL_LM"):
    """Wrap a model with peft LoRA adapters; only the adapters train (``task_type``
    FEATURE_EXTRACTION for a backbone without LM head, such as the critic's)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelLoadError("model.lora needs peft: pip install 'verifrl[lora]'") from None
    targets = lora_cfg.target_modules
    config = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                        target_modules=targets[0] if targets == ["all-linear"] else list(targets),
                        task_type=task_type, bias="none")
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. a target module the model does not have
        raise ModelLoadError(f"model.lora: {str(err).splitlines()[0]}") from None


def is_peft(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


class AdapterDisabledReference(torch.nn.Module):
    """The LoRA policy's base model as the frozen reference: forward runs with the adapters off.

    No second copy of the weights. The base weights never train, so there is no state to save.
    """

    def __init__(self, policy) -> None:
        super().__init__()
        self._policy = [policy]  # a list, so the policy is not registered as a submodule

    @property
    def policy(self):
        return self._policy[0]

    def parameters(self, recurse: bool = True):
        return self.policy.parameters(recurse)

    @property
    def device(self):
        return next(self.policy.parameters()).device

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        was_training = self.policy.training
        self.policy.eval()
        try:
            with self.policy.disable_adapter():
                return self.policy(*args, **kwargs)
        finally:
            self.policy.train(was_training)

    def state_dict(self, *args, **kwargs):
        return {}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if state_dict:
            raise ValueError("the adapter-disabled reference has no state of its own")
        return None


def reference_model(policy):
    """The KL reference: the adapter-disabled base for a LoRA policy, else a frozen copy."""
    return AdapterDisabledReference(policy) if is_peft(policy) else frozen_copy(policy)


def frozen_copy(model: PreTrainedModel) -> PreTrainedModel:
    """The reference model: a frozen copy of the initial policy (only built when beta > 0)."""
    reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference
