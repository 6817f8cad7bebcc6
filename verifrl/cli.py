"""Command line: ``verifrl train RECIPE [key=value ...] [--resume | --dry-run]``, ``verifrl eval RECIPE
--checkpoint DIR`` and ``verifrl report RUN_DIR [--out PNG]``.

Configuration errors print one line naming the key or file and exit with status 2, before any
model is loaded.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
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
    train.add_argument("--overwrite", action="store_true",
                       help="delete the run already in the run directory and start afresh (default: refuse)")
    train.add_argument("--dry-run", action="store_true",
                       help="load everything, run one rollout and verification, print the first batch, exit")
    ev = sub.add_parser("eval", help="evaluate a checkpoint on the recipe's held-out split")
    ev.add_argument("recipe")
    ev.add_argument("overrides", nargs="*")
    ev.add_argument("--checkpoint", required=True,
                    help="a run directory, a checkpoints/step-N directory, or a saved model directory")
    ev.add_argument("--pass-k", type=int, default=None, help="also report pass@k (overrides eval.pass_k)")
    report = sub.add_parser("report", help="draw a run's curves from its metrics.jsonl into a PNG")
    report.add_argument("run_dir", help="a run directory (it holds metrics.jsonl)")
    report.add_argument("--out", help="the PNG to write (default: RUN_DIR/report.png)")
    return parser


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds the run like KeyboardInterrupt, so that trackers close
    (wandb marked failed with this exit code) and no checkpoint is left half-renamed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def _raise_interrupted(signum: int, frame) -> None:
    # a second signal while the run unwinds kills the process the default way
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Interrupted(signum)


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


def _report(args, extra: list[str], parser) -> int:
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from verifrl.report import ReportError, write_report

    try:
        print(write_report(args.run_dir, args.out))
    except ReportError as err:
        return _fail(str(err))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # overrides may also follow the options (`train R --run-dir D trainer.lr=1e-4`)
    args, extra = parser.parse_known_args(argv)
    if args.command == "report":
        return _report(args, extra, parser)
    unknown_flags = [a for a in extra if a.startswith("-")]
    if unknown_flags:
        parser.error(f"unrecognized arguments: {' '.join(unknown_flags)}")
    args.overrides = [*args.overrides, *extra]
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)} \
        if in_main_thread else {}
    try:
        return _run(args)
    except Interrupted as err:
        print(f"verifrl: stopped by {err.signal_name}; checkpoints written so far are intact "
              f"(continue with --resume)", file=sys.stderr)
        return err.exit_code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(args) -> int:
    from verifrl.memory import SamplingMemoryError
    from verifrl.tasks.loaders import DataError
    from verifrl.models import ModelLoadError
    from verifrl.sampler_process import SamplerProcessError
    from verifrl.samplers import NonFiniteLogits
    from verifrl.tracking import TrackerError

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
            from verifrl.rundir import RunDirError
            from verifrl.trainer import NonFiniteTraining, train

            if args.resume and not args.run_dir and not cfg.logging.run_name:
                return _fail("--resume needs --run-dir or logging.run_name to find the run")
            run_dir = Path(args.run_dir) if args.run_dir else None
            if run_dir is None and cfg.logging.run_name:
                run_dir = Path(cfg.logging.output_dir) / cfg.logging.run_name
            try:
                train(cfg, recipe_name, resume=args.resume, run_dir=run_dir, overwrite=args.overwrite)
            except (NonFiniteTraining, RunDirError) as err:
                return _fail(str(err))
        else:
            from verifrl.evaluation import evaluate_checkpoint

            if args.pass_k is not None:
                cfg.eval.pass_k = args.pass_k
            result = evaluate_checkpoint(cfg, Path(args.checkpoint))
            print(json.dumps(result))
    except (ModelLoadError, FileNotFoundError, DataError, NonFiniteLogits, SamplingMemoryError,
            TrackerError, SamplerProcessError) as err:
        return _fail(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
