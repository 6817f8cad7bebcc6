"""Shared fixtures: a real tiny Qwen2 model and BPE tokenizer, built in seconds, and an isolated cache."""

from __future__ import annotations

import pytest
import torch

from verifrl.tasks.arithmetic import generate_problems
from verifrl.embedded import EmbeddedModelConfig, build_model, build_tokenizer, prompt_text

TEST_MODEL = EmbeddedModelConfig(hidden_size=32, num_layers=2, num_heads=2, vocab_size=300, sft_steps=20,
                                 sft_batch_size=16, sft_examples=500)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # every test builds embedded models in its own cache, never in the user's ~/.cache
    monkeypatch.setenv("VERIFRL_CACHE", str(tmp_path_factory.getbasetemp() / "verifrl-cache"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    corpus = [prompt_text(p.question) + p.solution() for p in generate_problems(300, "train", seed=5)]
    return build_tokenizer(corpus, TEST_MODEL.vocab_size)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    torch.manual_seed(0)
    return build_model(TEST_MODEL, tiny_tokenizer)


def tiny_model_overrides() -> list[str]:
    """CLI overrides that make the embedded default small enough for an end-to-end test."""
    return [
        "model.embedded.hidden_size=32", "model.embedded.num_layers=2", "model.embedded.num_heads=2",
        "model.embedded.vocab_size=300", "model.embedded.sft_steps=20", "model.embedded.sft_batch_size=16",
        "model.embedded.sft_examples=500",
    ]
