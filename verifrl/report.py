"""``verifrl report RUN_DIR``: a PNG of a run's curves from its ``metrics.jsonl``, no wandb needed.

Place: after logging (reads what :mod:`verifrl.tracking` wrote). One panel per quantity the run
logged, absent ones skipped: reward, accuracy (train and held-out evaluation points), completion
length, entropy, clip fraction, KL, PPO's critic (value loss, explained variance, value clip
fraction), and tool calls (every ``tool/*`` metric). Training curves are
drawn raw (faint) and as a moving average. matplotlib is an optional dependency (``report`` extra).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


class ReportError(RuntimeError):
    """The run directory has nothing to plot, or matplotlib is missing."""


@dataclass
class RunMetrics:
    """A run's metrics as series: name -> (x, y), x = policy updates done when it was measured."""

    train: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    eval: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def read_metrics(path: Path) -> RunMetrics:
    """Parse ``metrics.jsonl``; a resumed run's repeated steps keep their last record."""
    train_rows: dict[int, dict] = {}
    eval_rows: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ReportError(f"{path}:{number}: not a JSON line") from None
        step = int(record.get("step", 0))
        if "reward/mean" in record:  # a training step: logged after update `step`, so step + 1 updates done
            train_rows[step + 1] = record
            eval_rows.pop(step + 1, None)  # a resumed run's repeated step replaces the earlier one whole
            if any(k.startswith("eval/") for k in record):
                eval_rows[step + 1] = record
        elif any(k.startswith("eval/") for k in record):  # before RL (step -1) and after the last step
            eval_rows[max(step, 0)] = record
    metrics = RunMetrics()
    for rows, into, keep in ((train_rows, metrics.train, lambda k: not k.startswith("eval/")),
                             (eval_rows, metrics.eval, lambda k: k.startswith("eval/"))):
        for x in sorted(rows):
            for key, value in rows[x].items():
                if keep(key) and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    xs, ys = into.setdefault(key, ([], []))
                    xs.append(x)
                    ys.append(float(value))
    return metrics


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


# (panel title, training series, evaluation series); a panel is drawn when any of them was logged
_PANELS = (
    ("reward", ["reward/mean"], ["eval/mean_reward"]),
    ("accuracy", ["reward/accuracy"], ["eval/accuracy", "eval/pass@1_sampled"]),
    ("completion length (tokens)", ["completion/mean_length"], ["eval/mean_length"]),
    ("entropy", ["entropy"], []),
    ("clip fraction", ["clip_frac", "clip_frac_low", "clip_frac_high"], []),
    ("KL to reference", ["kl"], []),
    # PPO's critic (advantage.estimator: gae)
    ("critic value loss", ["critic/value_loss"], []),
    ("critic fit", ["critic/explained_variance", "critic/value_clip_fraction"], []),
)


def _panels(metrics: RunMetrics) -> list[tuple[str, list[str], list[str]]]:
    panels = []
    for title, train_keys, eval_keys in _PANELS:
        train = [k for k in train_keys if k in metrics.train]
        evals = [k for k in eval_keys if k in metrics.eval]
        evals += [k for k in sorted(metrics.eval) if title == "accuracy" and k.startswith("eval/pass@")
                  and k not in evals]
        if title == "KL to reference" and train and not any(metrics.train["kl"][1]):
            train = []  # beta = 0: KL is not computed, a flat zero says nothing
        if train or evals:
            panels.append((title, train, evals))
    tools = [k for k in sorted(metrics.train) if k.startswith("tool/")]
    if tools:
        panels.append(("tool calls", tools, []))
    return panels


def write_report(run_dir: str | Path, out: str | Path | None = None, *, dpi: int = 64) -> Path:
    """Draw the curves of ``run_dir/metrics.jsonl`` into a PNG (default ``run_dir/report.png``)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ReportError(f"{run_dir}: no metrics.jsonl (is it a verifrl run directory?)")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("verifrl report needs matplotlib: pip install 'verifrl[report]'") from None
    metrics = read_metrics(path)
    panels = _panels(metrics)
    if not panels:
        raise ReportError(f"{path}: no training or evaluation metrics to plot")
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.9 * rows), squeeze=False)
    steps = max((xs[-1] for xs, _ in metrics.train.values()), default=0)
    window = max(1, steps // 25)
    for ax, (title, train_keys, eval_keys) in zip(axes.flat, panels):
        for key in train_keys:
            xs, ys = metrics.train[key]
            line, = ax.plot(xs, ys, alpha=0.25, linewidth=0.8)
            ax.plot(xs, _moving_average(ys, window), color=line.get_color(), linewidth=1.6,
                    label=f"{key} (avg {window})" if window > 1 else key)
        for key in eval_keys:
            xs, ys = metrics.eval[key]
            ax.plot(xs, ys, marker="o", linestyle="--", linewidth=1.0, markersize=4, label=f"{key} (held-out)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(_title(run_dir), fontsize=10)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "report.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def _title(run_dir: Path) -> str:
    """The run's name, and its held-out accuracy before -> after RL when summary.json has them."""
    title = run_dir.name
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        before, after = (summary.get("eval_before") or {}).get("accuracy"), summary["eval_after"]["accuracy"]
        title += f"  held-out accuracy {before:.1%} -> {after:.1%}" if before is not None else \
            f"  held-out accuracy {after:.1%}"
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a run still in progress has no summary yet
    return title
