"""Outcome-only vs process vs outcome+process supervision on the embedded default, same budget.

Trains each advantage mode from the same warm-started model for the same number of steps (same
prompts, group size, learning rate) on each seed, and reports held-out greedy accuracy before and
after and the fraction of held-out completions whose every step checks out (math_steps).

    python bench/process_vs_outcome.py --seeds 0 1 2 --steps 200 --eval-every 50

Prints a learning curve (mean held-out greedy accuracy every --eval-every steps), a final table
and, last, one JSON line with every run's numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from verifrl.config_loading import load_config
from verifrl.models import load_policy
from verifrl.scoring import build_verifiers, score_rollouts
from verifrl.rollout import generate
from verifrl.prompts import prepare_task
from verifrl.trainer import train

MODES = {
    # mode -> (recipe, overrides)
    "outcome": ("recipes/tiny-arith.yaml", []),
    "process": ("recipes/tiny-arith-process.yaml", []),
    "outcome+process": ("recipes/tiny-arith-process.yaml", ["advantage.mode=outcome+process"]),
}


def all_steps_correct_rate(run_dir: Path, recipe: str, overrides: list[str]) -> float:
    """Share of greedy held-out completions of the final model whose steps all score 1."""
    cfg = load_config(recipe, overrides + [f"model.name_or_path={run_dir / 'final_model'}"])
    model, tokenizer = load_policy(cfg.model, log=lambda *_: None)
    task = prepare_task(cfg, tokenizer)
    batch = generate(model, tokenizer, task.test_prompts, greedy=True, max_new_tokens=cfg.rollout.max_new_tokens)
    steps = build_verifiers(load_config("recipes/tiny-arith-process.yaml").reward.verifiers)
    scored = score_rollouts(batch.texts, task.test_rows, steps)
    for named in steps:
        named.close()
    return sum(bool(s) and all(v >= 1.0 for v in s) for s in scored.step_scores) / len(batch.texts)


def accuracy_curve(metrics_file: Path) -> dict[int, float]:
    """Held-out greedy accuracy by number of RL steps done (0 = before RL), from metrics.jsonl."""
    curve = {}
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        if "eval/accuracy" in row:
            # periodic evals share the 0-based training step's row; before (-1) and after have their own
            done = row["step"] + 1 if "reward/mean" in row else max(row["step"], 0)
            curve[done] = row["eval/accuracy"]
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=50, help="held-out evaluation period (0: off)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--out", default="runs/bench-process")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value overrides for every run")
    args = parser.parse_args()
    results = []
    for seed in args.seeds:
        for mode in args.modes:
            recipe, extra = MODES[mode]
            overrides = extra + args.overrides + [f"trainer.steps={args.steps}", f"trainer.seed={seed}",
                                                  "logging.wandb=disabled", "checkpoint.every_steps=0",
                                                  f"eval.every_steps={args.eval_every}"]
            run_dir = Path(args.out) / f"{mode.replace('+', '_')}-s{seed}"
            start = time.time()
            summary = train(load_config(recipe, overrides), f"bench-{mode}", run_dir=run_dir, log=lambda *_: None)
            results.append({
                "mode": mode, "seed": seed,
                "accuracy_before": summary["eval_before"]["accuracy"],
                "accuracy_after": summary["eval_after"]["accuracy"],
                "all_steps_correct_after": all_steps_correct_rate(run_dir, recipe, extra + args.overrides),
                "curve": accuracy_curve(run_dir / "metrics.jsonl"),
                "train_seconds": round(summary["train_seconds"], 1),
                "wall_seconds": round(time.time() - start, 1),
            })
            print(json.dumps(results[-1]), flush=True)
    steps_seen = sorted({k for r in results for k in r["curve"]})
    print(f"\nheld-out greedy accuracy after N steps (mean of seeds {args.seeds})")
    print(f"{'mode':<18}" + "".join(f"{n:>8}" for n in steps_seen))
    for mode in args.modes:
        rows = [r for r in results if r["mode"] == mode]
        means = [statistics.mean(r["curve"].get(n, float("nan")) for r in rows) for n in steps_seen]
        print(f"{mode:<18}" + "".join(f"{m:>8.1%}" for m in means))
    print(f"\n{'mode':<18}{'before':>9}{'after':>9}{'gain per seed (pt)':>24}{'all steps ok':>14}{'train s':>9}")
    for mode in args.modes:
        rows = [r for r in results if r["mode"] == mode]
        before = statistics.mean(r["accuracy_before"] for r in rows)
        after = statistics.mean(r["accuracy_after"] for r in rows)
        gains = ", ".join(f"{(r['accuracy_after'] - r['accuracy_before']) * 100:+.1f}" for r in rows)
        steps_ok = statistics.mean(r["all_steps_correct_after"] for r in rows)
        seconds = statistics.mean(r["train_seconds"] for r in rows)
        print(f"{mode:<18}{before:>9.1%}{after:>9.1%}{gains:>24}{steps_ok:>14.1%}{seconds:>9.0f}")
    print(json.dumps({"runs": results}))


if __name__ == "__main__":
    main()
