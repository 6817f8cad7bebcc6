"""Value checks of a :class:`verifrl.config.Config` that its types alone cannot express.

Every option that names an algorithm or a component is checked against the registry that
implements it (the single source of the names), so an unknown name fails here with a one-line
:class:`~verifrl.config.ConfigError` and a "did you mean", before any model, dataset or first
evaluation loads (``--dry-run`` included). Impossible values (a group of one completion, a
non-finite verifier weight, negative sizes) fail here too.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import math
import os
from pathlib import Path
from typing import Iterable

from verifrl.config import Config, ConfigError, CriticConfig


def _check_name(option: str, value: str, names: Iterable[str], kind: str, also: str = "") -> None:
    names = list(names)
    if value in names:
        return
    close = difflib.get_close_matches(str(value), [str(n) for n in names], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{option}: unknown {kind} {value!r}{hint}; valid: {', '.join(sorted(names))}{also}")


def _check_registered_names(cfg: Config) -> None:
    # the registries live next to their implementations (torch modules), imported only here
    from verifrl import advantages, dynamic_sampling, losses, rollout

    for option, value, registry in (
        ("advantage.estimator", cfg.advantage.estimator, advantages.ADVANTAGE_ESTIMATORS),
        ("loss.type", cfg.loss.type, losses.LOSS_AGGREGATIONS),
        ("loss.objective", cfg.loss.objective, losses.POLICY_OBJECTIVES),
        ("loss.importance_level", cfg.loss.importance_level, losses.IMPORTANCE_LEVELS),
        ("loss.kl_estimator", cfg.loss.kl_estimator, losses.KL_ESTIMATORS),
        ("rollout.engine", cfg.rollout.engine, rollout.ENGINES),
    ):
        _check_name(option, value, registry, registry.kind)
    _check_name("advantage.mode", cfg.advantage.mode, advantages.MODES, "advantage mode")
    _check_name("advantage.scale_rewards", cfg.advantage.scale_rewards, advantages.SCALES, "reward scaling")
    _check_name("rollout.dynamic_sampling", cfg.rollout.dynamic_sampling, dynamic_sampling.MODES,
                "dynamic sampling mode")
    if cfg.advantage.estimator in advantages.SCALE_FREE_ESTIMATORS and cfg.advantage.scale_rewards != "group":
        raise ConfigError(f"advantage.scale_rewards={cfg.advantage.scale_rewards!r} only applies to estimator "
                          f"'grpo'; {cfg.advantage.estimator!r} has its own scaling")


def _check_verifiers(cfg: Config) -> None:
    from verifiers import registered_names

    for i, spec in enumerate(cfg.reward.verifiers):
        key = f"reward.verifiers[{i}]"
        if not math.isfinite(spec.weight):
            raise ConfigError(f"{key}.weight must be a finite number, got {spec.weight}")
        if ":" not in spec.name:
            _check_name(f"{key}.name", spec.name, registered_names(), "verifier",
                        also=" (or 'package.module:callable')")
            continue
        module_name, _, attr = spec.name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ConfigError(f"{key}.name: cannot import module {module_name!r}: {err}") from err
        if not hasattr(module, attr):
            raise ConfigError(f"{key}.name: module {module_name!r} has no {attr!r}")


def _check_vllm(cfg: Config) -> None:
    """rollout.engine=vllm: what the colocated engine cannot do, refused before anything loads."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("rollout.engine=vllm needs vLLM: pip install 'verifrl[vllm]' (GPU machines only)")
    if cfg.rollout.top_p < 1.0 or cfg.rollout.top_k:
        raise ConfigError("rollout.engine=vllm reports log-probs after top-k/top-p truncation, which the "
                          "policy's own log-probs are not: use rollout.top_p=1 and rollout.top_k=0")
    if cfg.model.lora.r > 0:
        raise ConfigError("rollout.engine=vllm does not load LoRA adapters: use rollout.engine=loop")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("rollout.engine=vllm is single-process for now: not supported under torchrun")
    if not 0 < cfg.rollout.vllm_gpu_memory_utilization < 1:
        raise ConfigError("rollout.vllm_gpu_memory_utilization must be in (0, 1)")


