"""Credit assignment on the built-in task: outcome GRPO vs step-level credit, same budget.

Four methods, each trained from the same warm-started model with the same prompts, group size,
policy learning rate and steps, on the short task (the default mix, 1-3 steps) and the long
chain (5-8 dependent steps, recipes/tiny-arith-long.yaml):

- ``grpo``: outcome GRPO (the sequence score of math_steps: is the final answer right);
- ``grpo_process``: GRPO with DeepSeekMath process supervision added (advantage.mode
  outcome+process, lambda = --process-weight, default 2: the best of 1/2/3 on the short task);
- ``ppo``: PPO with a critic and GAE, outcome reward on the last token;
- ``ppo_dense``: PPO with a critic and GAE, outcome reward plus a dense step penalty
  (--step-weight * (score - 1)) on each step's last token.

Modifiers after a ``+`` change a method: ``strict`` (a step's operands must come from the question
or earlier results), ``first_error`` (step rewards only up to the first false step),
``gamma=X``, ``lam=X``, ``weight=X`` (the step reward scale), e.g. ``ppo_dense+strict+gamma=0.99``.

Held-out greedy accuracy every --eval-every steps, time per step, and for each method the first
step at which it reaches outcome GRPO's final accuracy on the same task and seed (the claim
tested: on the long task some step-level method gets there in <= 60 % of GRPO's steps).

    python bench/credit_assignment.py --tasks long short --seeds 0 1 2 --steps 200 --eval-every 50

Prints one JSON line per run as it finishes, the learning curves, a summary table and, last, one
JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from verifrl.config_loading import load_config
from verifrl.trainer import train

TASKS = {"short": "recipes/tiny-arith-process.yaml", "long": "recipes/tiny-arith-long.yaml"}


def method_overrides(args) -> dict[str, list[str]]:
    critic = ["advantage.estimator=gae", f"critic.lr={args.critic_lr}", f"critic.warmup_steps={args.critic_warmup}",
              f"advantage.lam={args.lam}", f"advantage.gamma={args.gamma}"]
    return {
        "grpo": ["advantage.mode=outcome"],
        "grpo_process": ["advantage.mode=outcome+process", f"advantage.process_weight={args.process_weight}"],
        "ppo": critic + ["advantage.mode=outcome"],
        "ppo_dense": critic + ["advantage.mode=outcome+process", f"advantage.process_weight={args.step_weight}"],
    }


# the step verifier of both recipes, with the step check tied to the question (see MODIFIERS)
STRICT_STEPS = ("reward.verifiers=[{name: math_steps, weight: 1.0, "
                "kwargs: {segmenter: line, neutral_score: 0.5, strict: true}}]")
MODIFIERS = {
    # a step's operands must be numbers of the question or results of earlier true steps, so
    # "true but irrelevant" steps (8 + 7 = 15 out of nowhere) score 0 (math_steps strict)
    "strict": lambda value: [STRICT_STEPS],
    # only the steps up to the first false one (and the answer) carry a step reward
    "first_error": lambda value: ["advantage.step_credit=first_error"],
    "gamma": lambda value: [f"advantage.gamma={value}"],
    "weight": lambda value: [f"advantage.process_weight={value}"],
    "lam": lambda value: [f"advantage.lam={value}"],
}


def overrides_for(name: str, methods: dict[str, list[str]]) -> list[str]:
    """``ppo_dense+strict+gamma=0.99`` -> the method's overrides then each modifier's (later wins)."""
    base, *mods = name.split("+")
    if base not in methods:
        raise SystemExit(f"unknown method {base!r}; have {sorted(methods)}")
    out = list(methods[base])
    for mod in mods:
        key, _, value = mod.partition("=")
        if key not in MODIFIERS:
            raise SystemExit(f"unknown modifier {key!r} in {name!r}; have {sorted(MODIFIERS)}")
        out += MODIFIERS[key](value)
    return out


def read_run(metrics_file: Path) -> tuple[dict[int, float], list[float]]:
    """Held-out greedy accuracy by RL steps done (0 = before RL) and the per-step wall times."""
    curve, step_times = {}, []
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        if "time/step" in row:
            step_times.append(row["time/step"])
        if "eval/accuracy" in row:
            # periodic evals share the 0-based training step's row; before (-1) and after have their own
            done = row["step"] + 1 if "reward/mean" in row else max(row["step"], 0)
            curve[done] = row["eval/accuracy"]
    return curve, step_times


def steps_to_reach(curve: dict[int, float], target: float) -> int | None:
    """First evaluated step count whose accuracy is >= target (None: never within the run)."""
    return next((n for n in sorted(curve) if n > 0 and curve[n] >= target - 1e-12), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=["long", "short"])
    parser.add_argument("--methods", nargs="+", default=["grpo", "grpo_process", "ppo", "ppo_dense"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--num-test", type=int, default=300, help="held-out problems per evaluation")
    parser.add_argument("--process-weight", type=float, default=2.0, help="grpo_process: lambda")
    parser.add_argument("--step-weight", type=float, default=1.0, help="ppo_dense: scale of the step penalties")
    parser.add_argument("--critic-lr", type=float, default=5e-4)
    parser.add_argument("--critic-warmup", type=int, default=5)
    parser.add_argument("--lam", type=float, default=0.95)
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--out", default="runs/bench-credit")
    parser.add_argument("overrides", nargs="*", help="extra section.key=value overrides for every run")
    args = parser.parse_args()
    methods = method_overrides(args)
    method_args = {name: overrides_for(name, methods) for name in args.methods}  # unknown names fail here

    results = []
    for task in args.tasks:
        for seed in args.seeds:
            for method in args.methods:
                overrides = method_args[method] + args.overrides + [
                    f"trainer.steps={args.steps}", f"trainer.seed={seed}", f"data.num_test={args.num_test}",
                    f"eval.every_steps={args.eval_every}", "logging.wandb=disabled", "logging.progress=false",
                    "checkpoint.every_steps=0", "checkpoint.save_final_model=false"]
                run_dir = Path(args.out) / f"{task}-{method.replace('=', '')}-s{seed}"
                start = time.time()
                summary = train(load_config(TASKS[task], overrides), f"bench-{task}-{method}", run_dir=run_dir,
                                log=lambda *_: None)
                curve, step_times = read_run(run_dir / "metrics.jsonl")
                results.append({"task": task, "method": method, "seed": seed, "curve": curve,
                                "accuracy_before": summary["eval_before"]["accuracy"],
                                "accuracy_after": summary["eval_after"]["accuracy"],
                                "seconds_per_step": round(statistics.mean(step_times), 2) if step_times else None,
                                "wall_seconds": round(time.time() - start, 1)})
                print(json.dumps(results[-1]), flush=True)

    for task in args.tasks:
        rows = [r for r in results if r["task"] == task]
        steps_seen = sorted({k for r in rows for k in r["curve"]})
        print(f"\n{task} task: held-out greedy accuracy after N steps (mean of seeds {args.seeds})")
        print(f"{'method':<30}" + "".join(f"{n:>7}" for n in steps_seen) + f"{'s/step':>8}{'reach GRPO final':>18}")
        for method in args.methods:
            runs = [r for r in rows if r["method"] == method]
            if not runs:
                continue
            means = [statistics.mean(r["curve"].get(n, float("nan")) for r in runs) for n in steps_seen]
            reach = []
            for r in runs:  # per seed: against outcome GRPO's final accuracy on the same task and seed
                baseline = next((b for b in rows if b["method"] == "grpo" and b["seed"] == r["seed"]), None)
                if baseline is not None:
                    n = steps_to_reach(r["curve"], baseline["accuracy_after"])
                    reach.append("-" if n is None else f"{n}/{args.steps}")
            seconds = statistics.mean(r["seconds_per_step"] or 0 for r in runs)
            print(f"{method:<30}" + "".join(f"{m:>7.1%}" for m in means) + f"{seconds:>8.2f}"
                  + f"{', '.join(reach):>18}")
    print(json.dumps({"runs": results}))


if __name__ == "__main__":
    main()
