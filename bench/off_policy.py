"""Synchronous vs off-policy training on the main job: speed and held-out accuracy.

    python bench/off_policy.py                              # 150 steps, seed 0 (see below: < 20 min)
    python bench/off_policy.py --steps 400 --seeds 0 1 2    # the full comparison for docs/off-policy.md
    python bench/off_policy.py --steps 30                   # a short look (speed only; accuracy is noise)

Per seed, two real ``verifrl train recipes/tiny-arith.yaml`` runs, one after the other on the same
machine, identical but for ``trainer.off_policy_steps`` (0, then ``--ahead``, default 1): the
synchronous run samples and updates in turn with all the cores; the off-policy run samples the
next batch in a sampler process (half the cores) while the trainer (the other half) updates on
the current one. ``trainer.steps`` is ``--steps`` for both, so the learning-rate schedule is the
recipe's own only at 400. No evaluation before RL (it is the same for both); the after-RL greedy
accuracy on the recipe's 500 held-out problems is the accuracy.

``speedup`` is steps per second of the off-policy runs over the synchronous ones, from the
training wall time (``train_seconds``: the sampler process's start-up included), summed over
seeds; ``speedup_steady`` is the ratio of the median per-step times (start-up excluded). The last
line printed is one JSON object with every number. The machine's other load distorts both runs;
run it on an idle machine for figures to publish.

Budget of the default: the main job runs 400 steps in about 5 minutes alone on a 2-core machine
(<= 0.75 s a step, both evaluations included), so the two 150-step runs and their two 500-problem
evaluations take about 5 minutes there, about 10 on a machine twice as slow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(steps: int, seed: int, ahead: int, device: str, scratch: Path, extra: list[str],
        recipe: str = "recipes/tiny-arith.yaml") -> dict:
    from verifrl.config_loading import load_config
    from verifrl.trainer import train

    name = f"seed{seed}-ahead{ahead}"
    cfg = load_config(ROOT / recipe, [
        f"trainer.steps={steps}", f"trainer.seed={seed}", f"trainer.off_policy_steps={ahead}",
        f"model.device={device}", "eval.before=false", "checkpoint.every_steps=0",
        "checkpoint.save_final_model=false", "logging.wandb=disabled", "logging.progress=false",
        f"logging.output_dir={scratch}", f"logging.run_name={name}", *extra])
    summary = train(cfg, "tiny-arith", log=lambda *_: None)
    records = [json.loads(line) for line in (scratch / name / "metrics.jsonl").read_text().splitlines()]
    step_times = [r["time/step"] for r in records if r.get("step", -1) >= 0 and "time/step" in r]
    return {"train_seconds": summary["train_seconds"], "accuracy": summary["eval_after"]["accuracy"],
            "median_step_seconds": statistics.median(step_times[2:] or step_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--ahead", type=int, default=1, help="trainer.off_policy_steps of the off-policy runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recipe", default="recipes/tiny-arith.yaml",
                        help="another recipe, e.g. recipes/tiny-arith-long.yaml (longer completions: generation "
                             "weighs as much as the update)")
    parser.add_argument("overrides", nargs="*", help="more section.key=value overrides for both runs")
    args = parser.parse_args()
    sync, ahead = [], []
    with tempfile.TemporaryDirectory(prefix="verifrl-off-policy-") as scratch:
        for seed in args.seeds:
            sync.append(run(args.steps, seed, 0, args.device, Path(scratch), args.overrides, args.recipe))
            ahead.append(run(args.steps, seed, args.ahead, args.device, Path(scratch), args.overrides, args.recipe))
            print(f"seed {seed}: sync {sync[-1]}  off-policy {ahead[-1]}", flush=True)
    accuracy_sync = statistics.mean(r["accuracy"] for r in sync)
    accuracy_async = statistics.mean(r["accuracy"] for r in ahead)
    print(json.dumps({
        "recipe": args.recipe, "steps": args.steps, "seeds": args.seeds, "off_policy_steps": args.ahead,
        "device": args.device,
        "speedup": round(sum(r["train_seconds"] for r in sync) / sum(r["train_seconds"] for r in ahead), 3),
        "speedup_steady": round(statistics.median(r["median_step_seconds"] for r in sync)
                                / statistics.median(r["median_step_seconds"] for r in ahead), 3),
        "accuracy_sync": round(accuracy_sync, 4), "accuracy_async": round(accuracy_async, 4),
        "accuracy_delta": round((accuracy_async - accuracy_sync) * 100, 2),
        "sync": sync, "async": ahead, "overrides": args.overrides,
    }))


if __name__ == "__main__":
    main()
