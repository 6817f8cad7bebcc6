"""verifrl vs TRL's GRPOTrainer: the same GRPO job, timed step by step on this machine.

    python bench/vs_trl.py                      # the README table (~5-8 minutes on 2 CPU cores)
    python bench/vs_trl.py --steps 2 --rounds 1 --prompts 2 --group 4 --max-new-tokens 16   # smoke

Both frameworks train the same embedded tiny Qwen2 (``verifrl.embedded``, built once and cached)
on the built-in arithmetic prompts with the same math verifier, group size, prompts per step,
completion length, temperature, loss (dapo, clip 0.2/0.28), beta, learning rate and step count; one
optimiser step per generation batch and no micro-batching in either. Each framework runs in its own
subprocess (so peak RSS is its own), the subprocesses alternate (round r runs A then B, round r+1
B then A) so background load hits both alike, and the first step of every subprocess is a warm-up
that is not counted.

Per step we record the wall time and the time spent in generation, in reference/old log-probs
(no-grad forward passes), in verification, and the rest (advantages, loss, backward, optimiser,
bookkeeping), plus the completion tokens generated. The last line printed is one JSON object with
``speedup_per_step`` (TRL s/step / verifrl s/step), ``memory_ratio`` (verifrl peak RSS / TRL's) and
the settings.

On a GPU (``--device cuda``) both run in bfloat16 and peak memory is the CUDA allocator's peak;
``--random-model qwen2.5-0.5b`` builds a model of Qwen2.5-0.5B's shape (24 x 896, GQA 14/2 heads,
151,936-token vocabulary, tied embeddings: 494M parameters) with random weights and the embedded
tokenizer. Random weights never answer a math question, so that mode scores completions with the
``odd_length`` reward (1 if the decoded completion has an odd number of characters): cheap,
deterministic, identical in both frameworks, and varied enough within groups that the update
really runs.

TRL is needed only here: ``pip install -e .[bench]`` (or ``pip install trl --no-deps accelerate``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("generation", "logprobs", "verification", "update")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def odd_length(completion: str, example: dict) -> float:
    """Bench-only reward for random-weight models (see the module doc)."""
    return float(len(completion) % 2 == 1)


def _peak_device_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def random_model_dir(args, tokenizer_dir: Path) -> Path:
    """A Qwen2.5-0.5B-shaped model with random weights and the embedded tokenizer, saved once."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from verifrl.models import load_tokenizer

    target = Path(args.scratch) / f"random-{args.random_model}-seed{args.seed}"
    if (target / "config.json").exists():
        return target
    tokenizer = load_tokenizer(str(tokenizer_dir))
    config = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1e6, tie_word_embeddings=True, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(args.seed)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    partial = target.with_suffix(".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


def _rows(args) -> list[dict]:
    from verifrl.tasks.loaders import load_task
    from verifrl.config import DataConfig

    train = load_task(DataConfig(num_train=args.num_train, num_test=10)).train
    return [train[i] for i in range(len(train))]


# --------------------------------------------------------------------------------------------
# verifrl worker


def run_verifrl(args) -> dict:
    import torch

    from verifrl.config_loading import load_config
    from verifrl.models import frozen_copy, load_policy
    from verifrl.scoring import build_verifiers
    from verifrl.models import seed_everything
    from verifrl.prompts import prepare_task
    from verifrl.trainer import rl_step

    from verifiers import register
    from verifrl.config import VerifierSpec

    torch.set_num_threads(args.threads)
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    cfg = load_config(None, [
        f"model.name_or_path={args.model}", f"model.device={args.device}", f"model.dtype={dtype}",
        f"model.gradient_checkpointing={args.gradient_checkpointing == 'on'}", f"data.num_train={args.num_train}",
        "data.num_test=10", f"rollout.num_prompts={args.prompts}", f"rollout.group_size={args.group}",
        f"rollout.max_new_tokens={args.max_new_tokens}", "rollout.temperature=1.0", "loss.type=dapo",
        "loss.epsilon_low=0.2", "loss.epsilon_high=0.28", f"loss.beta={args.beta}", "trainer.lr=1e-4",
        f"trainer.seed={args.seed}", "trainer.max_grad_norm=1.0",
    ])
    if args.reward == "odd_length":
        register("bench_odd_length")(odd_length)
        cfg.reward.verifiers = [VerifierSpec(name="bench_odd_length")]
    seed_everything(cfg.trainer.seed)
    policy, tokenizer = load_policy(cfg.model, log=lambda *_: None)
    task = prepare_task(cfg, tokenizer)
    verifiers = build_verifiers(cfg.reward.verifiers)
    reference = frozen_copy(policy) if cfg.loss.beta > 0 else None
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.trainer.lr, betas=cfg.trainer.adam_betas,
                                  weight_decay=0.0)
    steps = []
    try:
        for _ in range(args.steps + 1):
            rows = task.sampler.next_rows(cfg.rollout.num_prompts)
            start = time.perf_counter()
            metrics, _ = rl_step(cfg, policy, reference, tokenizer, optimizer, verifiers, rows)
            wall = time.perf_counter() - start
            stage = {
                "generation": metrics["time/generation"],
                "logprobs": metrics.get("time/reference", 0.0),
                "verification": metrics["time/verification"],
            }
            stage["update"] = wall - sum(stage.values())
            steps.append({"wall": wall, "tokens": metrics["completion/mean_length"] * args.prompts * args.group,
                          "reward": metrics["reward/mean"], **stage})
    finally:
        for named in verifiers:
            named.close()
    return {"steps": steps[1:], "peak_rss_mb": _peak_rss_mb(), "peak_device_mb": _peak_device_mb()}


