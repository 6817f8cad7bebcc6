"""The Python API, for notebooks and scripts: the same runs as the CLI, without a shell.

    from verifrl import load_config, train, evaluate

    cfg = load_config("recipes/tiny-arith.yaml", ["trainer.steps=50"])
    summary = train(cfg, on_step=lambda step, m: print(step, m["reward/mean"]))
    print(evaluate(load_config("recipes/tiny-arith.yaml"), checkpoint=summary["run_dir"]))

``train`` returns the summary the CLI writes to ``summary.json``; ``evaluate`` returns the dict
``verifrl eval`` prints. Bad configurations raise :class:`verifrl.ConfigError` before a
model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from verifrl.config import Config

StepCallback = Callable[[int, dict], "bool | None"]


def train(cfg: Config, *, on_step: StepCallback | None = None, run_dir: str | Path | None = None,
          resume: bool = False, name: str = "run") -> dict:
    """Run GRPO as ``cfg`` says; returns the run's summary (eval before/after, run_dir, times).

    Args:
        cfg: from :func:`verifrl.load_config`.
        on_step: called as ``on_step(step, metrics)`` after every step with the metrics written to
            ``metrics.jsonl`` (``reward/mean``, ``reward/accuracy``, ``entropy``, ``eval/*`` on
            evaluation steps...). Returning False, or raising :class:`verifrl.StopTraining`, ends the
            run cleanly after that step: checkpoint, final evaluation, summary with ``stopped_at``.
        run_dir: the run directory (default: ``logging.output_dir/<logging.run_name or name-time>``).
        resume: continue from ``run_dir``'s latest checkpoint.
        name: the run directory's prefix when neither ``run_dir`` nor ``logging.run_name`` is set.
    """
    from verifrl.trainer import train as run_training

    if run_dir is None and cfg.logging.run_name:
        run_dir = Path(cfg.logging.output_dir) / cfg.logging.run_name
    if resume and run_dir is None:
        raise ValueError("resume=True needs run_dir or logging.run_name to find the run")
    return run_training(cfg, name, resume=resume, run_dir=Path(run_dir) if run_dir else None, on_step=on_step)


def evaluate(cfg: Config, checkpoint: str | Path, *, pass_k: int | None = None) -> dict:
    """Greedy accuracy, mean reward (and pass@k) of a checkpoint on ``cfg``'s held-out split.

    ``checkpoint``: a run directory (its latest checkpoint), a ``checkpoints/step-N`` directory, or
    a saved model directory such as ``final_model``. ``pass_k`` overrides ``eval.pass_k``.
    """
    from verifrl.evaluation import evaluate_checkpoint

    if pass_k is not None:
        cfg.eval.pass_k = pass_k
    return evaluate_checkpoint(cfg, Path(checkpoint))
