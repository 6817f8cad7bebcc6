"""The off-policy pipeline end to end: the default path's numbers unchanged, a run with a sampler
process (staleness, gap metrics), exact resume after Ctrl-C with no orphan process (the batches in
flight kept in the checkpoint's tensor file), SIGTERM, and a sampler that dies taking the run down
with a clear error; an error in the trainer stops the sampler."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import tiny_model_overrides
from verifrl.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

# recorded on main at 678e0b5, before the pipeline existed, with _args(run_dir) below (3 steps)
REFERENCE = [
    {"reward/mean": -0.96875, "loss": 0.031902141869068146, "grad_norm": 0.16987326741218567,
     "completion/mean_length": 11.75, "entropy": 5.245769500732422},
    {"reward/mean": -0.96875, "loss": 0.022554481402039528, "grad_norm": 0.16858115792274475,
     "completion/mean_length": 11.75, "entropy": 5.2482147216796875},
    {"reward/mean": -0.859375, "loss": 0.05465645343065262, "grad_norm": 0.25745129585266113,
     "completion/mean_length": 11.375, "entropy": 5.25365288313045},
]


def _args(run_dir: Path, *extra: str, steps: int = 3) -> list[str]:
    return ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), f"trainer.steps={steps}",
            "rollout.num_prompts=4", "rollout.group_size=4", "rollout.max_new_tokens=12", "data.num_train=100",
            "data.num_test=4", "trainer.threads=1", "reward.overlong_cache_length=8", "eval.before=false",
            "checkpoint.every_steps=0", "checkpoint.save_final_model=false", "logging.wandb=disabled",
            "logging.progress=false", "--run-dir", str(run_dir), *extra]


def _steps(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["step"] >= 0 and ("reward/mean" in r or "update/skipped" in r)]


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"step-{step}" / "model.safetensors"))


@pytest.fixture()
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_off_policy_steps_0_gives_the_numbers_of_the_code_before_the_pipeline(tmp_path, _restore_threads):
    assert main(_args(tmp_path / "run", "trainer.off_policy_steps=0")) == 0
    steps = _steps(tmp_path / "run")
    assert [{k: r[k] for k in REFERENCE[0]} for r in steps] == REFERENCE
    assert not any(k.startswith("offpolicy/") for k in steps[0])  # nothing recomputed, nothing corrected
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["loss"]["rollout_correction"]["mode"] == "none"
    assert config["trainer"]["recompute_old_logprobs"] is False


def test_a_pipelined_run_trains_on_batches_one_version_old(tmp_path, _restore_threads):
    run = tmp_path / "run"
    assert main(_args(run, "trainer.off_policy_steps=1", steps=4)) == 0
    steps = _steps(run)
    assert [r["offpolicy/staleness_mean"] for r in steps] == [0.0, 1.0, 1.0, 1.0]
    assert all(r["offpolicy/dropped_rows"] == 0 for r in steps)
    # batch 0 was sampled by the weights the trainer recomputes with; later ones one update behind
    assert steps[0]["offpolicy/log_ratio_abs_mean"] < 1e-5
    assert all(r["offpolicy/log_ratio_abs_mean"] > 1e-5 for r in steps[1:])
    assert all("loss" in r and "offpolicy/correction_weight_mean" in r for r in steps)
    config = json.loads((run / "config.json").read_text())
    assert (config["loss"]["rollout_correction"]["mode"], config["trainer"]["recompute_old_logprobs"]) == ("mask", True)
    # the sampler process is gone (multiprocessing's resource tracker stays for the test process's life)
    assert not [c for c in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]


def _sampler_of(process: subprocess.Popen, deadline: float) -> psutil.Process:
    while time.time() < deadline:
        for child in psutil.Process(process.pid).children(recursive=True):
            if "spawn_main" in " ".join(child.cmdline()):
                return child
        time.sleep(0.1)
    raise AssertionError("no sampler process appeared")


def _gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_leaves_no_orphan_and_resume_is_exact(tmp_path, _restore_threads):
    steps = 6
    pipelined = ("trainer.off_policy_steps=1", "checkpoint.every_steps=2", "checkpoint.keep_last=0")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "verifrl", *_args(stopped, *pipelined, steps=steps)[0:]],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = _sampler_of(process, time.time() + 240)
    pointer = stopped / "checkpoints" / "latest"
    deadline = time.time() + 240
    while not pointer.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends (to the trainer; the sampler ignores it)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "stopped by SIGINT" in stderr
    assert _gone(sampler.pid), "the sampler process outlived the trainer"
    resumed_from = int(pointer.read_text().split("-")[1])
    assert 0 < resumed_from < steps
    # in flight at version v: batch v (sampled by version v-1, kept: its tensors in the tensor file)
    # and batch v+1 (sampled by version v itself: only its prompt rows, it is sampled again)
    step_dir = stopped / "checkpoints" / f"step-{resumed_from}"
    in_flight = json.loads((step_dir / "trainer_state.json").read_text())["trainer"]["pipeline"]
    assert [(e["index"], e["version"], e["batch"] is None) for e in in_flight] == [
        (resumed_from, resumed_from - 1, False), (resumed_from + 1, resumed_from, True)]
    tensors = load_file(str(step_dir / "trainer_tensors.safetensors"))
    assert tensors[f"batch{resumed_from}.completion_ids"].shape[0] == 4 * 4
    assert len(in_flight[0]["batch"]["texts"]) == 4 * 4 and all(len(e["rows"]) == 4 for e in in_flight)

    # a resume without the pipeline drops (and counts) what the checkpoint had sampled ahead
    without = tmp_path / "without"
    shutil.copytree(stopped, without)
    assert main(_args(without, "trainer.off_policy_steps=0", "checkpoint.every_steps=2", steps=steps)
                + ["--resume"]) == 0
    first = next(r for r in _steps(without) if r["step"] == resumed_from)
    assert first["offpolicy/dropped_rows"] == 2 * 4 * 4  # batches resumed_from and resumed_from+1: 4 prompts x 4

    assert main(_args(stopped, *pipelined, steps=steps) + ["--resume"]) == 0
    assert main(_args(straight, *pipelined, steps=steps)) == 0
    a, b = _weights(straight, steps), _weights(stopped, steps)
    assert not [k for k in a if not torch.equal(a[k], b[k])], f"weights differ after resume from {resumed_from}"
    ma, mb = ({r["step"]: r for r in _steps(run)} for run in (straight, stopped))
    for step in range(resumed_from, steps):  # the same batches, sampled by the same versions
        for key in ("reward/mean", "loss", "grad_norm", "offpolicy/log_ratio_abs_mean", "offpolicy/staleness_mean"):
            assert ma[step][key] == mb[step][key], (step, key)


def test_sigterm_stops_the_run_with_143_and_no_orphan(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "verifrl",
                                *_args(tmp_path / "run", "trainer.off_policy_steps=1", steps=50)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = _sampler_of(process, time.time() + 240)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)  # what a scheduler or `docker stop` sends
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr
    assert _gone(sampler.pid), "the sampler process outlived the trainer"


def test_a_sampler_that_dies_stops_the_run_with_a_clear_error(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "verifrl",
                                *_args(tmp_path / "run", "trainer.off_policy_steps=1", steps=50)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = _sampler_of(process, time.time() + 240)
    time.sleep(1.0)
    os.kill(sampler.pid, signal.SIGKILL)  # what the OOM killer does
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr[-2000:]
    assert "verifrl: error: the sampler process died" in stderr


def test_an_error_in_the_trainer_stops_the_sampler_process(tmp_path, _restore_threads):
    from verifrl.config_loading import load_config
    from verifrl.trainer import train

    args = _args(tmp_path / "run", "trainer.off_policy_steps=1", steps=5)
    cfg = load_config(args[1], [a for a in args[2:] if "=" in a])

    def fail(step, metrics):
        raise RuntimeError(f"boom at step {step}")

    with pytest.raises(RuntimeError, match="boom at step 0"):
        train(cfg, run_dir=tmp_path / "run", log=lambda *_: None, on_step=fail)
    assert not [c for c in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]


def test_rows_sampled_ahead_must_be_storable_in_the_checkpoint():
    import datetime

    from verifrl.sampler_process import SamplerProcessError, check_rows_storable

    check_rows_storable([{"question": "1 + 1", "answer": 2, "tags": ["a"], "meta": {"k": None}}])
    with pytest.raises(SamplerProcessError, match="trainer.off_policy_steps needs dataset rows of JSON values"):
        check_rows_storable([{"question": "q", "date": datetime.date(2026, 12, 1)}])
