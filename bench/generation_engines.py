"""Rollout engines side by side: tokens/s of ``rollout.engine`` loop | hf | cb on one model.

    python bench/generation_engines.py                                   # embedded model, CPU
    python bench/generation_engines.py --device cuda --random-model qwen2.5-0.5b --max-new-tokens 128

An engine ``loop:K`` is the loop engine with ``stop_check_every=K`` (look for ended rows every K tokens).

Each engine samples the same prompts x group size (temperature 1) ``--repeats`` times after one
warm-up call; the figure is completion tokens generated per second of wall time (GPU work
synchronised). Also reported per engine: the largest gap between the log-prob it recorded for a
sampled token and the policy's own forward (``verifrl.update.completion_logprobs``), which is what
the GRPO ratio relies on. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _profile(call, device) -> None:
    """Where one call's time goes: host (Python, launches) vs device kernels, top ops of each."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        call()
        _sync(device)
    table = prof.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=12), file=sys.stderr)
    if device.type == "cuda":  # the sort key's name changed across torch versions
        for key in ("self_device_time_total", "self_cuda_time_total"):
            try:
                print(table.table(sort_by=key, row_limit=12), file=sys.stderr)
                break
            except (KeyError, AttributeError, RuntimeError):
                continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", default=["loop", "loop:8", "hf", "cb"])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--random-model", choices=["qwen2.5-0.5b"], help="random weights of this shape")
    parser.add_argument("--model-dir", help="a Hugging Face model directory (default: the embedded model)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", default="/tmp/verifrl-generation-engines")
    parser.add_argument("--profile", action="store_true",
                        help="also print torch.profiler's top ops of one loop call of 16 tokens")
    args = parser.parse_args()

    import torch

    from verifrl.tasks.loaders import load_task
    from verifrl.config import DataConfig, ModelConfig
    from verifrl.embedded import EmbeddedModelConfig, embedded_policy, prompt_text
    from verifrl.models import load_policy
    from verifrl.rollout import generate
    from verifrl.update import completion_logprobs
    from vs_trl import random_model_dir

    torch.set_num_threads(args.threads)
    model_dir = args.model_dir or str(embedded_policy(EmbeddedModelConfig(sft_steps=100), log=lambda m: None))
    if args.random_model:
        model_dir = str(random_model_dir(args, Path(model_dir)))
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    policy, tokenizer = load_policy(ModelConfig(name_or_path=model_dir, device=args.device, dtype=dtype),
                                    log=lambda *_: None)
    device = next(policy.parameters()).device
    train = load_task(DataConfig(num_train=args.prompts, num_test=1)).train
    prompts = [prompt_text(train[i]["question"]) for i in range(args.prompts)]
    results = {}
    for engine in args.engines:
        name, _, every = engine.partition(":")
        if name == "cb" and not hasattr(policy, "generate_batch"):
            results[engine] = {"skipped": "this transformers has no generate_batch"}
            continue
        torch.manual_seed(args.seed)
        walls, tokens = [], []
        for repeat in range(args.repeats + 1):
            _sync(device)
            start = time.perf_counter()
            batch = generate(policy, tokenizer, prompts, group_size=args.group, max_new_tokens=args.max_new_tokens,
                             temperature=1.0, engine=name, stop_check_every=int(every or 1))
            _sync(device)
            if repeat:  # the first call is a warm-up
                walls.append(time.perf_counter() - start)
                tokens.append(int(batch.lengths.sum()))
        with torch.no_grad():
            recomputed, _ = completion_logprobs(policy, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                                batch.completion_mask, temperature=1.0)
        mask = batch.completion_mask.bool()
        gap = (batch.sampler_logprobs[mask] - recomputed.float().cpu()[mask]).abs()
        results[engine] = {"tokens_per_s": sum(tokens) / sum(walls), "median_s": statistics.median(walls),
                           "tokens_per_call": statistics.mean(tokens), "logprob_gap_max": float(gap.max()),
                           "logprob_gap_mean": float(gap.mean())}
        print(f"{engine}: {results[engine]['tokens_per_s']:.0f} tokens/s, median {results[engine]['median_s']:.2f} s "
              f"per {args.prompts}x{args.group} completions, |sampler - forward| log-prob max "
              f"{results[engine]['logprob_gap_max']:.2e}", file=sys.stderr)
    if args.profile:
        # 16 tokens: tracing every CUDA kernel of a long call took over two minutes on an H200
        _profile(lambda: generate(policy, tokenizer, prompts, group_size=args.group,
                                  max_new_tokens=min(16, args.max_new_tokens), temperature=1.0), device)
    import transformers

    settings = {"device": args.device, "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                "model": f"random {args.random_model}" if args.random_model else (args.model_dir or "embedded"),
                "dtype": dtype, "prompts": args.prompts, "group": args.group, "max_new_tokens": args.max_new_tokens,
                "repeats": args.repeats, "torch": torch.__version__, "transformers": transformers.__version__}
    print(json.dumps({"engines": results, "settings": settings}))


if __name__ == "__main__":
    main()
