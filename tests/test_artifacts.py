"""Saved artifacts load with plain transformers: ``final_model`` and ``checkpoints/step-N`` give the
trained model's logits under ``AutoModelForCausalLM`` and its token ids under ``AutoTokenizer``."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from data.arithmetic import generate_problems
from verifrl.checkpoint import save_final_model
from verifrl.embedded import prompt_text

# the lines the embedded model reads and writes: a prompt and a worked solution
SOLUTION_LINES = [prompt_text(p.question) + p.solution() for p in generate_problems(6, "test", seed=3)]


def _same_ids(path, tokenizer) -> None:
    plain = AutoTokenizer.from_pretrained(path)
    for text in SOLUTION_LINES:
        assert plain.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False), text


def _same_logits(path, model, tokenizer) -> None:
    loaded = AutoModelForCausalLM.from_pretrained(path).eval()
    batch = tokenizer(SOLUTION_LINES[:3], return_tensors="pt", padding=True)
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        got = loaded(**batch).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()


def test_final_model_of_the_embedded_model_loads_with_plain_transformers(tmp_path, tiny_model, tiny_tokenizer):
    torch.manual_seed(1)
    for parameter in tiny_model.parameters():  # trained-looking weights, not the initialisation
        torch.nn.init.normal_(parameter, std=0.2)
    save_final_model(tiny_model, tiny_tokenizer, tmp_path / "final_model", log=lambda *_: None)
    _same_ids(tmp_path / "final_model", tiny_tokenizer)
    _same_logits(tmp_path / "final_model", tiny_model, tiny_tokenizer)
    saved = json.loads((tmp_path / "final_model" / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "PreTrainedTokenizerFast"  # readable by transformers 4 too
    assert list((tmp_path / "final_model").glob("*.safetensors"))
