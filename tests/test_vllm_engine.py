"""rollout.engine=vllm: runs where vLLM and a CUDA GPU are present (never in CI, not on the authors' machines).

Checks the engine's contract, the same as the other engines': ids and masks from the first EOS,
log-probs equal to the policy's own forward, and that the engine samples from the policy's
current weights (pushed before every call).
"""

import pytest
import torch

from verifrl.config import ConfigError
from verifrl.config_loading import load_config

PROMPTS = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens and buys 12 more.\nSolution:\n"]


def test_vllm_engine_is_refused_clearly_where_it_cannot_run(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ConfigError, match=r"pip install 'verifrl\[vllm\]'"):
            load_config("recipes/tiny-arith.yaml", ["rollout.engine=vllm"])
        return
    with pytest.raises(ConfigError, match="top_p=1"):
        load_config("recipes/tiny-arith.yaml", ["rollout.engine=vllm", "rollout.top_p=0.9"])
    with pytest.raises(ConfigError, match="LoRA"):
        load_config("recipes/tiny-arith.yaml", ["rollout.engine=vllm", "model.lora.r=8"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="torchrun"):
        load_config("recipes/tiny-arith.yaml", ["rollout.engine=vllm"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM needs a CUDA GPU")
def test_vllm_samples_the_current_policy_with_exact_logprobs(tmp_path):
    pytest.importorskip("vllm")
    from verifrl.embedded import EmbeddedModelConfig, embedded_policy
    from verifrl.config import ModelConfig
    from verifrl.models import load_policy
    from verifrl.rollout import generate
    from verifrl.update import completion_logprobs

    path = embedded_policy(EmbeddedModelConfig(sft_steps=50), log=lambda m: None)
    policy, tokenizer = load_policy(ModelConfig(name_or_path=str(path), device="cuda", dtype="float32"),
                                    log=lambda *_: None)
    options = {"gpu_memory_utilization": 0.2, "sleep": True, "seed": 0}
    batch = generate(policy, tokenizer, PROMPTS, group_size=4, max_new_tokens=24, temperature=0.8, engine="vllm",
                     engine_options=options)
    assert batch.completion_ids.shape[0] == 8
    recomputed, _ = completion_logprobs(policy, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask, temperature=0.8)
    mask = batch.completion_mask.bool()
    gap = (batch.sampler_logprobs[mask] - recomputed.detach().float().cpu()[mask]).abs()
    assert gap.max() < 1e-2, f"max |vllm - forward| = {gap.max():.2e}"
    greedy = generate(policy, tokenizer, PROMPTS, greedy=True, max_new_tokens=24, engine="vllm",
                      engine_options=options)
    loop = generate(policy, tokenizer, PROMPTS, greedy=True, max_new_tokens=24, engine="loop")
    assert greedy.texts == loop.texts
    # new weights reach the engine: after scrambling the policy, greedy output follows it
    with torch.no_grad():
        for param in policy.parameters():
            param.mul_(-1.0)
    assert generate(policy, tokenizer, PROMPTS, greedy=True, max_new_tokens=24, engine="vllm",
                    engine_options=options).texts == generate(policy, tokenizer, PROMPTS, greedy=True,
                                                              max_new_tokens=24, engine="loop").texts