def _check_tools(cfg: Config) -> None:
    """rollout.tools: registered names, the loop engine, sane budgets, options the tools accept."""
    import inspect

    from verifrl.tools import TOOLS

    rollout = cfg.rollout
    for name in rollout.tools:
        _check_name("rollout.tools", name, TOOLS, "tool")
    if len(set(rollout.tools)) != len(rollout.tools):
        raise ConfigError("rollout.tools: a tool is named twice")
    if rollout.engine != "loop":
        raise ConfigError(f"rollout.tools needs rollout.engine=loop (tool calls are built in verifrl's own sampling "
                          f"loop; the {rollout.engine!r} engine cannot pause a row mid-generation)")
    if rollout.max_tool_calls < 1:
        raise ConfigError("rollout.max_tool_calls must be >= 1")
    if rollout.max_observation_tokens < 16:
        raise ConfigError("rollout.max_observation_tokens must be >= 16 (the output fences and the marker need room)")
    for name, options in rollout.tool_options.items():
        if name not in rollout.tools:
            raise ConfigError(f"rollout.tool_options: {name!r} is not in rollout.tools {rollout.tools}")
        if not isinstance(options, dict):
            raise ConfigError(f"rollout.tool_options.{name}: expected a mapping of options")
        accepted = inspect.signature(TOOLS[name]).parameters if isinstance(TOOLS[name], type) else {}
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(f"rollout.tool_options.{name}: unknown option(s) {unknown} (have: {', '.join(accepted)})")
    if cfg.reward.tool_error_penalty < 0:
        raise ConfigError("reward.tool_error_penalty must be >= 0 (it is subtracted per failed call)")


