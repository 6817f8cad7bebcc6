"""Logging: console progress, a local JSONL metrics file, and the trackers of ``logging.report_to``.

Place in the data flow: ... -> update -> **logging**.

The JSONL file (``metrics.jsonl``, one object per step) is the source of truth that scripts read.
Trackers: ``wandb`` (an optional extra) and ``tensorboard`` (event files under
``<run_dir>/tensorboard``). wandb follows its own environment and login: ``WANDB_MODE`` and
``WANDB_PROJECT`` when set win over the config (``WANDB_MODE=disabled`` writes nothing);
``logging.wandb: auto`` is online when wandb has credentials (``WANDB_API_KEY``, or a
``wandb login`` entry in ~/.netrc) and offline otherwise, written under ``<run_dir>/wandb/`` for a
later ``wandb sync``. A run that ends by an exception or a signal closes every tracker with a
non-zero exit code (wandb marks it failed).
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


class TrackerError(RuntimeError):
    """A configured tracker cannot run (not installed); the message says what to install."""


def wandb_has_credentials() -> bool:
    """Whether wandb would log in without asking: an API key in the environment or a netrc entry
    for its host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = os.environ.get("NETRC", os.path.join(os.path.expanduser("~"), ".netrc"))
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(configured: str) -> str:
    """The mode wandb runs in: ``disabled`` when configured so, else ``WANDB_MODE`` when set, else
    the configured one (``auto``: online with credentials, offline without)."""
    if configured == "disabled":  # switched off in the recipe: the environment does not switch it on
        return "disabled"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env in ("dryrun", "run"):  # wandb's older spellings
        return "offline" if env == "dryrun" else "online"
    if configured == "auto":
        return "online" if wandb_has_credentials() else "offline"
    return configured


class Tracker:
    """Fans metrics out to the console, ``metrics.jsonl`` and the configured trackers.

    ``write=False`` (torchrun ranks other than 0): nothing is written or printed at all.
    """

    def __init__(self, run_dir: Path, config: dict, *, total_steps: int, wandb_mode: str = "auto",
                 project: str = "verifrl", run_name: str = "", progress: bool = True, resume: bool = False,
                 report_to: tuple[str, ...] | list[str] = ("wandb",), write: bool = True, log=print) -> None:
        self.run_dir = Path(run_dir)
        self.total_steps = total_steps
        self.progress = progress and write
        self.start = time.time()
        self.wandb_run = None
        self.tensorboard = None
        self._metrics_file = None
        self.wandb_mode = "disabled"
        if not write:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._metrics_file = open(self.metrics_path, "a" if resume else "w")
        if "wandb" in report_to:
            mode = resolve_wandb_mode(wandb_mode)
            try:
                import wandb  # noqa: F401
            except ImportError:
                if wandb_mode != "auto" and mode != "disabled":
                    raise TrackerError(f"logging.wandb={wandb_mode} needs wandb: pip install 'verifrl[wandb]'") from None
                if mode != "disabled":
                    log("wandb is not installed: logging to metrics.jsonl only (pip install 'verifrl[wandb]')")
                mode = "disabled"
            self.wandb_mode = mode
            if mode != "disabled":
                project = os.environ.get("WANDB_PROJECT") or project
                self.wandb_run = self._init_wandb(mode, project, run_name or self.run_dir.name, config, resume)
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

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
        if self._metrics_file is None:
            return
        record = {"step": step, "elapsed": round(time.time() - self.start, 3)}
        record.update({k: _jsonable(v) for k, v in metrics.items()})
        self._metrics_file.write(json.dumps(record) + "\n")
        self._metrics_file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log({"train/step": step, **{k: v for k, v in record.items() if v is not None}})
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tensorboard.add_scalar(key, value, global_step=step)
            self.tensorboard.flush()
        if console and self.progress:
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
        if self._metrics_file is None:
            return
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

    def close(self, exit_code: int = 0) -> None:
        """Close every output; a non-zero ``exit_code`` (an exception, SIGINT 130, SIGTERM 143)
        marks the wandb run failed."""
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.wandb_run is not None:
            run, self.wandb_run = self.wandb_run, None
            run.finish(exit_code=exit_code)
