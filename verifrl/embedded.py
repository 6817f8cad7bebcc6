"""The embedded default policy: a tiny Qwen2 model and a BPE tokenizer built here, warm-started.

Nothing is downloaded. ``embedded_policy(cfg)`` returns the path of a normal Hugging Face model
directory (``save_pretrained`` of a ``Qwen2ForCausalLM`` and a ``PreTrainedTokenizerFast``), so
the trainer loads it with ``AutoModelForCausalLM.from_pretrained`` exactly like a hub model.

Building it: train a byte-level BPE tokenizer (digits split one per token, which arithmetic
needs) on the task's own text; initialise a small Qwen2 model; fine-tune it for a fixed number
of steps on worked solutions (one step per line, final line ``Answer: N``). The warm start is
deliberately short so that RL starts neither hopeless nor perfect. The result is cached under
a key that hashes every setting that shapes it, so a second run skips it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from verifrl.config import EmbeddedModelConfig
from verifrl.tasks.arithmetic import generate_problems

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
_RECIPE_VERSION = 1  # bump when the build procedure changes, to invalidate old caches


def cache_key(cfg: EmbeddedModelConfig) -> str:
    """Name of the cached build of ``cfg``: changes with any field or with the build procedure."""
    blob = json.dumps({"v": _RECIPE_VERSION, **asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root() -> Path:
    """Where built models are kept: ``$VERIFRL_CACHE`` or ``~/.cache/verifrl``."""
    return Path(os.environ.get("VERIFRL_CACHE", Path.home() / ".cache" / "verifrl"))


def prompt_text(question: str) -> str:
    """The plain prompt format the embedded model is trained on (no chat template)."""
    return f"Question: {question}\nSolution:\n"


def build_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with every digit its own token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r" ?\d"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN, padding_side="left"
    )


def build_model(cfg: EmbeddedModelConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    torch.manual_seed(cfg.seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.hidden_size * 3,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen2ForCausalLM(config)


def _sft_batch(
    tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (loss on the solution and EOS only)."""
    rows, label_rows = [], []
    for prompt, solution in pairs:
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        s_ids = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p_ids + s_ids)
        label_rows.append([-100] * len(p_ids) + s_ids)
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, label_rows)):
        ids[i, : len(r)] = torch.tensor(r)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(r)] = 1
    return ids, mask, labels


def _length_bucketed_batches(tokenizer, pairs, batch_size: int, rng: random.Random, buckets: int = 8):
    """Endless batches of similar-length examples: draw 8 batches' worth, sort by length, split.

    Padding was ~40% of the tokens with random batches; on a CPU every padded token is paid for.
    """
    while True:
        pool = sorted(rng.sample(pairs, batch_size * buckets), key=lambda p: len(p[0]) + len(p[1]))
        chunks = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            yield _sft_batch(tokenizer, chunk)


def warm_start(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    cfg: EmbeddedModelConfig,
    log=print,
) -> None:
    """Supervised fine-tuning on worked solutions of the train split (never the test split)."""
    problems = generate_problems(cfg.sft_examples, "train", seed=cfg.seed + 1000)
    rng = random.Random(cfg.seed)
    pairs = [(prompt_text(p.question), p.solution("terse" if rng.random() < cfg.sft_terse_fraction else "stepwise"))
             for p in problems]
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=0.01)
    warmup = max(1, cfg.sft_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.sft_lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, cfg.sft_steps - warmup)
        floor = cfg.sft_final_lr_fraction
        return cfg.sft_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    batches = _length_bucketed_batches(tokenizer, pairs, cfg.sft_batch_size, rng)
    model.train()
    start = time.time()
    for step in range(cfg.sft_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        ids, mask, labels = next(batches)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == cfg.sft_steps - 1:
            log(f"warm start {step + 1}/{cfg.sft_steps}  loss {loss.item():.3f}  {time.time() - start:.0f}s")
    model.eval()


def embedded_policy(cfg: EmbeddedModelConfig | None = None, log=print) -> Path:
    """Path of the built, warm-started embedded model; builds and caches it on first use.

    The directory is written under a temporary name and renamed into place, so an interrupted
    build never leaves a half-written model that a later run would trust.
    """
    cfg = cfg or EmbeddedModelConfig()
    target = cache_root() / f"tiny-arith-{cache_key(cfg)}"
    if (target / "config.json").exists() and (target / "verifrl_build.json").exists():
        return target
    log(f"building the embedded model (cached afterwards in {target})")
    start = time.time()
    torch.manual_seed(cfg.seed)
    corpus_problems = generate_problems(2000, "train", seed=cfg.seed + 2000)
    corpus = [prompt_text(p.question) + p.solution() for p in corpus_problems]
    tokenizer = build_tokenizer(corpus, cfg.vocab_size)
    model = build_model(cfg, tokenizer)
    log(f"tiny Qwen2 model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    warm_start(model, tokenizer, cfg, log=log)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "verifrl_build.json").write_text(
        json.dumps({"config": asdict(cfg), "build_seconds": time.time() - start}, indent=2)
    )
    if target.exists():  # a concurrent build finished first; keep theirs
        shutil.rmtree(staging)
    else:
        os.replace(staging, target)
    return target
