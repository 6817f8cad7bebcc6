"""Peak memory and time of token log-probs + backward: textbook log_softmax vs verifrl.logprobs.

    python bench/logprob_memory.py                          # 16 x 128 x 151,936 bf16 logits on CPU
    python bench/logprob_memory.py --device cuda --rows 64  # a GRPO batch of a 0.5B model on a GPU

Each variant runs in its own subprocess on the same random logits (standing in for a model's
output, so only the log-prob stage is measured): forward, sum with random weights, backward.
Reported: peak memory above the logits themselves (CPU: peak RSS minus RSS after the logits exist;
GPU: peak allocated minus allocated) and wall time. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    import torch

    from verifrl.logprobs import token_logprobs

    torch.manual_seed(0)
    device = torch.device(args.device)
    logits = torch.randn(args.rows, args.length, args.vocab, dtype=getattr(torch, args.dtype), device=device)
    logits.requires_grad_()
    ids = torch.randint(0, args.vocab, (args.rows, args.length), device=device)
    weights = torch.randn(args.rows, args.length, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mb()
    start = time.perf_counter()
    if args.worker == "textbook":
        log_probs = torch.log_softmax(logits.float() / args.temperature, dim=-1)
        logp = log_probs.gather(2, ids[..., None]).squeeze(2)
    else:
        logp, _ = token_logprobs(logits, ids, args.temperature)
    (logp * weights).sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
        extra = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        extra = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"seconds": time.perf_counter() - start, "peak_extra_mb": extra,
            "logits_mb": logits.numel() * logits.element_size() / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--worker", choices=["textbook", "chunked"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return
    results = {}
    for variant in ("textbook", "chunked"):
        cmd = [sys.executable, __file__, "--worker", variant] + [
            f"--{k}={v}" for k, v in vars(args).items() if k != "worker" and v is not None]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(line[7:])
        r = results[variant]
        print(f"{variant:9s} peak memory above the logits {r['peak_extra_mb']:8.0f} MB "
              f"(logits {r['logits_mb']:.0f} MB)  {r['seconds']:.2f} s", file=sys.stderr)
    results["memory_ratio"] = results["chunked"]["peak_extra_mb"] / results["textbook"]["peak_extra_mb"]
    results["settings"] = {k: v for k, v in vars(args).items() if k != "worker"}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
