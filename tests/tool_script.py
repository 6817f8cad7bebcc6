"""A scripted causal LM for tool-use tests: it writes a fixed transcript per prompt, token by token.

Tool calls only happen when a model writes a closed ```python block, which a random tiny model
never does; this model does, through the real ``sample_loop`` (KV cache, rows dropped, forced
observation tokens). At position p it puts a high logit on token p+1 of its row's script, plus a
small position-dependent pattern, so a log-prob taken at a shifted position differs. The script
of a row is chosen by its prompt and carried in the KV cache's values, so the sampler's row
repeat/select keeps it with the row.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, Qwen2Config


class ScriptedLM(torch.nn.Module):
    def __init__(self, tokenizer, scripts: dict[str, list[int]], peak: float = 20.0) -> None:
        """``scripts``: prompt text -> the completion ids the model should produce (observations included)."""
        super().__init__()
        self.vocab = len(tokenizer)
        self.config = Qwen2Config(vocab_size=self.vocab, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                  num_key_value_heads=1, intermediate_size=8)
        self.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id)
        self.prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in scripts]
        self.full = [prompt + list(script) for prompt, script in zip(self.prompts, scripts.values())]
        self.peak = peak
        self.bias = torch.nn.Parameter(torch.zeros(self.vocab))  # trainable: an update moves the policy

    @property
    def device(self) -> torch.device:
        return self.bias.device

    def _script_of(self, ids: list[int]) -> int:
        for index, prompt in enumerate(self.prompts):
            if ids[-len(prompt):] == prompt or ids[: len(prompt)] == prompt:
                return index
        raise ValueError("ScriptedLM: unknown prompt")

    def _logits(self, script: int, position: int) -> torch.Tensor:
        pattern = 0.1 * ((torch.arange(self.vocab) * (position + 1)) % 7).float()
        full = self.full[script]
        target = full[position + 1] if position + 1 < len(full) else full[-1]
        return pattern + self.peak * torch.nn.functional.one_hot(torch.tensor(target), self.vocab).float()

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=True,
                logits_to_keep=0, **_):
        batch, length = input_ids.shape
        if cache is not None and cache.get_seq_length() > 0:  # decoding: the script id rides in the cache
            values = cache.update(torch.zeros(batch, 1, 1, 1), torch.zeros(batch, 1, 1, 1), 0)[1]
            scripts = values[:, 0, 0, 0].long().tolist()
        else:
            real = [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]
            prompt_ids = [r for r in real]
            scripts = [self._script_of(r) for r in prompt_ids]
            if cache is not None:
                ids = torch.tensor(scripts, dtype=torch.float32).view(batch, 1, 1, 1).expand(batch, 1, length, 1)
                cache.update(torch.zeros(batch, 1, length, 1), ids.contiguous(), 0)
        logits = torch.stack([torch.stack([self._logits(scripts[b], int(position_ids[b, p]))
                                           for p in range(length)]) for b in range(batch)])
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return type("Output", (), {"logits": logits + self.bias})()