# --------------------------------------------------------------------------------------------
# TRL worker


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from verifiers import get_verifier, verify_batch
    from verifrl.embedded import prompt_text
    from verifrl.models import load_tokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rows = _rows(args)
    dataset = Dataset.from_list([{"prompt": prompt_text(r["question"]), "answer": str(r["answer"])} for r in rows])
    tokenizer = load_tokenizer(args.model)
    on_gpu = args.device == "cuda"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16 if on_gpu else torch.float32)
    if on_gpu:
        model.to("cuda")
    verifier = get_verifier("math")
    token_counts: list[int] = []

    def math_reward(completions, answer, completion_ids=None, **_):
        if completion_ids is not None:
            token_counts.append(sum(len(ids) for ids in completion_ids))
        if args.reward == "odd_length":
            return [odd_length(c, {}) for c in completions]
        return [r.score for r in verify_batch(verifier, completions, [{"answer": a} for a in answer])]

    n = args.prompts * args.group
    config = GRPOConfig(
        output_dir=str(Path(args.scratch) / "trl-out"), use_cpu=not on_gpu, bf16=on_gpu, report_to="none",
        gradient_checkpointing=args.gradient_checkpointing == "on",
        save_strategy="no", logging_steps=1, max_steps=args.steps + 1, seed=args.seed,
        per_device_train_batch_size=n, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=args.group, max_completion_length=args.max_new_tokens, temperature=1.0,
        loss_type="dapo", epsilon=0.2, epsilon_high=0.28, beta=args.beta, learning_rate=1e-4,
        lr_scheduler_type="constant", adam_beta2=0.99, weight_decay=0.0, max_grad_norm=1.0,
        num_iterations=1, scale_rewards="group", disable_dropout=True, dataloader_num_workers=0,
        log_completions=False,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[math_reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    stage_time = {k: 0.0 for k in STAGES}

    def timed(name, fn, stage_of):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                stage = stage_of()
                if stage:
                    stage_time[stage] += time.perf_counter() - start
        setattr(trainer, name, wrapper)

    timed("_generate", trainer._generate, lambda: "generation")
    timed("_calculate_rewards", trainer._calculate_rewards, lambda: "verification")
    # no-grad passes are the reference / old log-probs; with grad it is the loss's own forward
    timed("_get_per_token_logps_and_entropies", trainer._get_per_token_logps_and_entropies,
          lambda: None if torch.is_grad_enabled() else "logprobs")
    steps: list[dict] = []
    rewards: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()
            for k in stage_time:
                stage_time[k] = 0.0
            self.counted = len(token_counts)

        def on_step_end(self, *_, **__):
            wall = time.perf_counter() - self.start
            stage = {k: stage_time[k] for k in ("generation", "logprobs", "verification")}
            stage["update"] = wall - sum(stage.values())
            steps.append({"wall": wall, "tokens": sum(token_counts[self.counted:]), **stage})

        def on_log(self, _args, _state, _control, logs=None, **__):
            if logs and "reward" in logs:
                rewards.append(logs["reward"])

    trainer.add_callback(StepTimer())
    trainer.train()
    for step, reward in zip(steps, rewards):
        step["reward"] = reward
    return {"steps": steps[1:], "peak_rss_mb": _peak_rss_mb(), "peak_device_mb": _peak_device_mb()}


# --------------------------------------------------------------------------------------------
# driver


def _summary(runs: list[dict]) -> dict:
    steps = [s for run in runs for s in run["steps"]]
    walls = [s["wall"] for s in steps]
    total = sum(walls)
    return {
        "steps_timed": len(steps),
        "s_per_step": statistics.median(walls),
        "tokens_per_s": sum(s["tokens"] for s in steps) / total,
        "generation_tokens_per_s": sum(s["tokens"] for s in steps) / sum(s["generation"] for s in steps),
        "tokens_per_step": sum(s["tokens"] for s in steps) / len(steps),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "peak_device_mb": max((run["peak_device_mb"] or 0.0) for run in runs) or None,
        "split": {k: sum(s[k] for s in steps) / total for k in STAGES},
        "mean_reward": statistics.mean(s.get("reward", float("nan")) for s in steps),
    }


def _table(result: dict) -> str:
    v, t = result["verifrl"], result["trl"]
    lines = ["| | verifrl | TRL GRPOTrainer | TRL / verifrl |", "|---|---|---|---|",
             f"| median s/step | {v['s_per_step']:.2f} | {t['s_per_step']:.2f} | {result['speedup_per_step']:.2f}x |",
             f"| generated tokens/s (whole step) | {v['tokens_per_s']:.0f} | {t['tokens_per_s']:.0f} | "
             f"{v['tokens_per_s'] / t['tokens_per_s']:.2f}x |",
             f"| tokens/s in generation | {v['generation_tokens_per_s']:.0f} | {t['generation_tokens_per_s']:.0f} | |",
             f"| completion tokens/step | {v['tokens_per_step']:.0f} | {t['tokens_per_step']:.0f} | |",
             f"| peak RSS (MB) | {v['peak_rss_mb']:.0f} | {t['peak_rss_mb']:.0f} | "
             f"verifrl/TRL {v['peak_rss_mb'] / t['peak_rss_mb']:.2f} |"]
    if v["peak_device_mb"]:
        lines.append(f"| peak GPU memory (MB) | {v['peak_device_mb']:.0f} | {t['peak_device_mb']:.0f} | "
                     f"verifrl/TRL {result['memory_ratio']:.2f} |")
    for k, label in zip(STAGES, ("generation", "reference + old log-probs", "verification",
                                 "update (loss, backward, optimiser, rest)")):
        lines.append(f"| share: {label} | {v['split'][k]:.1%} | {t['split'][k]:.1%} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per subprocess (plus one warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (one subprocess each per round)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--beta", type=float, default=0.0, help="KL coefficient (>0 loads a reference model; 0 as in recipes/tiny-arith.yaml and TRL)")
    parser.add_argument("--sft-steps", type=int, default=100, help="warm-start steps of the embedded model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per framework (1: see README, 2 threads on a loaded 2-core machine is 5-10x slower for both)")
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", help="use this Hugging Face model directory instead of the embedded model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: bfloat16, GPU peak memory")
    parser.add_argument("--random-model", choices=["qwen2.5-0.5b"], help="random weights of this shape (GPU bench)")
    parser.add_argument("--reward", choices=["math", "odd_length"], help="default: math, odd_length with --random-model")
    parser.add_argument("--gradient-checkpointing", choices=["off", "on"], default="off",
                        help="set the same in both (TRL's own default is on, verifrl's off)")
    parser.add_argument("--only", choices=["verifrl", "trl"], help="run one framework only")
    parser.add_argument("--worker", choices=["verifrl", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default="/tmp/verifrl-vs-trl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.reward = args.reward or ("odd_length" if args.random_model else "math")

    if args.worker:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        result = run_verifrl(args) if args.worker == "verifrl" else run_trl(args)
        print("RESULT " + json.dumps(result))
        return

    from verifrl.embedded import EmbeddedModelConfig, embedded_policy

    start = time.time()
    import torch

    torch.set_num_threads(args.threads)  # also for building the embedded model on first use
    model = args.model_dir or embedded_policy(EmbeddedModelConfig(sft_steps=args.sft_steps),
                                              log=lambda m: print(m, file=sys.stderr))
    if args.random_model:
        model = random_model_dir(args, Path(model))
    frameworks = [args.only] if args.only else ["verifrl", "trl"]
    runs: dict[str, list[dict]] = {f: [] for f in frameworks}
    passthrough = ["--steps", args.steps, "--prompts", args.prompts, "--group", args.group, "--max-new-tokens",
                   args.max_new_tokens, "--beta", args.beta, "--threads", args.threads, "--num-train",
                   args.num_train, "--seed", args.seed, "--model", model, "--scratch", args.scratch,
                   "--device", args.device, "--reward", args.reward,
                   "--gradient-checkpointing", args.gradient_checkpointing]
    for r in range(args.rounds):
        for framework in (frameworks if r % 2 == 0 else frameworks[::-1]):
            cmd = [sys.executable, __file__, "--worker", framework, *map(str, passthrough)]
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                      filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
            line = next((l for l in proc.stdout.splitlines()[::-1] if l.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                sys.exit(f"{framework} worker failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
            run = json.loads(line[len("RESULT "):])
            runs[framework].append(run)
            print(f"round {r + 1} {framework}: {[round(s['wall'], 2) for s in run['steps']]} s/step, "
                  f"peak RSS {run['peak_rss_mb']:.0f} MB, subprocess {time.time() - t0:.0f}s", file=sys.stderr)
    summaries = {f: _summary(runs[f]) for f in frameworks}
    result = {**summaries}
    if len(frameworks) == 2:
        result["speedup_per_step"] = summaries["trl"]["s_per_step"] / summaries["verifrl"]["s_per_step"]
        # on a GPU the memory that limits a job is the device's; on a CPU it is resident memory
        memory = "peak_device_mb" if args.device == "cuda" else "peak_rss_mb"
        result["memory_ratio"] = summaries["verifrl"][memory] / summaries["trl"][memory]
        print(_table(result), file=sys.stderr)
    import torch
    import transformers
    try:
        import trl
        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    result["settings"] = {
        "prompts_per_step": args.prompts, "group_size": args.group, "completions_per_step": args.prompts * args.group,
        "max_new_tokens": args.max_new_tokens, "beta": args.beta, "loss": "dapo", "epsilon": [0.2, 0.28],
        "temperature": 1.0, "lr": 1e-4, "timed_steps_per_run": args.steps, "rounds": args.rounds,
        "threads": args.threads, "model_dir": str(model), "device": args.device,
        "model": args.model_dir or (f"random {args.random_model}" if args.random_model
                                    else f"embedded tiny Qwen2 (sft_steps={args.sft_steps})"),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None, "reward": args.reward,
        "gradient_checkpointing": args.gradient_checkpointing,
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl_version,
        "cpu_count": os.cpu_count(), "bench_seconds": round(time.time() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
