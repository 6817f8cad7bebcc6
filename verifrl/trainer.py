"""The GRPO loop. It only orchestrates; every stage is a function in its own module:

    prompts (prompts.py) -> rollouts, verifier results, rewards (groups.py: rollout.py, scoring.py,
    rewards.py) -> [group selection (dynamic_sampling.py)] -> advantages (advantages.py) -> loss ->
    update (losses.py, update.py) -> logging (tracking.py), with checkpoints (checkpoint.py) and
    evaluation (evaluation.py).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import torch

from verifrl import distributed
from verifrl.advantages import token_advantages
from verifrl.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final_model
from verifrl.config import Config
from verifrl.dynamic_sampling import select_step_groups
from verifrl.evaluation import eval_settings, evaluate
from verifrl.groups import sample_groups, training_sampling
from verifrl.models import load_policy, reference_model, seed_everything
from verifrl.offpolicy import recomputed_old_logprobs, resolve_off_policy
from verifrl.prompts import prepare_task, prompt_for
from verifrl.rewards import kl_penalized_sequence_rewards
from verifrl.sampler_process import OffPolicySampler, SampledBatch, rows_sampled_ahead, split_threads
from verifrl.scoring import build_verifiers, step_metrics
from verifrl.segments import step_end_tokens, token_char_offsets
from verifrl.tracking import Tracker
from verifrl.update import TrainBatch, batched_logprobs, update_policy


class StageTimer:
    """Wall time per named stage of a step (generation / verification / ...)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def make_run_dir(cfg: Config, recipe_name: str) -> Path:
    name = cfg.logging.run_name or f"{recipe_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.logging.output_dir) / name


def lr_lambda(cfg: Config):
    warmup, total, schedule = cfg.trainer.warmup_steps, max(1, cfg.trainer.steps), cfg.trainer.lr_schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if schedule == "linear":
            return 1.0 - progress
        return 1.0

    return factor


def step_ends_for(batch, tokenizer, step_spans) -> list[list[int]]:
    """Token index of each step's last character, per completion. [N][K_i]."""
    ends = []
    for i, spans in enumerate(step_spans):
        ids = batch.completion_ids[i, : int(batch.lengths[i])].tolist()
        offsets = token_char_offsets(tokenizer, ids)
        ends.append(step_end_tokens(spans, offsets) if spans else [])
    return ends


class NonFiniteTraining(RuntimeError):
    """Too many consecutive updates had a non-finite gradient (trainer.max_nonfinite_updates)."""


