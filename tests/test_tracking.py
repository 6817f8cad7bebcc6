"""Trackers: logging.report_to, wandb's own environment and login, wandb as an optional extra,
progress switched off, and a run stopped by SIGINT/SIGTERM ending cleanly."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifrl.tracking import Tracker, TrackerError, resolve_wandb_mode

ROOT = Path(__file__).resolve().parents[1]


def _wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL/LAST end it
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _exit_codes(run_dir: Path) -> list[int]:
    files = list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
    assert len(files) == 1, files
    return [r.exit.exit_code for r in _wandb_records(files[0]) if r.WhichOneof("record_type") == "exit"]


def test_auto_mode_follows_wandb_environment_and_login(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_wandb_mode("auto") == "offline"  # no key, no login
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    assert resolve_wandb_mode("auto") == "online"  # what `wandb login` writes
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") == resolve_wandb_mode("online") == "offline"  # the environment wins
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("offline") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_wandb_mode("disabled") == "disabled"  # the recipe switched it off


def test_wandb_mode_disabled_in_the_environment_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracker = Tracker(tmp_path, {}, total_steps=1, wandb_mode="offline", progress=False)
    tracker.log(0, {"reward/mean": 0.5})
    tracker.close()
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "wandb_run_id").exists()
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1


def test_wandb_project_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    tracker = Tracker(tmp_path, {}, total_steps=1, project="from-config", progress=False)
    assert tracker.wandb_run.project == "from-env"
    tracker.close()


def test_without_wandb_installed_auto_logs_a_note_and_explicit_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    notes = []
    tracker = Tracker(tmp_path / "a", {}, total_steps=1, progress=False, log=notes.append)
    tracker.log(0, {"reward/mean": 0.5})
    tracker.close()
    assert tracker.wandb_mode == "disabled" and "pip install 'verifrl[wandb]'" in notes[0]
    with pytest.raises(TrackerError, match=r"verifrl\[wandb\]"):
        Tracker(tmp_path / "b", {}, total_steps=1, wandb_mode="offline", progress=False)


def test_tensorboard_and_progress_off(tmp_path, capsys):
    tracker = Tracker(tmp_path, {}, total_steps=2, report_to=["tensorboard"], progress=False)
    tracker.log(0, {"reward/mean": 0.25, "loss": 1.5})
    tracker.log(1, {"reward/mean": 0.75, "loss": 1.0})
    tracker.close()
    assert capsys.readouterr().out == ""  # logging.progress=false prints no step lines
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("reward/mean")] == [0.25, 0.75]
    assert not (tmp_path / "wandb").exists()
    Tracker(tmp_path / "on", {}, total_steps=1, report_to=[], progress=True).log(0, {"reward/mean": 0.5})
    assert "step    1/1" in capsys.readouterr().out


def test_other_ranks_write_nothing(tmp_path, capsys):
    tracker = Tracker(tmp_path / "rank1", {}, total_steps=1, report_to=["wandb", "tensorboard"], write=False)
    tracker.log(0, {"reward/mean": 0.5})
    tracker.log_samples(0, [{"prompt": "p"}])
    tracker.close()
    assert not (tmp_path / "rank1").exists() and capsys.readouterr().out == ""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_with_one_line_and_closes_every_tracker(tmp_path, signum):
    from tests.conftest import tiny_model_overrides
    from verifrl.checkpoint import latest_checkpoint, load_checkpoint

    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "verifrl", "train", "recipes/tiny-arith.yaml", *tiny_model_overrides(),
           "trainer.steps=500", "trainer.threads=1", "rollout.num_prompts=2", "rollout.group_size=2",
           "rollout.max_new_tokens=8", "data.num_train=50", "data.num_test=2", "eval.before=false",
           "checkpoint.every_steps=1", "logging.wandb=offline", "logging.report_to=[wandb, tensorboard]",
           "--run-dir", str(run_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_MODE", None)
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while latest_checkpoint(run_dir) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith(f"verifrl: stopped by {signal.Signals(signum).name}"), err
    assert _exit_codes(run_dir) == [128 + signum]  # the wandb run finished, marked failed
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run_dir / "summary.json").exists()
    import torch

    from verifrl.config_loading import load_config
    from verifrl.models import load_policy

    cfg = load_config("recipes/tiny-arith.yaml", tiny_model_overrides())
    policy, _ = load_policy(cfg.model, log=lambda *_: None)
    load_checkpoint(latest_checkpoint(run_dir), policy, torch.optim.AdamW(policy.parameters()))  # intact
