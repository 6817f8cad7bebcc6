"""Command line: ``verifrl train RECIPE [key=value ...] [--resume | --dry-run]`` and ``verifrl eval RECIPE --checkpoint DIR``.

Configuration errors print one line naming the key or file and exit with status 2, before any
model is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from verifrl.config import ConfigError
from verifrl.config_loading import load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verifrl", description="RL with verifiable rewards (GRPO).")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run GRPO from a recipe")
    train.add_argument("recipe", help="YAML recipe, e.g. recipes/tiny-arith.yaml")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.lr=3e-5")
    train.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    train.add_argument("--run-dir", help="run directory (default: logging.output_dir/<recipe>-<time>)")
    train.add_argument("--dry-run", action="store_true",
                       help="load everything, run one rollout and verification, print the first batch, exit")
    ev = sub.add_parser("eval", help="evaluate a checkpoint on the recipe's held-out split")
    ev.add_argument("recipe")
    ev.add_argument("overrides", nargs="*")
    ev.add_argument("--checkpoint", required=True,
                    help="a run directory, a checkpoints/step-N directory, or a saved model directory")
    ev.add_argument("--pass-k", type=int, default=None, help="also report pass@k (overrides eval.pass_k)")
    return parser


def _fail(message: str) -> int:
    print(f"verifrl: error: {message}", file=sys.stderr)
    return 2


def _validate_task(cfg) -> None:
    """Load the dataset and check the prompt template before any model is loaded."""
    from verifrl.tasks.loaders import load_task
    from verifrl.prompts import template_fields
    from verifrl.scoring import build_verifiers

    for named in build_verifiers(cfg.reward.verifiers):
        named.close()
    task = load_task(cfg.data)
    missing = [f for f in template_fields(cfg.data.prompt_template) if f not in task.train.column_names]
    if missing:
        raise ConfigError(f"data.prompt_template uses column(s) {missing} that the dataset lacks "
                          f"(it has {task.train.column_names})")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # overrides may also follow the options (`train R --run-dir D trainer.lr=1e-4`)
    args, extra = parser.parse_known_args(argv)
    unknown_flags = [a for a in extra if a.startswith("-")]
    if unknown_flags:
        parser.error(f"unrecognized arguments: {' '.join(unknown_flags)}")
    args.overrides = [*args.overrides, *extra]
    from verifrl.tasks.loaders import DataError
    from verifrl.models import ModelLoadError
    from verifrl.sampler_process import SamplerProcessError
    from verifrl.samplers import NonFiniteLogits

    try:
        cfg = load_config(args.recipe, args.overrides)
        _validate_task(cfg)
    except (ConfigError, DataError) as err:
        return _fail(str(err))
    except ValueError as err:  # unknown verifier names and the like
        return _fail(str(err))
    recipe_name = Path(args.recipe).stem
    try:
        if args.command == "train" and args.dry_run:
            from verifrl.dryrun import dry_run

            dry_run(cfg)
        elif args.command == "train":
            from verifrl.trainer import NonFiniteTraining, train

            if args.resume and not args.run_dir and not cfg.logging.run_name:
                return _fail("--resume needs --run-dir or logging.run_name to find the run")
            run_dir = Path(args.run_dir) if args.run_dir else None
            if run_dir is None and cfg.logging.run_name:
                run_dir = Path(cfg.logging.output_dir) / cfg.logging.run_name
            try:
                train(cfg, recipe_name, resume=args.resume, run_dir=run_dir)
            except NonFiniteTraining as err:
                return _fail(str(err))
        else:
            from verifrl.evaluation import evaluate_checkpoint

            if args.pass_k is not None:
                cfg.eval.pass_k = args.pass_k
            result = evaluate_checkpoint(cfg, Path(args.checkpoint))
            print(json.dumps(result))
    except (ModelLoadError, FileNotFoundError, DataError, NonFiniteLogits, SamplerProcessError) as err:
        return _fail(str(err))
    except KeyboardInterrupt:  # the trainer's finally blocks have stopped the sampler process and the verifiers
        print("verifrl: interrupted (continue with --resume from the last checkpoint)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
