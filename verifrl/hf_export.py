"""Writing the policy as a directory that plain Hugging Face loaders read correctly.

``final_model/`` and every ``checkpoints/step-N/`` are written here: ``config.json`` of the model,
``model.safetensors`` and the tokenizer files, so that ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` (and vLLM, lm-eval, TRL, which call them) give the trained model
and the token ids it was trained on.

Two things stand in the way for the embedded model, and both are fixed in the saved files only:

* transformers 5 writes ``tokenizer_class: TokenizersBackend``, a name transformers 4 does not
  know; a generic fast tokenizer is declared as ``PreTrainedTokenizerFast`` (read by both).
* transformers 5 builds the tokenizer class registered for the config's ``model_type`` whatever
  ``tokenizer_config.json`` says when that type is on its list of hub checkpoints with a wrong
  class (``qwen2`` is), and ``Qwen2Tokenizer`` replaces the pre-tokenizer saved in
  ``tokenizer.json`` with Qwen's own regex: the embedded tokenizer (a space joined to the next
  digit) then encodes ``3 * 4 = 12`` into different ids. When a plain ``AutoTokenizer`` load of
  the written directory disagrees with the training tokenizer, a Qwen2 model is written as the
  equivalent Llama model ("llamafied": the same weights under the same names, with the output
  projection's bias, which Qwen2 lacks, set to zero), for which ``tokenizer.json`` is loaded as
  it is. The logits are the same (tested). :func:`load_exported_weights` maps such weights back
  to the Qwen2 policy for a resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Digits, spaces, newlines, punctuation and a word: enough to expose a differing pre-tokenizer.
TOKENIZER_PROBE = "Q: What is 12+345?\n3 * 4 = 12\nAnswer: 7 apples, 1,000 x\t(9)"
_GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
_LLAMAFIED_MARKER = "verifrl_llamafied_from"  # a config.json key: the original model_type


def declare_generic_tokenizer_class(path: Path) -> None:
    """``tokenizer_class: PreTrainedTokenizerFast`` instead of transformers 5's ``TokenizersBackend``."""
    file = path / "tokenizer_config.json"
    if not file.is_file():
        return
    config = json.loads(file.read_text())
    if config.get("tokenizer_class") in _GENERIC_TOKENIZER_CLASSES:
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def plain_load_agrees(path: Path, tokenizer) -> bool:
    """Whether ``AutoTokenizer.from_pretrained(path)``, as any other tool calls it, encodes the
    probe into the same ids as ``tokenizer`` (the one the policy was trained with)."""
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        return False
    probe = [TOKENIZER_PROBE, *(f"{n} + {n * 7} = {n * 8}" for n in (3, 45, 678))]
    return all(loaded.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
               for text in probe)


def llama_config_from_qwen2(config):
    """The Llama config that computes what a Qwen2 config computes (with a zero output-projection
    bias added to the weights); sliding-window attention has no Llama equivalent."""
    from transformers import LlamaConfig

    if getattr(config, "use_sliding_window", False):
        raise ValueError("a Qwen2 model with sliding-window attention has no Llama equivalent")
    values = {k: v for k, v in config.to_dict().items()
              if k not in ("model_type", "architectures", "transformers_version", "use_sliding_window",
                           "sliding_window", "max_window_layers", "layer_types", "dtype", "torch_dtype")}
    llama = LlamaConfig(**{**values, "attention_bias": True, "mlp_bias": False,
                           "head_dim": config.hidden_size // config.num_attention_heads})
    llama.architectures = ["LlamaForCausalLM"]
    llama.dtype = getattr(config, "dtype", None)
    setattr(llama, _LLAMAFIED_MARKER, "qwen2")
    return llama


def _with_zero_output_bias(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(state)
    for name, weight in state.items():
        if name.endswith("self_attn.o_proj.weight"):
            out[name[: -len("weight")] + "bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype)
    return out


def save_model_dir(model, tokenizer, path: Path, state_dict: dict[str, torch.Tensor] | None = None,
                   log=print) -> None:
    """``save_pretrained`` of model and tokenizer into ``path``, made to load faithfully with
    ``AutoModelForCausalLM`` / ``AutoTokenizer`` (see the module docstring). ``state_dict``: the
    weights to write instead of the model's own (gathered FSDP weights, merged LoRA weights)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path)
    declare_generic_tokenizer_class(path)
    model.config.save_pretrained(path)
    if plain_load_agrees(path, tokenizer):
        model.save_pretrained(path, state_dict=state_dict)
        return
    if model.config.model_type == "qwen2" and not getattr(model.config, "use_sliding_window", False):
        state = state_dict if state_dict is not None else model.state_dict()
        model.save_pretrained(path, state_dict=_with_zero_output_bias(state))
        llama_config_from_qwen2(model.config).save_pretrained(path)
        if plain_load_agrees(path, tokenizer):
            return
    else:
        model.save_pretrained(path, state_dict=state_dict)
    log(f"warning: {path}: AutoTokenizer.from_pretrained builds a tokenizer whose ids differ from the trained "
        f"one (model_type {model.config.model_type!r}); load it with PreTrainedTokenizerFast.from_pretrained")


def load_exported_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights of a directory written by :func:`save_model_dir`, under the names of the model
    that wrote them (a llamafied Qwen2 loses its all-zero output-projection biases again)."""
    from safetensors.torch import load_file

    path = Path(path)
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no model*.safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(file))
    config_file = path / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get(_LLAMAFIED_MARKER) == "qwen2":
        added = [k for k in state if k.endswith("self_attn.o_proj.bias")]
        if any(bool(state[k].any()) for k in added):
            raise ValueError(f"{path}: a llamafied Qwen2 model whose output-projection bias is not zero")
        for name in added:
            del state[name]
    return state
