"""Verification overlapped with generation vs after it: ``rl_step`` timed on the math and code jobs.

    python bench/overlap.py                     # both jobs, 20 paired steps each (~1 minute on 2 CPU cores)
    python bench/overlap.py --threads 1         # one torch thread: a core left for the verifiers
    python bench/overlap.py --device cuda       # sampling on a GPU, verification on the CPU
    python bench/overlap.py --jobs math --steps 2 --prompts 4   # smoke test

Jobs: ``math`` is ``recipes/tiny-arith.yaml`` (32 prompts x 8, 48 new tokens, the ``math``
verifier); ``code`` is ``recipes/code-toy.yaml`` (16 x 8, 16 new tokens, the sandboxed ``code``
verifier) on the toy task, written to a scratch directory. Both on the embedded tiny model.

Paired steps: every timed step runs twice from the same state (policy weights, optimiser state,
RNG states, same prompts, the math verifier's result cache emptied), once with
``reward.overlap_verification`` on and once off, the order alternating from step to step. Both
settings therefore sample the same completions and verify the same texts (the tests check that
they train identically, and ``same_rewards`` below checks it again); the state after the second
run carries on to the next step. One untimed warm-up pair first starts the verifiers' worker
processes.

Per setting: median s/step, median ``time/generation`` (with overlap it includes the checks made
while sampling) and median ``time/verification`` (with overlap: only the wait after sampling);
then the median of the per-step ratios off/on (> 1: overlap is faster). The last line printed is
one JSON object with every number and the settings.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = ("on", "off")


def _job_config(job: str, args, scratch: Path):
    from verifrl.config_loading import load_config

    common = [f"model.device={args.device}", "data.num_test=2", f"trainer.threads={args.threads}",
              f"trainer.seed={args.seed}"]
    if args.prompts:
        common.append(f"rollout.num_prompts={args.prompts}")
    if job == "math":
        return load_config(ROOT / "recipes" / "tiny-arith.yaml", common + ["data.num_train=2000"])
    from verifrl.tasks.code import main as write_code_data

    data_dir = scratch / "code-toy"
    if not (data_dir / "train.jsonl").exists():
        write_code_data(["toy", "-", str(data_dir)])
    return load_config(ROOT / "recipes" / "code-toy.yaml", common + [f"data.path={data_dir}"])


def _state(policy, optimizer) -> dict:
    import numpy as np
    import torch

    return {"policy": copy.deepcopy(policy.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict()),
            "torch": torch.get_rng_state(), "random": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _restore(state: dict, policy, optimizer) -> None:
    import numpy as np
    import torch

    policy.load_state_dict(state["policy"])
    optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
    torch.set_rng_state(state["torch"])
    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    if state["cuda"] is not None:  # sampling on a GPU draws from its generator
        torch.cuda.set_rng_state_all(state["cuda"])


def run_job(job: str, args, scratch: Path) -> dict:
    import torch

    from verifiers.math import verifier as math_verifier
    from verifrl.models import load_policy
    from verifrl.scoring import build_verifiers
    from verifrl.models import seed_everything
    from verifrl.prompts import prepare_task
    from verifrl.trainer import rl_step

    cfg = _job_config(job, args, scratch)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    seed_everything(cfg.trainer.seed)
    policy, tokenizer = load_policy(cfg.model, log=lambda *_: None)
    task = prepare_task(cfg, tokenizer)
    verifiers = build_verifiers(cfg.reward.verifiers)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.trainer.lr, betas=cfg.trainer.adam_betas,
                                  weight_decay=cfg.trainer.weight_decay)
    records: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    same_rewards = True
    try:
        for step in range(args.steps + 1):  # step 0: warm-up, not counted
            rows = task.sampler.next_rows(cfg.rollout.num_prompts)
            start_state = _state(policy, optimizer)
            order = SETTINGS if step % 2 == 0 else SETTINGS[::-1]
            rewards = {}
            for k, setting in enumerate(order):
                if k:
                    _restore(start_state, policy, optimizer)
                math_verifier._cache.data.clear()  # the second run must not find the first one's checks cached
                cfg.reward.overlap_verification = setting == "on"
                start = time.perf_counter()
                metrics, _ = rl_step(cfg, policy, None, tokenizer, optimizer, verifiers, rows)
                wall = time.perf_counter() - start
                rewards[setting] = metrics["reward/mean"]
                if step:
                    records[setting].append({"wall": wall, "generation": metrics["time/generation"],
                                             "verification": metrics["time/verification"],
                                             "tokens": metrics["completion/mean_length"]})
            same_rewards &= rewards["on"] == rewards["off"]
    finally:
        for named in verifiers:
            named.close()
    med = {s: {k: statistics.median(r[k] for r in records[s]) for k in ("wall", "generation", "verification")}
           for s in SETTINGS}
    ratios = [off["wall"] / on["wall"] for on, off in zip(records["on"], records["off"])]
    return {"job": job, "steps": args.steps, "num_prompts": cfg.rollout.num_prompts,
            "group_size": cfg.rollout.group_size, "max_new_tokens": cfg.rollout.max_new_tokens,
            "mean_completion_tokens": statistics.mean(r["tokens"] for r in records["on"]),
            "median_s_per_step": {s: med[s]["wall"] for s in SETTINGS},
            "median_generation_s": {s: med[s]["generation"] for s in SETTINGS},
            "median_verification_wait_s": {s: med[s]["verification"] for s in SETTINGS},
            "speedup_off_over_on": statistics.median(ratios), "same_rewards": same_rewards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", nargs="+", choices=["math", "code"], default=["math", "code"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per job (each run with overlap on and off)")
    parser.add_argument("--prompts", type=int, default=0, help="prompts per step (0: the recipe's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="model.device (cpu, cuda, auto)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="verifrl-overlap-") as scratch:
        for job in args.jobs:
            result = run_job(job, args, Path(scratch))
            results.append(result)
            print(f"\n{job}: {result['num_prompts']} prompts x {result['group_size']}, at most "
                  f"{result['max_new_tokens']} new tokens (mean {result['mean_completion_tokens']:.1f}), "
                  f"{args.steps} paired steps; same rewards on/off: {result['same_rewards']}")
            print(f"{'overlap':<9}{'s/step':>9}{'generation s':>15}{'verification wait s':>22}")
            for s in SETTINGS:
                print(f"{s:<9}{result['median_s_per_step'][s]:>9.3f}{result['median_generation_s'][s]:>15.3f}"
                      f"{result['median_verification_wait_s'][s]:>22.4f}")
            print(f"median per-step ratio off/on: {result['speedup_off_over_on']:.3f} (> 1: overlap is faster)")
    import torch

    print(json.dumps({"results": results, "device": args.device, "threads": args.threads or torch.get_num_threads(),
                      "cpus": os.cpu_count(), "torch": torch.__version__, "seed": args.seed,
                      "wall_s": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
