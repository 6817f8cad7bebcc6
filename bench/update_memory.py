"""Memory one ``update_policy`` call adds, on a Qwen2.5-0.5B-shaped model (random weights, bf16).

    python bench/update_memory.py --rows 16        # CPU, ~1 minute (first run builds the ~1 GB model)

Random prompts (30 tokens) and completions (128 tokens over the full 151,936-token vocabulary),
one non-zero advantage per row, dapo, no micro-batching. The optimiser state is allocated first, so
the figure is what the update itself adds: CPU: peak RSS minus RSS just before the call; GPU: peak
allocated minus allocated. Run it at two commits to compare versions of the update. Prints one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--completion-tokens", type=int, default=128)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", default="/tmp/verifrl-vs-trl")
    args = parser.parse_args()
    args.random_model = "qwen2.5-0.5b"

    import torch
    from transformers import AutoModelForCausalLM

    from verifrl.config import LossConfig
    from verifrl.embedded import EmbeddedModelConfig, embedded_policy
    from verifrl.update import TrainBatch, update_policy
    from vs_trl import random_model_dir

    torch.set_num_threads(args.threads)
    path = random_model_dir(args, embedded_policy(EmbeddedModelConfig(sft_steps=100), log=lambda m: None))
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n, lp, lc = args.rows, 30, args.completion_tokens
    g = torch.Generator().manual_seed(args.seed)
    batch = TrainBatch(torch.randint(0, 300, (n, lp), generator=g), torch.ones(n, lp, dtype=torch.long),
                       torch.randint(0, model.config.vocab_size, (n, lc), generator=g),
                       torch.ones(n, lc, dtype=torch.long), torch.full((n, lc), -11.0),
                       torch.randn(n, 1, generator=g).expand(n, lc).contiguous())
    for param in model.parameters():  # Adam's moments exist before the measured call
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() / 2**20 if cuda else _rss_mb()
    start = time.perf_counter()
    update_policy(model, optimizer, batch, LossConfig(type="dapo"), temperature=1.0, micro_batch_size=0,
                  max_grad_norm=1.0, max_completion_length=lc)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"update_adds_mb": round(peak - base), "seconds": round(time.perf_counter() - start, 1),
                      "rows": n, "tokens_per_row": lp + lc, "device": args.device}))


if __name__ == "__main__":
    main()