def _check_credit_assignment(cfg: Config) -> None:
    """The critic's options (gae), the SAPO gate and the built-in task's difficulty levels."""
    from verifrl.advantages import CRITIC_ESTIMATORS
    from verifrl.tasks.arithmetic import GENERATORS

    for key, levels in (("data.difficulties", cfg.data.difficulties),
                        ("model.embedded.difficulties", cfg.model.embedded.difficulties)):
        if set(levels) - set(GENERATORS):
            raise ConfigError(f"{key}: unknown difficulty in {levels}; valid: {sorted(GENERATORS)} (empty: 1-4)")
    checks = [
        (0 <= cfg.advantage.gamma <= 1, "advantage.gamma must be in [0, 1]"),
        (0 <= cfg.advantage.lam <= 1, "advantage.lam must be in [0, 1]"),
        (cfg.critic.lr > 0 and _finite(cfg.critic.lr), "critic.lr must be a finite number > 0"),
        (cfg.critic.clip_range is None or cfg.critic.clip_range > 0, "critic.clip_range must be > 0 (null: off)"),
        (cfg.critic.warmup_steps >= 0, "critic.warmup_steps must be >= 0"),
        (cfg.loss.sapo_temperature_pos > 0 and cfg.loss.sapo_temperature_neg > 0,
         "loss.sapo_temperature_pos/neg must be > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if cfg.advantage.estimator in CRITIC_ESTIMATORS:
        if cfg.trainer.parallel == "fsdp":
            raise ConfigError(f"advantage.estimator={cfg.advantage.estimator} does not support trainer.parallel=fsdp "
                              "yet (the critic is replicated: use ddp)")
        if cfg.rollout.dynamic_sampling != "off":
            raise ConfigError(f"advantage.estimator={cfg.advantage.estimator} needs rollout.dynamic_sampling=off "
                              "(a group with equal rewards still trains the critic and its token advantages)")
        if cfg.advantage.scale_rewards != "group":
            raise ConfigError("advantage.scale_rewards applies to estimator grpo; gae uses advantage.whiten")
        if cfg.trainer.off_policy_steps:
            raise ConfigError(f"advantage.estimator={cfg.advantage.estimator} does not support trainer.off_policy_steps "
                              "yet (the critic trains in the on-policy step only)")
        critic_model = cfg.critic.model
        if critic_model.startswith("embedded:"):
            raise ConfigError("critic.model: leave it empty to start the critic from the embedded policy's weights")
        looks_local = critic_model.startswith(("/", "./", "../", "~")) or Path(critic_model).expanduser().exists()
        if critic_model and looks_local and not Path(critic_model).expanduser().is_dir():
            raise ConfigError(f"critic.model: no model directory at {critic_model}")
    elif cfg.critic != CriticConfig():
        raise ConfigError(f"critic.* options need advantage.estimator=gae (got {cfg.advantage.estimator!r})")


def _finite(*values: float | None) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


def _check_off_policy(cfg: Config) -> None:
    """Rollout correction and the off-policy pipeline: combinations that cannot work."""
    correction = cfg.loss.rollout_correction
    for name in ("clip_min", "clip_max"):
        bound = getattr(correction, name)
        if bound is not None and bound <= 0:
            raise ConfigError(f"loss.rollout_correction.{name} must be > 0 (a bound on a ratio) or null")
    if correction.clip_min is not None and correction.clip_max is not None and correction.clip_min > correction.clip_max:
        raise ConfigError("loss.rollout_correction.clip_min must be <= clip_max")
    if correction.mode in ("truncate", "mask") and cfg.trainer.recompute_old_logprobs is False:
        raise ConfigError(f"loss.rollout_correction.mode={correction.mode} compares the sampler with a recomputed "
                          "pi_old: it needs trainer.recompute_old_logprobs (true or null)")
    if cfg.trainer.sampler_ranks and not cfg.trainer.off_policy_steps:
        raise ConfigError("trainer.sampler_ranks > 0 splits torchrun's ranks into samplers and trainers: it needs "
                          "trainer.off_policy_steps > 0")
    if not cfg.trainer.off_policy_steps:
        return
    if cfg.rollout.dynamic_sampling == "refill":
        raise ConfigError("trainer.off_policy_steps > 0 samples ahead of the rewards: rollout.dynamic_sampling=refill "
                          "cannot ask for more prompts (use drop or off)")
    if cfg.rollout.engine == "vllm":
        raise ConfigError("trainer.off_policy_steps > 0 runs its own sampler process: not with rollout.engine=vllm")
    if cfg.rollout.tools:
        raise ConfigError("trainer.off_policy_steps > 0 samples in a process without the tool sandboxes: not with "
                          "rollout.tools (the rollout correction and trainer.recompute_old_logprobs work with tools)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not cfg.trainer.sampler_ranks:
        raise ConfigError("trainer.off_policy_steps > 0 under torchrun samples on ranks of its own: set "
                          "trainer.sampler_ranks (e.g. 1: the last rank samples, the others train)")
    if cfg.trainer.sampler_ranks and world <= cfg.trainer.sampler_ranks:
        raise ConfigError(f"trainer.sampler_ranks={cfg.trainer.sampler_ranks} needs torchrun with more ranks than "
                          f"that (WORLD_SIZE={world}): the first ranks train, the last sample")
    if cfg.trainer.sampler_ranks and (cfg.rollout.num_prompts % (world - cfg.trainer.sampler_ranks)
                                      or cfg.rollout.num_prompts < cfg.trainer.sampler_ranks):
        raise ConfigError(f"rollout.num_prompts={cfg.rollout.num_prompts} must be divisible by the "
                          f"{world - cfg.trainer.sampler_ranks} trainer ranks and at least the "
                          f"{cfg.trainer.sampler_ranks} sampler ranks (each samples a share of the prompts)")
    if cfg.trainer.sampler_ranks and cfg.trainer.parallel == "fsdp":
        raise ConfigError("trainer.sampler_ranks works with trainer.parallel=ddp (the samplers hold whole copies; "
                          "fsdp's mesh would span them)")


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` (one line, naming the key) for the first impossible value."""
    _check_registered_names(cfg)
    checks = [
        (cfg.rollout.num_prompts >= 1, "rollout.num_prompts must be >= 1"),
        # outcome advantages are relative to the group: with one completion they are 0 forever
        (cfg.rollout.group_size >= 2 or (cfg.rollout.group_size == 1 and cfg.advantage.mode == "process"),
         "rollout.group_size must be >= 2: outcome advantages compare the completions of a prompt, so a "
         "group of one has advantage 0 and never learns (only advantage.mode=process works with 1)"),
        (cfg.rollout.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1"),
        (cfg.rollout.temperature > 0 and _finite(cfg.rollout.temperature), "rollout.temperature must be > 0"),
        (0 < cfg.rollout.top_p <= 1, "rollout.top_p must be in (0, 1]"),
        (cfg.rollout.top_k >= 0, "rollout.top_k must be >= 0 (0: off)"),
        (cfg.rollout.chunk_size >= 0, "rollout.chunk_size must be >= 0 (0: all at once)"),
        (cfg.trainer.steps >= 0, "trainer.steps must be >= 0"),
        (cfg.trainer.lr > 0 and _finite(cfg.trainer.lr), "trainer.lr must be a finite number > 0"),
        (cfg.trainer.warmup_steps >= 0, "trainer.warmup_steps must be >= 0"),
        (cfg.trainer.weight_decay >= 0 and _finite(cfg.trainer.weight_decay), "trainer.weight_decay must be >= 0"),
        (all(0 <= b < 1 for b in cfg.trainer.adam_betas), "trainer.adam_betas must be in [0, 1)"),
        (cfg.trainer.max_grad_norm >= 0 and _finite(cfg.trainer.max_grad_norm),
         "trainer.max_grad_norm must be >= 0 (0: off)"),
        (cfg.trainer.num_iterations >= 1, "trainer.num_iterations must be >= 1"),
        (cfg.trainer.micro_batch_size >= 0, "trainer.micro_batch_size must be >= 0"),
        (cfg.trainer.max_nonfinite_updates >= 0, "trainer.max_nonfinite_updates must be >= 0"),
        (cfg.trainer.threads >= 0, "trainer.threads must be >= 0 (0: torch's default)"),
        (cfg.rollout.stop_check_every >= 0, "rollout.stop_check_every must be >= 0 (0: auto)"),
        (cfg.loss.beta >= 0 and _finite(cfg.loss.beta), "loss.beta must be a finite number >= 0"),
        (cfg.loss.epsilon_low >= 0 and _finite(cfg.loss.epsilon_low), "loss.epsilon_low must be >= 0"),
        (cfg.loss.epsilon_high is None or (cfg.loss.epsilon_high >= 0 and _finite(cfg.loss.epsilon_high)),
         "loss.epsilon_high must be >= 0 (or null: epsilon_low)"),
        (cfg.loss.delta is None or cfg.loss.delta > 1, "loss.delta must be > 1 (it bounds the ratio)"),
        (cfg.advantage.eps >= 0 and _finite(cfg.advantage.eps), "advantage.eps must be a finite number >= 0"),
        (_finite(cfg.advantage.process_weight), "advantage.process_weight must be finite"),
        (cfg.advantage.step_credit == "all" or cfg.advantage.mode != "outcome",
         "advantage.step_credit=first_error needs step rewards: advantage.mode process or outcome+process"),
        (len(cfg.reward.verifiers) >= 1, "reward.verifiers must name at least one verifier"),
        (cfg.reward.overlong_cache_length >= 0, "reward.overlong_cache_length must be >= 0 (0: off)"),
        (cfg.reward.overlong_cache_length < cfg.rollout.max_new_tokens or cfg.reward.overlong_cache_length == 0,
         "reward.overlong_cache_length must be smaller than rollout.max_new_tokens"),
        (cfg.eval.pass_k >= 0, "eval.pass_k must be >= 0"),
        (cfg.eval.every_steps >= 0, "eval.every_steps must be >= 0 (0: only before/after)"),
        (cfg.eval.max_new_tokens >= 0, "eval.max_new_tokens must be >= 0 (0: rollout.max_new_tokens)"),
        (cfg.eval.pass_k_temperature > 0, "eval.pass_k_temperature must be > 0"),
        (cfg.logging.sample_table_every >= 0, "logging.sample_table_every must be >= 0 (0: off)"),
        (cfg.checkpoint.every_steps >= 0, "checkpoint.every_steps must be >= 0 (0: only at the end)"),
        (cfg.checkpoint.keep_last >= 0, "checkpoint.keep_last must be >= 0"),
        (cfg.rollout.max_refill_rounds >= 0, "rollout.max_refill_rounds must be >= 0"),
        (cfg.model.lora.r >= 0, "model.lora.r must be >= 0"),
        (0 <= cfg.model.lora.dropout < 1, "model.lora.dropout must be in [0, 1)"),
        (len(cfg.model.lora.target_modules) >= 1, "model.lora.target_modules must name at least one module"),
        (cfg.data.num_test >= 0 and cfg.data.num_train >= 0, "data.num_train/num_test must be >= 0"),
        (0 < cfg.data.test_fraction < 1, "data.test_fraction must be in (0, 1)"),
        (cfg.data.max_prompt_tokens >= 0, "data.max_prompt_tokens must be >= 0 (0: no limit)"),
        (cfg.reward.verifier_timeout >= 0, "reward.verifier_timeout must be >= 0 (0: no limit)"),
        (cfg.reward.max_abs_score > 0, "reward.max_abs_score must be > 0"),
        (0 <= cfg.reward.warn_error_rate <= 1, "reward.warn_error_rate must be in [0, 1]"),
        (cfg.rollout.max_memory_gb >= 0, "rollout.max_memory_gb must be >= 0 (0: the device's free memory)"),
        (cfg.trainer.off_policy_steps >= 0, "trainer.off_policy_steps must be >= 0"),
        (cfg.trainer.sampler_ranks >= 0, "trainer.sampler_ranks must be >= 0"),
        (cfg.trainer.sampler_threads >= 0, "trainer.sampler_threads must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    _check_verifiers(cfg)
    _check_credit_assignment(cfg)
    if cfg.trainer.parallel == "fsdp" and cfg.model.lora.r > 0:
        raise ConfigError("trainer.parallel=fsdp does not support model.lora (use ddp: a LoRA policy's "
                          "trainable state is small)")
    if cfg.trainer.parallel == "fsdp" and cfg.rollout.dynamic_sampling != "off":
        # ranks would run different numbers of generations (refill) or skip the update (an all-equal
        # step), and under fsdp both need every rank's part in the collectives
        raise ConfigError("trainer.parallel=fsdp needs rollout.dynamic_sampling=off")
    if cfg.rollout.engine == "vllm":
        _check_vllm(cfg)
    if cfg.rollout.tools or cfg.rollout.tool_options:
        _check_tools(cfg)
    _check_off_policy(cfg)
    model = cfg.model.name_or_path
    looks_local = model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()
    if not model.startswith("embedded:") and looks_local and not Path(model).expanduser().is_dir():
        raise ConfigError(f"model.name_or_path: no model directory at {model}")
    if model.startswith("embedded:") and model != "embedded:tiny-arith":
        raise ConfigError(f"model.name_or_path: unknown embedded model {model!r} (have: embedded:tiny-arith)")
