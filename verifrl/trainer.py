"""The GRPO loop. It only orchestrates; every stage is a function in its own module:

    prompts (prompts.py) -> rollouts, verifier results, rewards (groups.py: rollout.py, scoring.py,
    rewards.py) -> [group selection (dynamic_sampling.py)] -> advantages (advantages.py; PPO's
    critic and GAE: critic.py) -> loss -> update (losses.py, update.py) -> logging (tracking.py),
    with checkpoints (checkpoint.py) and evaluation (evaluation.py).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import torch

from verifrl import distributed
from verifrl.advantages import CRITIC_ESTIMATORS, token_advantages
from verifrl.checkpoint import (latest_checkpoint, load_checkpoint, load_trainer_tensors, save_checkpoint,
                                save_final_model)
from verifrl.config import Config
from verifrl.critic import Critic, build_critic, critic_step, ppo_advantages
from verifrl.dynamic_sampling import select_step_groups
from verifrl.evaluation import eval_settings, evaluate
from verifrl.groups import build_tools, sample_groups, training_sampling
from verifrl.memory import check_sampling_memory
from verifrl.models import load_policy, reference_model, seed_everything
from verifrl.offpolicy import forward_gap_metrics, old_logprobs_from_forward, resolve_off_policy
from verifrl.prompts import prepare_task, prompt_for
from verifrl.rewards import kl_penalized_sequence_rewards
from verifrl.rundir import claim_run_dir, truncate_step_logs
from verifrl.sampler_process import OffPolicySampler, SampledBatch, reserve_sampler_cores, rows_sampled_ahead
from verifrl.sampler_ranks import RankSampler, serve_sampler_rank
from verifrl.scoring import build_verifiers, rate_warnings, step_metrics
from verifrl.segments import drop_observation_steps, step_ends_for, until_first_error
from verifrl.tool_session import ToolSet, tool_metrics
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


class NonFiniteTraining(RuntimeError):
    """Too many consecutive updates had a non-finite gradient (trainer.max_nonfinite_updates)."""


class StopTraining(Exception):
    """Raised by an ``on_step`` callback to end the run after this step (as returning False does)."""


def rl_step(cfg: Config, policy, reference, tokenizer, optimizer, verifiers, rows: list[dict],
            next_rows=None, tools: ToolSet | None = None, sampled: SampledBatch | None = None,
            critic: Critic | None = None) -> tuple[dict, list[dict]]:
    """One RL step on a batch of prompt rows; returns its metrics and sample rows for the table.

    Stages: sample and score groups -> [dynamic sampling] -> [pi_old recomputed, rollout correction]
    -> reference log-probs -> advantages -> update -> metrics. ``next_rows(n)`` draws more prompts
    for ``rollout.dynamic_sampling: refill``; ``tools`` are the tools the policy may call
    (``rollout.tools``); ``sampled``: the rows' completions, sampled ahead by the off-policy sampler
    process. With a ``critic`` (advantage.estimator gae) the advantages come from its values, and
    it is updated after the policy (only it during ``critic.warmup_steps``).
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
                               overlap=overlap, tools=tools, timer=timer, sampled=presampled)
        generated_tokens += int(groups.batch.model_lengths.sum())
        return groups.batch, groups.scored, groups.rewards

    def update(train_batch: TrainBatch) -> dict[str, float]:
        metrics: dict[str, float] = {}
        with timer("update"):
            for _ in range(cfg.trainer.num_iterations if critic is None or not critic.warming_up else 0):
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

    # 3. pi_old: the sampler's log-probs, or the trainer's own (the sampler's engine, precision or
    # weights may differ), read from the update's first forward with the rollout correction weights
    loss_mask = batch.model_mask.clone()  # the policy's own tokens: never a tool observation
    if cfg.reward.mask_truncated:
        loss_mask[batch.truncated] = 0
    old_logprobs, token_weights, old_from_forward = batch.sampler_logprobs, None, None
    if cfg.trainer.recompute_old_logprobs:
        old_logprobs, token_weights, old_from_forward = old_logprobs_from_forward(cfg, batch)

    # 4. reference log-probs (loss.beta > 0), and the KL-in-reward penalty
    ref_logprobs = None
    if reference is not None:
        with timer("reference"):
            ref_logprobs = batched_logprobs(reference, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                            batch.completion_mask, cfg.rollout.temperature, cfg.trainer.micro_batch_size)
        if cfg.loss.kl_placement == "reward" and critic is None:  # gae: per token, in its token rewards
            # PPO/InstructGPT placement: r - beta * sum_t k1, before the group normalisation
            rewards = kl_penalized_sequence_rewards(rewards, batch.sampler_logprobs, ref_logprobs,
                                                    batch.model_mask, cfg.loss.beta)

    # 5. advantages (with a critic: its values, token rewards, GAE)
    with timer("advantages"):
        step_scores, step_ends = _step_rewards(cfg, tokenizer, batch, scored)  # [N][K_i] in process modes
        if critic is None:
            advantages = _advantages(cfg, batch, rewards.view(P, G), step_scores, step_ends)  # (N, Lc)
        else:
            values, advantages, returns = ppo_advantages(critic, cfg, batch, rewards, loss_mask, ref_logprobs,
                                                         step_scores, step_ends)  # (N, Lc) each

    # 6. update (the policy, then the critic)
    update_metrics = update(TrainBatch(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, loss_mask,
                                       old_logprobs, advantages, ref_logprobs,
                                       context_mask=None if batch.tool_mask is None else batch.completion_mask,
                                       token_weights=token_weights, old_from_forward=old_from_forward))
    gap_metrics = forward_gap_metrics(old_logprobs, token_weights, batch.sampler_logprobs, loss_mask) if old_from_forward else {}
    if critic is not None:
        with timer("critic"):
            update_metrics.update(critic_step(critic, batch, loss_mask, values, returns, cfg.trainer.num_iterations))

    # 7. metrics and the sample table
    # off-policy: generation ran in the sampler process, overlapped with the previous update
    generation_seconds = timer.seconds["generation"] if sampled is None else sampled.seconds
    metrics = {
        **_rollout_metrics(batch, scored, rewards.view(P, G), generated_tokens, generation_seconds, timer),
        **scored.metrics,
        **update_metrics,
        **sampling_metrics,
        **tool_metrics(batch),
        **gap_metrics,
    }
    if batch.tool_mask is not None:
        metrics["time/tools"] = batch.tool_seconds  # inside time/generation
    if scored.step_scores is not None:
        metrics.update(step_metrics(scored.step_scores))
    samples = [
        {"prompt": prompt_for(cfg, rows[i // G], tokenizer), "completion": batch.texts[i], "reward": float(rewards[i]),
         "answer": str(rows[i // G].get("answer", "")),
         **({} if batch.tool_calls is None else {"tool_calls": int(batch.tool_calls[i])})}
        for i in range(0, len(batch.texts), max(1, G))
    ][:8]
    return metrics, samples


def _step_rewards(cfg: Config, tokenizer, batch, scored) -> tuple[list | None, list | None]:
    """The verifier's step scores and each step's last token, per completion ([N][K_i] each), in
    the process modes; ``(None, None)`` in outcome mode. Steps never end in tool observation text."""
    if cfg.advantage.mode == "outcome":
        return None, None
    if scored.step_scores is None:
        raise ValueError(f"advantage.mode={cfg.advantage.mode!r} needs a verifier that returns step_scores "
                         "(e.g. math_steps)")
    ends, scores = step_ends_for(batch, tokenizer, scored.step_spans), scored.step_scores
    if batch.tool_mask is not None:
        ends, scores = drop_observation_steps(ends, scores, batch.tool_mask)
    if cfg.advantage.step_credit == "first_error":
        ends, scores = until_first_error(ends, scores)
    return scores, ends


def _advantages(cfg: Config, batch, group_rewards: torch.Tensor, step_scores, step_ends) -> torch.Tensor:
    """(P, G) rewards (and the step scores in process modes) -> (N, Lc) token advantages."""
    P, G = group_rewards.shape
    step_rewards = group_ends = None
    if step_scores is not None:
        group_ends = [step_ends[p * G:(p + 1) * G] for p in range(P)]
        step_rewards = [step_scores[p * G:(p + 1) * G] for p in range(P)]
    return token_advantages(
        group_rewards, batch.lengths.view(P, G), batch.completion_ids.shape[1], estimator=cfg.advantage.estimator,
        mode=cfg.advantage.mode, scale=cfg.advantage.scale_rewards, eps=cfg.advantage.eps,
        step_rewards=step_rewards, step_ends=group_ends, process_weight=cfg.advantage.process_weight,
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
          log=print, overwrite: bool = False, on_step=None) -> dict:
    """Run GRPO as configured; returns the summary (also written to ``summary.json``).

    The run directory is locked for the run's length (rank 0); one that holds another run is
    refused unless ``resume`` continues it or ``overwrite`` deletes it (:mod:`verifrl.rundir`).
    ``on_step(step, metrics)`` is called after each logged step; returning False or raising
    :class:`StopTraining` ends the run there as if ``trainer.steps`` had been reached: checkpoint,
    final evaluation and summary (``stopped_at``), so ``--resume`` can continue it. Under torchrun
    it must decide the same on every rank (the metrics it gets are the same there).
    """
    wall_start = time.time()
    distributed.init()  # torchrun: join the process group (no-op in one process)
    distributed.split_sampler_ranks(cfg.trainer.sampler_ranks)  # off-policy: the last ranks only sample
    if distributed.is_sampler_rank():
        return serve_sampler_rank(cfg, log)
    run_dir = Path(run_dir) if run_dir else make_run_dir(cfg, recipe_name)
    with claim_run_dir(run_dir, resume=resume, overwrite=overwrite, log=log) if distributed.is_main() else nullcontext():
        return _train(cfg, recipe_name, resume, run_dir, log, wall_start, on_step)


def _train(cfg: Config, recipe_name: str, resume: bool, run_dir: Path, log, wall_start: float,
           on_step=None) -> dict:
    cfg.model.device = distributed.device_for_rank(cfg.model.device)
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    seed_everything(cfg.trainer.seed)
    if resume and latest_checkpoint(run_dir) is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {run_dir}/checkpoints")
    # fail on a bad verifier name before loading a model
    verifiers = build_verifiers(cfg.reward.verifiers, timeout=cfg.reward.verifier_timeout,
                                max_abs_score=cfg.reward.max_abs_score)
    tools = build_tools(cfg)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 first: it builds/downloads the model once, the others then load it
    policy, tokenizer = load_policy(cfg.model, log=log)
    if distributed.is_main():
        distributed.barrier()
    distributed.broadcast_parameters(policy)  # every rank starts from rank 0's weights
    resolve_off_policy(cfg, next(policy.parameters()).dtype)  # auto correction / recomputation -> on or off
    full_threads = reserve_sampler_cores(cfg, next(policy.parameters()).device)  # off_policy_steps on a CPU
    task = prepare_task(cfg, tokenizer)
    for note in task.notes:
        log(note)
    for split, count in task.skipped.items():
        if count:
            log(f"data: skipped {count} {split} rows without a question or answer")
    for split, count in task.too_long.items():
        if count:
            log(f"data: skipped {count} {split} rows longer than data.max_prompt_tokens={cfg.data.max_prompt_tokens}"
                " tokens")
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
    critic = build_critic(cfg, log=log) if cfg.advantage.estimator in CRITIC_ESTIMATORS else None  # PPO's value model
    # before the first batch is allocated, after every model's weights (the critic's too) are
    check_sampling_memory(cfg, policy, task.longest_prompt_tokens)
    config_dict = cfg.to_dict()

    start_step, trainer_state, pending_tensors = 0, {}, {}
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        trainer_state = load_checkpoint(checkpoint, policy, optimizer, scheduler, critic=critic)
        pending_tensors = load_trainer_tensors(checkpoint)  # the off-policy batches in flight, if any
        task.sampler.load_state_dict(trainer_state["sampler"])
        start_step = trainer_state["step"]
        log(f"resumed from {checkpoint} at step {start_step}")
        if distributed.is_main():  # steps logged after the checkpoint are run again: drop their records
            for name, dropped in truncate_step_logs(run_dir, start_step).items():
                if dropped:
                    log(f"{name}: dropped {dropped} lines logged after step {start_step}")

    # only rank 0 writes the run directory, logs and prints; the other ranks write nothing at all
    main_rank = distributed.is_main()
    if not main_rank:
        log = lambda *_, **__: None  # noqa: E731
    tracker = Tracker(run_dir, config_dict, total_steps=cfg.trainer.steps, wandb_mode=cfg.logging.wandb,
                      project=cfg.logging.wandb_project, run_name=cfg.logging.run_name or run_dir.name,
                      progress=cfg.logging.progress, resume=resume, report_to=cfg.logging.report_to,
                      write=main_rank, log=log)
    if main_rank:
        (run_dir / "config.json").write_text(json.dumps(config_dict, indent=2, default=str))
    exit_code = 1
    eval_kwargs = {**eval_settings(cfg), "tools": tools}
    pipeline = None
    try:
        if cfg.trainer.off_policy_steps and start_step < cfg.trainer.steps:
            # started before the first evaluation, so the first batches are sampled while it runs
            sampler_class = RankSampler if cfg.trainer.sampler_ranks else OffPolicySampler
            pipeline = sampler_class(cfg, policy, tokenizer, lambda row: prompt_for(cfg, row, tokenizer),
                                     task.sampler.next_rows, start_version=start_step,
                                     pending=trainer_state.get("pipeline"), pending_tensors=pending_tensors, log=log)
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
                    "train_seconds": prior_seconds + time.time() - train_start}

        def save_step(step: int) -> None:
            # batches sampled ahead: kept (their tensors in the checkpoint) or re-sampled on resume
            in_flight, tensors = pipeline.state_dict(step) if pipeline else (None, None)
            save_checkpoint(run_dir, step, policy, optimizer, scheduler, {**state(step), "pipeline": in_flight},
                            config_dict, cfg.checkpoint.keep_last, tokenizer=tokenizer, tensors=tensors, critic=critic)

        def refill_rows(n: int) -> list[dict]:
            # every rank draws n prompts per rank from the shared stream and keeps its own share
            total = n * distributed.world_size()
            return distributed.shard_rows(task.sampler.next_rows(total), total)

        nonfinite_in_a_row = 0
        end_step = cfg.trainer.steps  # earlier when on_step stops the run
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
                                           next_rows=refill_rows, tools=tools, critic=critic)
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
            if not metrics.get("critic/warmup"):  # the policy's schedule starts when the policy does
                scheduler.step()
            if cfg.eval.every_steps and (step + 1) % cfg.eval.every_steps == 0 and step + 1 < cfg.trainer.steps:
                periodic = evaluate(policy, tokenizer, task.test_prompts, task.test_rows, verifiers, **eval_kwargs)
                metrics.update({f"eval/{k}": v for k, v in periodic.items()})
            tracker.log(step, metrics)
            for warning in rate_warnings(metrics, cfg.reward.warn_error_rate):
                log(f"warning: step {step}: {warning}")
            if cfg.logging.sample_table_every and step % cfg.logging.sample_table_every == 0:
                tracker.log_samples(step, samples)
            diverging = bool(cfg.trainer.max_nonfinite_updates) and \
                nonfinite_in_a_row >= cfg.trainer.max_nonfinite_updates
            if diverging or (cfg.checkpoint.every_steps and (step + 1) % cfg.checkpoint.every_steps == 0):
                # diverging: the skipped updates left the weights finite, so they are saved, not lost
                save_step(step + 1)
            if diverging:
                raise NonFiniteTraining(
                    f"{nonfinite_in_a_row} updates in a row had a NaN/inf gradient (last at step {step}); they were "
                    f"skipped, and the run stops here. The weights, still finite, are saved as checkpoint step-"
                    f"{step + 1} (continue with --resume, e.g. with a lower trainer.lr). Usual causes: a learning "
                    f"rate too high, float16 overflow, NaN log-probs (see metrics.jsonl)")
            if on_step is not None and not _continue_after(on_step, step, metrics):
                end_step = step + 1
                log(f"on_step stopped the run after step {end_step}/{cfg.trainer.steps}")
                break
        if end_step > start_step or not cfg.checkpoint.every_steps:
            save_step(end_step)  # stopped early: the batches in flight are in it
        if pipeline is not None:  # sampling is over: the cores go back to the trainer (final evaluation)
            pipeline.close()
            pipeline = None
            torch.set_num_threads(full_threads)
        eval_after = evaluate(policy, tokenizer, task.test_prompts, task.test_rows, verifiers, **eval_kwargs)
        tracker.log(end_step, {f"eval/{k}": v for k, v in eval_after.items()}, console=False)
        if cfg.checkpoint.save_final_model:
            save_final_model(policy, tokenizer, run_dir / "final_model", log=log)
        summary = {
            "recipe": recipe_name,
            "run_dir": str(run_dir),
            "steps": cfg.trainer.steps,
            "stopped_at": end_step if end_step < cfg.trainer.steps else None,
            "eval_before": eval_before,
            "eval_after": eval_after,
            "wall_seconds": time.time() - wall_start,
            "train_seconds": state(end_step)["train_seconds"],
            "wandb_mode": tracker.wandb_mode,
            "data": {"train_rows": len(task.sampler.dataset), "test_rows": len(task.test_rows),
                     "skipped_without_answer": dict(task.skipped), "skipped_too_long": dict(task.too_long),
                     "longest_prompt_tokens": task.longest_prompt_tokens},
            "config": config_dict,
        }
        if main_rank:
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        tracker.summary({"eval_before/accuracy": (eval_before or {}).get("accuracy"),
                         "eval_after/accuracy": eval_after["accuracy"]})
        log(before_after_table(eval_before, eval_after))
        log(f"run directory: {run_dir}  (summary.json, metrics.jsonl, wandb/)  wall {summary['wall_seconds']:.0f}s")
        exit_code = 0
        return summary
    except BaseException as err:  # SIGINT/SIGTERM (cli.Interrupted) carry 130/143; anything else fails with 1
        exit_code = getattr(err, "exit_code", 130 if isinstance(err, KeyboardInterrupt) else 1)
        raise
    finally:
        if pipeline is not None:  # an error, Ctrl-C or SIGTERM: stop the sampler process, leave no orphan
            pipeline.close()
        torch.set_num_threads(full_threads)  # the cores the sampler process had, back to this process
        tracker.close(exit_code)
        for named in verifiers:
            named.close()
        if tools is not None:
            tools.close()


def _continue_after(on_step, step: int, metrics: dict) -> bool:
    try:
        return on_step(step, dict(metrics)) is not False
    except StopTraining:
        return False


def before_after_table(before: dict | None, after: dict) -> str:
    """The closing table: held-out greedy accuracy and mean reward before and after RL."""
    rows = [("greedy accuracy", "accuracy", "{:.1%}"), ("mean reward", "mean_reward", "{:.3f}")]
    rows += [(k, k, "{:.1%}") for k in after if k.startswith("pass@")]
    if "tool_calls_per_completion" in after:
        rows += [("tool calls/completion", "tool_calls_per_completion", "{:.2f}"),
                 ("tool call rate", "tool_call_rate", "{:.1%}")]
    lines = [f"{'held-out (n=' + str(after['n']) + ')':<22}{'before RL':>12}{'after RL':>12}{'change':>10}"]
    for label, key, fmt in rows:
        b = before.get(key) if before else None
        a = after.get(key)
        change = "" if b is None or a is None else (f"{(a - b) * 100:+.1f} pt" if "%" in fmt else f"{a - b:+.3f}")
        lines.append(f"{label:<22}{fmt.format(b) if b is not None else '-':>12}{fmt.format(a):>12}{change:>10}")
    return "\n".join(lines)