def rl_step(cfg: Config, policy, reference, tokenizer, optimizer, verifiers, rows: list[dict],
            next_rows=None, sampled: SampledBatch | None = None) -> tuple[dict, list[dict]]:
    """One GRPO step on a batch of prompt rows; returns its metrics and sample rows for the table.

    Stages: sample and score groups -> [dynamic sampling] -> reference log-probs -> advantages ->
    update -> metrics. ``next_rows(n)`` draws more prompts for ``rollout.dynamic_sampling: refill``.
    ``sampled``: the rows' completions, sampled ahead by the off-policy sampler process.
    """
    timer = StageTimer()
    G = cfg.rollout.group_size
    overlap = cfg.reward.overlap_verification
    if overlap is None:
        overlap = next(policy.parameters()).device.type == "cuda"
    generated_tokens = 0  # over every generation round of the step (refill rounds too)

    def sample(rows: list[dict], presampled=None):
        nonlocal generated_tokens
        prompts = [prompt_for(cfg, row, tokenizer) for row in rows]
        groups = sample_groups(policy, tokenizer, prompts, rows, verifiers, **training_sampling(cfg),
                               overlap=overlap, timer=timer, sampled=presampled)
        generated_tokens += int(groups.batch.lengths.sum())
        return groups.batch, groups.scored, groups.rewards

    def update(train_batch: TrainBatch) -> dict[str, float]:
        metrics: dict[str, float] = {}
        with timer("update"):
            for _ in range(cfg.trainer.num_iterations):
                metrics = update_policy(
                    policy, optimizer, train_batch, cfg.loss, temperature=cfg.rollout.temperature,
                    micro_batch_size=cfg.trainer.micro_batch_size, max_grad_norm=cfg.trainer.max_grad_norm,
                    max_completion_length=cfg.rollout.max_new_tokens,
                )
        return metrics

    # 1. prompts -> G completions each -> verifier results -> rewards
    batch, scored, rewards = sample(rows, None if sampled is None else sampled.batch)

    # 2. dynamic sampling: keep the informative groups (refill: sample more)
    sampling_metrics: dict[str, float] = {}
    if cfg.rollout.dynamic_sampling != "off":
        kept = select_step_groups(rows, (batch, scored, rewards), mode=cfg.rollout.dynamic_sampling,
                                  num_prompts=cfg.rollout.num_prompts, max_refill_rounds=cfg.rollout.max_refill_rounds,
                                  sample=sample, next_rows=next_rows, pad_id=tokenizer.pad_token_id,
                                  idle_update=update)
        sampling_metrics = kept.metrics
        if kept.batch is None:  # every group had equal rewards: nothing to learn from this step
            return {**sampling_metrics, "update/skipped": 1.0, **scored.metrics, **kept.idle_update_metrics,
                    **{f"time/{k}": v for k, v in timer.seconds.items()}}, []
        rows, batch, scored, rewards = kept.rows, kept.batch, kept.scored, kept.rewards
    P = len(rows)

    # 3. pi_old recomputed by the trainer (the sampler's engine, precision or weights may differ),
    # the rollout correction weights and the sampler/trainer gap metrics
    loss_mask = batch.completion_mask.clone()
    if cfg.reward.mask_truncated:
        loss_mask[batch.truncated] = 0
    old_logprobs, token_weights, gap_metrics = batch.sampler_logprobs, None, {}
    if cfg.trainer.recompute_old_logprobs:
        with timer("recompute"):
            old_logprobs, token_weights, gap_metrics = recomputed_old_logprobs(cfg, policy, batch, loss_mask)

    # 4. reference log-probs (loss.beta > 0), and the KL-in-reward penalty
    ref_logprobs = None
    if reference is not None:
        with timer("reference"):
            ref_logprobs = batched_logprobs(reference, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                            batch.completion_mask, cfg.rollout.temperature, cfg.trainer.micro_batch_size)
        if cfg.loss.kl_placement == "reward":
            # PPO/InstructGPT placement: r - beta * sum_t k1, before the group normalisation
            rewards = kl_penalized_sequence_rewards(rewards, batch.sampler_logprobs, ref_logprobs,
                                                    batch.completion_mask, cfg.loss.beta)

    # 5. advantages
    with timer("advantages"):
        advantages = _advantages(cfg, tokenizer, batch, scored, rewards.view(P, G))  # (N, Lc)

    # 6. update
    update_metrics = update(TrainBatch(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, loss_mask,
                                       old_logprobs, advantages, ref_logprobs, token_weights))

    # 7. metrics and the sample table
    # off-policy: generation ran in the sampler process, overlapped with the previous update
    generation_seconds = timer.seconds["generation"] if sampled is None else sampled.seconds
    metrics = {
        **_rollout_metrics(batch, scored, rewards.view(P, G), generated_tokens, generation_seconds, timer),
        **scored.metrics,
        **update_metrics,
        **sampling_metrics,
        **gap_metrics,
    }
    if scored.step_scores is not None:
        metrics.update(step_metrics(scored.step_scores))
    samples = [
        {"prompt": prompt_for(cfg, rows[i // G], tokenizer), "completion": batch.texts[i], "reward": float(rewards[i]),
         "answer": str(rows[i // G].get("answer", ""))}
        for i in range(0, len(batch.texts), max(1, G))
    ][:8]
    return metrics, samples


def _advantages(cfg: Config, tokenizer, batch, scored, group_rewards: torch.Tensor) -> torch.Tensor:
    """(P, G) rewards (and the verifier's step scores in process modes) -> (N, Lc) token advantages."""
    P, G = group_rewards.shape
    step_ends = step_rewards = None
    if cfg.advantage.mode != "outcome":
        if scored.step_scores is None:
            raise ValueError(f"advantage.mode={cfg.advantage.mode!r} needs a verifier that returns step_scores "
                             "(e.g. math_steps)")
        flat_ends = step_ends_for(batch, tokenizer, scored.step_spans)
        step_ends = [flat_ends[p * G:(p + 1) * G] for p in range(P)]
        step_rewards = [scored.step_scores[p * G:(p + 1) * G] for p in range(P)]
    return token_advantages(
        group_rewards, batch.lengths.view(P, G), batch.completion_ids.shape[1], estimator=cfg.advantage.estimator,
        mode=cfg.advantage.mode, scale=cfg.advantage.scale_rewards, eps=cfg.advantage.eps,
        step_rewards=step_rewards, step_ends=step_ends, process_weight=cfg.advantage.process_weight,
    )


def _rollout_metrics(batch, scored, group_rewards: torch.Tensor, generated_tokens: int, generation_seconds: float,
                     timer: StageTimer) -> dict:
    rewards = group_rewards.reshape(-1)
    primary = scored.scores[:, 0]
    return {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "reward/accuracy": float((primary >= 1.0 - 1e-9).float().mean()),
        "reward/frac_zero_std_groups": float((group_rewards.std(1, unbiased=False) < 1e-8).float().mean()),
        "completion/mean_length": float(batch.lengths.float().mean()),
        "completion/max_length": int(batch.lengths.max()),
        "completion/min_length": int(batch.lengths.min()),
        "completion/truncated_rate": float(batch.truncated.float().mean()),
        "completion/generated_tokens": generated_tokens,
        "tokens_per_second": generated_tokens / max(1e-9, generation_seconds),
        "update/skipped": 0.0,  # 1.0 when dynamic sampling kept no group; averaged over ranks under torchrun
        "time/step": sum(timer.seconds.values()),
        **{f"time/{k}": v for k, v in timer.seconds.items()},
    }


def train(cfg: Config, recipe_name: str = "run", resume: bool = False, run_dir: Path | None = None,
          log=print) -> dict:
    """Run GRPO as configured; returns the summary (also written to ``summary.json``)."""
    wall_start = time.time()
    distributed.init()  # torchrun: join the process group (no-op in one process)
    cfg.model.device = distributed.device_for_rank(cfg.model.device)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    seed_everything(cfg.trainer.seed)
    run_dir = Path(run_dir) if run_dir else make_run_dir(cfg, recipe_name)
    if resume and latest_checkpoint(run_dir) is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {run_dir}/checkpoints")
    verifiers = build_verifiers(cfg.reward.verifiers)  # fail on a bad verifier name before loading a model
    if not distributed.is_main():
        distributed.barrier()  # rank 0 first: it builds/downloads the model once, the others then load it
    policy, tokenizer = load_policy(cfg.model, log=log)
    if distributed.is_main():
        distributed.barrier()
    distributed.broadcast_parameters(policy)  # every rank starts from rank 0's weights
    resolve_off_policy(cfg, next(policy.parameters()).dtype)  # auto correction / recomputation -> on or off
    full_threads = torch.get_num_threads()
    if cfg.trainer.off_policy_steps and next(policy.parameters()).device.type == "cpu":
        # the sampler process takes its share of the cores; the trainer the rest
        torch.set_num_threads(split_threads(cfg.trainer.sampler_threads, cfg.trainer.threads)[1])
    task = prepare_task(cfg, tokenizer)
    for split, count in task.skipped.items():
        if count:
            log(f"data: skipped {count} {split} rows without a question or answer")
    reference = reference_model(policy) if cfg.loss.beta > 0 else None  # LoRA: the adapter-disabled base
    if reference is not None and resume:  # the reference is the initial policy, saved alongside
        reference.load_state_dict(torch.load(run_dir / "checkpoints" / "reference.pt", weights_only=True))
    elif reference is not None and distributed.is_main():
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save(reference.state_dict(), run_dir / "checkpoints" / "reference.pt")
    # trainer.parallel=fsdp under torchrun: shard both (before the optimizer sees the parameters)
    policy, reference = distributed.prepare_models(policy, reference, cfg.trainer.parallel)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.trainer.lr, betas=cfg.trainer.adam_betas,
                                  weight_decay=cfg.trainer.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    config_dict = cfg.to_dict()

    start_step, trainer_state = 0, {}
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        trainer_state = load_checkpoint(checkpoint, policy, optimizer, scheduler)
        task.sampler.load_state_dict(trainer_state["sampler"])
        start_step = trainer_state["step"]
        log(f"resumed from {checkpoint} at step {start_step}")

    if not distributed.is_main():  # only rank 0 writes the run directory and wandb; the rest write scratch
        run_dir, log = distributed.scratch_run_dir(), (lambda *_, **__: None)
    tracker = Tracker(run_dir, config_dict, total_steps=cfg.trainer.steps,
                      wandb_mode=cfg.logging.wandb if distributed.is_main() else "disabled",
                      project=cfg.logging.wandb_project, run_name=cfg.logging.run_name or run_dir.name,
                      progress=cfg.logging.progress and distributed.is_main(), resume=resume)
    (run_dir / "config.json").write_text(json.dumps(config_dict, indent=2, default=str))
    eval_kwargs = eval_settings(cfg)
    pipeline = None
    try:
        if cfg.trainer.off_policy_steps and start_step < cfg.trainer.steps:
            # started before the first evaluation, so the first batches are sampled while it runs
            pipeline = OffPolicySampler(cfg, policy, tokenizer, lambda row: prompt_for(cfg, row, tokenizer),
                                        task.sampler.next_rows, start_version=start_step,
                                        pending=trainer_state.get("pipeline"), log=log)
        eval_before = trainer_state.get("eval_before")
        if eval_before is None and cfg.eval.before:
            eval_before = evaluate(policy, tokenizer, task.test_prompts, task.test_rows, verifiers, **eval_kwargs)
            log(f"before RL: greedy accuracy {eval_before['accuracy']:.3f}  mean reward {eval_before['mean_reward']:.3f}"
                f"  (n={eval_before['n']})")
            tracker.log(-1, {f"eval/{k}": v for k, v in eval_before.items()}, console=False)
        prior_seconds = trainer_state.get("train_seconds", 0.0)
        train_start = time.time()

        def state(step: int) -> dict:
            return {"sampler": task.sampler.state_dict(), "eval_before": eval_before,
                    "train_seconds": prior_seconds + time.time() - train_start,
                    # batches sampled ahead: kept (or re-sampled on resume), never lost or repeated
                    "pipeline": pipeline.state_dict(step) if pipeline else None}

        def refill_rows(n: int) -> list[dict]:
            # every rank draws n prompts per rank from the shared stream and keeps its own share
            total = n * distributed.world_size()
            return distributed.shard_rows(task.sampler.next_rows(total), total)

        nonfinite_in_a_row = 0
        # resumed without the pipeline from a checkpoint written with it: its batches sampled ahead go
        ahead_dropped = 0 if pipeline else rows_sampled_ahead(trainer_state.get("pipeline"), cfg.rollout.group_size)
        if ahead_dropped:
            log(f"off-policy: dropped the {ahead_dropped} rows the checkpoint had sampled ahead "
                f"(trainer.off_policy_steps=0 now)")
        for step in range(start_step, cfg.trainer.steps):
            if pipeline is None:
                rows = distributed.shard_rows(task.sampler.next_rows(cfg.rollout.num_prompts),
                                              cfg.rollout.num_prompts)
                metrics, samples = rl_step(cfg, policy, reference, tokenizer, optimizer, verifiers, rows,
                                           next_rows=refill_rows)
            else:  # batch `step` was sampled while earlier updates ran; groups too stale are dropped
                sampled, pipeline_metrics = pipeline.next_batch(step)
                metrics, samples = ({"update/skipped": 1.0}, []) if sampled is None else rl_step(
                    cfg, policy, reference, tokenizer, optimizer, verifiers, sampled.rows, sampled=sampled)
                pipeline.after_update(policy, step)  # new weights to the sampler, batch step+1+N requested
                metrics.update(pipeline_metrics)
                metrics["time/step"] = metrics.get("time/step", 0.0) + pipeline_metrics["time/sampler_wait"]
            if ahead_dropped:
                metrics["offpolicy/dropped_rows"], ahead_dropped = float(ahead_dropped), 0
            metrics = distributed.mean_metrics(metrics)  # averaged over data-parallel ranks
            nonfinite_in_a_row = nonfinite_in_a_row + 1 if metrics.get("update/nonfinite_skipped") else 0
            metrics["lr"] = scheduler.get_last_lr()[0]
            scheduler.step()
            if cfg.eval.every_steps and (step + 1) % cfg.eval.every_steps == 0 and step + 1 < cfg.trainer.steps:
                periodic = evaluate(policy, tokenizer, task.test_prompts, task.test_rows, verifiers, **eval_kwargs)
                metrics.update({f"eval/{k}": v for k, v in periodic.items()})
            tracker.log(step, metrics)
            if cfg.logging.sample_table_every and step % cfg.logging.sample_table_every == 0:
                tracker.log_samples(step, samples)
            diverging = bool(cfg.trainer.max_nonfinite_updates) and \
                nonfinite_in_a_row >= cfg.trainer.max_nonfinite_updates
            if diverging or (cfg.checkpoint.every_steps and (step + 1) % cfg.checkpoint.every_steps == 0):
                # diverging: the skipped updates left the weights finite, so they are saved, not lost
                save_checkpoint(run_dir, step + 1, policy, optimizer, scheduler, state(step + 1), config_dict,
                                cfg.checkpoint.keep_last)
            if diverging:
                raise NonFiniteTraining(
                    f"{nonfinite_in_a_row} updates in a row had a NaN/inf gradient (last at step {step}); they were "
                    f"skipped, and the run stops here. The weights, still finite, are saved as checkpoint step-"
                    f"{step + 1} (continue with --resume, e.g. with a lower trainer.lr). Usual causes: a learning "
                    f"rate too high, float16 overflow, NaN log-probs (see metrics.jsonl)")
        if pipeline is not None:  # every batch is consumed: the cores go back to the trainer
            pipeline.close()
            pipeline = None
            torch.set_num_threads(cfg.trainer.threads or full_threads)
        if cfg.trainer.steps > start_step or not cfg.checkpoint.every_steps:
            save_checkpoint(run_dir, cfg.trainer.steps, policy, optimizer, scheduler, state(cfg.trainer.steps),
                            config_dict, cfg.checkpoint.keep_last)
        eval_after = evaluate(policy, tokenizer, task.test_prompts, task.test_rows, verifiers, **eval_kwargs)
        tracker.log(cfg.trainer.steps, {f"eval/{k}": v for k, v in eval_after.items()}, console=False)
        if cfg.checkpoint.save_final_model:
            save_final_model(policy, tokenizer, run_dir / "final_model")
        summary = {
            "recipe": recipe_name,
            "run_dir": str(run_dir),
            "steps": cfg.trainer.steps,
            "eval_before": eval_before,
            "eval_after": eval_after,
            "wall_seconds": time.time() - wall_start,
            "train_seconds": state(cfg.trainer.steps)["train_seconds"],
            "wandb_mode": tracker.wandb_mode,
            "config": config_dict,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        tracker.summary({"eval_before/accuracy": (eval_before or {}).get("accuracy"),
                         "eval_after/accuracy": eval_after["accuracy"]})
        log(before_after_table(eval_before, eval_after))
        log(f"run directory: {run_dir}  (summary.json, metrics.jsonl, wandb/)  wall {summary['wall_seconds']:.0f}s")
        return summary
    finally:
        if pipeline is not None:  # an error or Ctrl-C: stop the sampler process, leave no orphan
            pipeline.close()
        tracker.close()
        for named in verifiers:
            named.close()
        if not distributed.is_main():
            shutil.rmtree(run_dir, ignore_errors=True)


def before_after_table(before: dict | None, after: dict) -> str:
    """The closing table: held-out greedy accuracy and mean reward before and after RL."""
    rows = [("greedy accuracy", "accuracy", "{:.1%}"), ("mean reward", "mean_reward", "{:.3f}")]
    rows += [(k, k, "{:.1%}") for k in after if k.startswith("pass@")]
    lines = [f"{'held-out (n=' + str(after['n']) + ')':<22}{'before RL':>12}{'after RL':>12}{'change':>10}"]
    for label, key, fmt in rows:
        b = before.get(key) if before else None
        a = after.get(key)
        change = "" if b is None or a is None else (f"{(a - b) * 100:+.1f} pt" if "%" in fmt else f"{a - b:+.3f}")
        lines.append(f"{label:<22}{fmt.format(b) if b is not None else '-':>12}{fmt.format(a):>12}{change:>10}")
    return "\n".join(lines)
