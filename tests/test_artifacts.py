"""Saved artifacts load with plain transformers: ``final_model`` and ``checkpoints/step-N`` give the
trained model's logits under ``AutoModelForCausalLM`` and its token ids under ``AutoTokenizer``."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from verifrl.tasks.arithmetic import generate_problems
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


def test_a_step_checkpoint_is_a_from_pretrained_directory_with_weights_only_state(tmp_path, tiny_model,
                                                                                  tiny_tokenizer):
    import random

    import numpy as np

    from verifrl.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
    from verifrl.embedded import build_model
    from tests.conftest import TEST_MODEL

    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    batch = tiny_tokenizer(SOLUTION_LINES[:2], return_tensors="pt", padding=True)
    tiny_model(**batch, labels=batch["input_ids"]).loss.backward()
    optimizer.step()
    scheduler.step()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    step_dir = save_checkpoint(tmp_path, 1, tiny_model, optimizer, scheduler, {"sampler": {"epoch": 0, "position": 3},
                               "eval_before": {"accuracy": 0.25}}, {"trainer": {"lr": 0.01}}, tokenizer=tiny_tokenizer)
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))

    _same_ids(step_dir, tiny_tokenizer)
    _same_logits(step_dir, tiny_model, tiny_tokenizer)
    assert not list(step_dir.glob("*.bin")) and (step_dir / "model.safetensors").is_file()
    for file in step_dir.glob("*.pt"):  # the run's own state: tensors and plain values, no pickled objects
        torch.load(file, weights_only=True)
    assert json.loads((step_dir / "trainer_state.json").read_text())["trainer"]["sampler"]["position"] == 3

    torch.manual_seed(0)
    fresh = build_model(TEST_MODEL, tiny_tokenizer)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    fresh_scheduler = torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda step: 0.5)
    state = load_checkpoint(latest_checkpoint(tmp_path), fresh, fresh_optimizer, fresh_scheduler)
    assert state == {"step": 1, "sampler": {"epoch": 0, "position": 3}, "eval_before": {"accuracy": 0.25}}
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws  # generators restored
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    moments = [fresh_optimizer.state[p]["exp_avg"] for p in fresh.parameters()]
    assert all(torch.equal(a, optimizer.state[p]["exp_avg"]) for a, p in zip(moments, tiny_model.parameters()))
    assert fresh_scheduler.state_dict()["last_epoch"] == 1
