"""Logging: console progress, a local JSONL metrics file, and wandb (offline unless a key is set).

Place in the data flow: ... -> update -> **logging**.

wandb ``auto`` mode runs online only when ``WANDB_API_KEY`` is set, otherwise offline: the run is
written under ``<run_dir>/wandb/`` and ``wandb sync <that dir>`` uploads it later. The JSONL file
(``metrics.jsonl``, one object per step) is the source of truth that scripts read.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

_CONSOLE_KEYS = (
    ("reward/mean", "reward", "{:.3f}"),
    ("reward/accuracy", "acc", "{:.2f}"),
    ("kl", "kl", "{:.4f}"),
    ("entropy", "ent", "{:.2f}"),
    ("completion/mean_length", "len", "{:.0f}"),
    ("time/step", "s/step", "{:.1f}"),
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


class Tracker:
    """Fans metrics out to the console, ``metrics.jsonl`` and wandb."""

    def __init__(self, run_dir: Path, config: dict, *, total_steps: int, wandb_mode: str = "auto",
                 project: str = "verifrl", run_name: str = "", progress: bool = True, resume: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._metrics_file = open(self.metrics_path, "a" if resume else "w")
        self.total_steps = total_steps
        self.progress = progress and sys.stderr.isatty()
        self.start = time.time()
        self.wandb_run = None
        mode = wandb_mode
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        self.wandb_mode = mode
        if mode != "disabled":
            self.wandb_run = self._init_wandb(mode, project, run_name or self.run_dir.name, config, resume)

    def _init_wandb(self, mode: str, project: str, name: str, config: dict, resume: bool):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        id_file = self.run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if resume and id_file.exists() else None
        run = wandb.init(
            project=project, name=name, config=config, dir=str(self.run_dir), mode=mode,
            id=run_id, resume="allow" if run_id else None, reinit="finish_previous",
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        id_file.write_text(run.id)
        run.define_metric("train/step")
        run.define_metric("*", step_metric="train/step")
        return run

    def log(self, step: int, metrics: dict[str, Any], console: bool = True) -> None:
        record = {"step": step, "elapsed": round(time.time() - self.start, 3)}
        record.update({k: _jsonable(v) for k, v in metrics.items()})
        self._metrics_file.write(json.dumps(record) + "\n")
        self._metrics_file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log({"train/step": step, **{k: v for k, v in record.items() if v is not None}})
        if console:
            self._console(step, metrics)

    def _console(self, step: int, metrics: dict[str, Any]) -> None:
        done = step + 1
        width = 24
        filled = int(width * done / max(1, self.total_steps))
        bar = "#" * filled + "-" * (width - filled)
        parts = [f"step {done:>4}/{self.total_steps} [{bar}]"]
        for key, label, fmt in _CONSOLE_KEYS:
            if key in metrics and metrics[key] is not None and math.isfinite(float(metrics[key])):
                parts.append(f"{label} {fmt.format(float(metrics[key]))}")
        elapsed = time.time() - self.start
        eta = elapsed / done * (self.total_steps - done) if done else 0.0
        parts.append(f"eta {eta / 60:.1f}m")
        print("  ".join(parts), flush=True)

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        """A table of sample completions (prompt, completion, reward, answer) for this step."""
        path = self.run_dir / "samples.jsonl"
        with open(path, "a") as f:
            for row in rows:
                f.write(json.dumps({"step": step, **{k: _jsonable(v) for k, v in row.items()}}) + "\n")
        if self.wandb_run is not None and rows:
            import wandb

            columns = list(rows[0])
            table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])
            self.wandb_run.log({"train/step": step, "samples": table})

    def summary(self, values: dict[str, Any]) -> None:
        if self.wandb_run is not None:
            for key, value in values.items():
                self.wandb_run.summary[key] = value

    def close(self) -> None:
        self._metrics_file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None
