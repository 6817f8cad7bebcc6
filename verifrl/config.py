"""Typed run configuration: dataclasses, loaded from a YAML recipe, overridden from the CLI.

``load_config("recipes/tiny-arith.yaml", ["trainer.lr=3e-5", "rollout.group_size=8"])``. The YAML
mirrors the dataclass tree exactly. Every field has a default that works and a docstring line.
Unknown keys, wrong types and impossible values raise :class:`ConfigError` with a one-line
message naming the key, before any model or dataset is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from verifrl.embedded import EmbeddedModelConfig


class ConfigError(ValueError):
    """A recipe or override is wrong; the message names the key or file."""


@dataclass
class LoraConfig:
    r: int = 0
    """LoRA rank (0: off, the whole policy is trained). Needs the ``lora`` extra (peft)."""
    alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input. 0 by default: dropout makes the update's forward differ from the
    sampler's, so the importance ratio is no longer exactly 1 on-policy."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt (``all-linear``: every linear layer except the output head)."""


@dataclass
class ModelConfig:
    name_or_path: str = "embedded:tiny-arith"
    """Hugging Face hub name, local model directory, or ``embedded:tiny-arith`` (built locally)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Parameter dtype: auto is float32 on CPU and bfloat16 on a GPU that supports it."""
    device: str = "auto"
    """``auto`` (cuda if available, else cpu), ``cpu``, ``cuda``, ``cuda:1``..."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    trust_remote_code: bool = False
    """Allow model repositories that ship their own modelling code."""
    embedded: EmbeddedModelConfig = field(default_factory=EmbeddedModelConfig)
    """How the embedded default is built (used only with ``embedded:tiny-arith``)."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Train LoRA adapters instead of the whole policy (``lora.r > 0``); the reference model is then
    the adapter-disabled base, with no second copy of the weights."""


@dataclass
class DataConfig:
    source: str = "arithmetic"
    """``arithmetic`` (built-in generator), ``gsm8k``, ``math``, or ``hf`` / ``json`` (generic)."""
    path: str = ""
    """Hub name or local file/directory for gsm8k/math/hf/json sources (empty: the default hub name)."""
    train_split: str = "train"
    """Split used for RL prompts."""
    test_split: str = "test"
    """Held-out split used for evaluation; never trained on."""
    test_path: str = ""
    """Hub name or local file/directory of the held-out split when it is another dataset than
    ``path`` (e.g. HuggingFaceH4/MATH-500); same source schema. Empty: ``path``."""
    subsets: list[str] = field(default_factory=list)
    """Hub configurations of ``path`` to load and concatenate (e.g. the seven subjects of
    EleutherAI/hendrycks_math); empty: the dataset's default (all subjects for source ``math``)."""
    question_field: str = "question"
    """Column holding the problem text (generic sources)."""
    answer_field: str = "answer"
    """Column holding the reference answer (generic sources)."""
    num_train: int = 20000
    """Problems generated for training (built-in task), or a cap on loaded rows (0: all)."""
    num_test: int = 400
    """Held-out problems used for the before/after evaluation (0: the whole test split)."""
    prompt_template: str = "Question: {question}\nSolution:\n"
    """Python format string over the row's columns; the model's text continues from it."""
    use_chat_template: bool = False
    """Wrap the formatted prompt as a user message with the tokenizer's chat template."""
    system_prompt: str = ""
    """System message for chat templates (empty: none)."""
    seed: int = 0
    """Seed of the built-in generator and of prompt shuffling."""


@dataclass
class RolloutConfig:
    num_prompts: int = 32
    """Prompts per RL step."""
    group_size: int = 8
    """Completions sampled per prompt (G)."""
    max_new_tokens: int = 64
    """Completion length limit; longer completions are truncated."""
    temperature: float = 1.0
    """Sampling temperature (log-probs in the loss use the same temperature)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1.0: off)."""
    top_k: int = 0
    """Top-k sampling (0: off)."""
    chunk_size: int = 0
    """Most sequences per generate call (0: all of a step's P*G at once)."""
    engine: Literal["loop", "hf", "cb", "vllm"] = "loop"
    """Sampler: ``loop`` (verifrl's KV-cache loop: shared prompt prefill, finished rows dropped),
    ``hf`` (``model.generate``), ``cb`` (transformers' continuous batching, ``generate_batch``) or
    ``vllm`` (a vLLM engine in this process, weights pushed before every rollout; GPU, optional
    extra, not yet run by the authors: see README)."""
    vllm_gpu_memory_utilization: float = 0.3
    """engine=vllm: share of the GPU's memory vLLM may take (weights and KV cache)."""
    vllm_sleep: bool = True
    """engine=vllm: release vLLM's weights and KV cache between rollouts, so the update has the memory."""
    stop_check_every: int = 0
    """loop engine: look for ended rows every N tokens; each look waits for the device, N > 1 lets a
    GPU run ahead of the host (ended rows decode padding until the next look). 0: 8 on a GPU
    (+32 % tokens/s measured on an H200), 1 on a CPU."""
    dynamic_sampling: Literal["off", "drop", "refill"] = "off"
    """DAPO dynamic sampling: ``drop`` removes groups whose rewards are all equal (zero advantage)
    from the update; ``refill`` also samples more prompts until num_prompts groups are informative
    or max_refill_rounds extra rounds are spent. Counted in ``rollout/dropped_groups``."""
    max_refill_rounds: int = 3
    """Extra generation rounds a step may spend refilling (refill mode only)."""


@dataclass
class VerifierSpec:
    name: str = "math"
    """Registered verifier name or ``package.module:callable``."""
    weight: float = 1.0
    """Weight of this verifier's score in the summed reward."""
    kwargs: dict = field(default_factory=dict)
    """Keyword arguments for the verifier's constructor."""


@dataclass
class RewardConfig:
    verifiers: list[VerifierSpec] = field(default_factory=lambda: [VerifierSpec()])
    """Verifiers whose weighted scores sum to the reward."""
    overlong_cache_length: int = 0
    """DAPO soft overlong penalty over the last N tokens before max_new_tokens (0: off)."""
    mask_truncated: bool = False
    """Exclude completions cut by the length limit from the loss (they still count in group stats)."""
    on_verifier_error: Literal["raise", "zero"] = "raise"
    """A verifier that raises: stop the run (raise) or score 0 and count it (zero)."""
    overlap_verification: bool | None = None
    """Verify completions on a background thread as they finish, while the rest are still sampled.
    None (null): on when the policy samples on a GPU, off on a CPU, where the checks compete with
    sampling for the cores (2-4 % slower per step on 2 cores, bench/overlap.py)."""


@dataclass
class AdvantageConfig:
    estimator: str = "grpo"
    """Outcome advantage estimator: grpo (group-normalised), rloo, reinforce_pp."""
    mode: Literal["outcome", "process", "outcome+process"] = "outcome"
    """Sequence rewards only, DeepSeekMath process supervision, or both."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Divide centred rewards by the group std, the batch std, or not at all (Dr. GRPO)."""
    eps: float = 1e-4
    """Added to the std so an all-equal group gets exactly zero advantage."""
    process_weight: float = 1.0
    """Weight of the process-supervision term in outcome+process mode (steps come from the verifier
    that returns step_scores, e.g. math_steps, whose ``segmenter`` kwarg sets the segmentation)."""


@dataclass
class RolloutCorrectionConfig:
    mode: Literal["auto", "none", "truncate", "mask"] = "auto"
    """Weight each token's policy-gradient term by pi_old / pi_sampler (needs pi_old recomputed):
    ``truncate`` clamps the ratio to [clip_min, clip_max], ``mask`` zeroes it outside, ``none`` off.
    ``auto``: mask when the sampler's log-probs differ from the trainer's (rollout.engine=vllm,
    bf16/fp16 weights, trainer.off_policy_steps > 0), none for a float32 loop/hf/cb sampler."""
    level: Literal["token", "sequence"] = "sequence"
    """One ratio per token, or one per row (the product of its token ratios) for all its tokens."""
    clip_min: float | None = None
    """Lower bound of the ratio (None: no bound)."""
    clip_max: float | None = 3.0
    """Upper bound of the ratio (None: no bound); TRL's default 3."""


@dataclass
class LossConfig:
    type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "dapo"
    """Token-loss aggregation (see README): grpo per-sequence mean; dapo/bnpo token mean; dr_grpo constant."""
    epsilon_low: float = 0.2
    """Lower clip range of the importance ratio."""
    epsilon_high: float | None = None
    """Upper clip range (None: same as epsilon_low; DAPO clip-higher uses 0.28)."""
    delta: float | None = None
    """Dual-clip upper bound on the unclipped ratio (None: off)."""
    importance_level: Literal["token", "sequence"] = "token"
    """Per-token ratio (GRPO) or length-normalised sequence ratio (GSPO)."""
    beta: float = 0.0
    """KL coefficient to the frozen reference model (0: no reference model is loaded)."""
    kl_estimator: str = "k3"
    """KL estimator: k1, k2, k3, or k3_ratio (k3 with the gradient of KL(pi||ref))."""
    kl_placement: Literal["loss", "reward"] = "loss"
    """KL term in the loss (GRPO) or as a per-token reward penalty (PPO/InstructGPT)."""
    rollout_correction: RolloutCorrectionConfig = field(default_factory=RolloutCorrectionConfig)
    """Importance correction for the gap between the sampler and the trainer (docs/off-policy.md)."""


@dataclass
class TrainerConfig:
    steps: int = 40
    """RL steps (one rollout batch each)."""
    lr: float = 1e-4
    """AdamW learning rate."""
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate decay after warm-up."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0: off)."""
    max_nonfinite_updates: int = 3
    """An update whose gradient is NaN/inf is skipped (``update/nonfinite_skipped``); this many in a
    row stop the run with an error (the last checkpoint is kept). 0: never stop."""
    num_iterations: int = 1
    """Policy updates per rollout batch (mu); ratios use the rollout's log-probs throughout."""
    micro_batch_size: int = 0
    """Sequences per forward/backward (gradient accumulation; 0: the whole batch at once)."""
    seed: int = 0
    """Seed of sampling, prompt order and anything random in the update."""
    threads: int = 0
    """torch CPU threads (0: leave torch's default)."""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """torchrun: ddp (full copy per rank, gradient all-reduce) or fsdp (FSDP2: weights/grads/optimizer sharded)."""
    recompute_old_logprobs: bool | None = None
    """Recompute pi_old with a no-grad trainer forward before the update, and log the sampler/trainer
    gap (``offpolicy/*``). None: on when a rollout correction or off_policy_steps needs it."""
    off_policy_steps: int = 0
    """Sample the batch of step k+N with step k's weights in a separate sampler process while the
    trainer updates (0: sample and update in turn, on one set of weights). docs/off-policy.md."""
    sampler_threads: int = 0
    """off_policy_steps > 0 on a CPU: torch threads of the sampler process (0: half the cores); the
    trainer gets the other cores unless trainer.threads is set."""


@dataclass
class EvalConfig:
    before: bool = True
    """Evaluate the policy before RL (the 'before' column)."""
    every_steps: int = 0
    """Evaluate on the held-out split every N steps during training (0: only before/after)."""
    max_new_tokens: int = 0
    """Generation limit at evaluation (0: rollout.max_new_tokens)."""
    pass_k: int = 0
    """Also report pass@k with k samples per problem (unbiased estimator; 0: off)."""
    pass_k_temperature: float = 1.0
    """Sampling temperature for pass@k."""


@dataclass
class LoggingConfig:
    output_dir: str = "runs"
    """Parent directory of run directories."""
    run_name: str = ""
    """Run directory name (empty: recipe name + timestamp)."""
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    """auto: online when WANDB_API_KEY is set, otherwise offline (sync later with `wandb sync`)."""
    wandb_project: str = "verifrl"
    """wandb project name."""
    sample_table_every: int = 10
    """Log a table of sample completions with their rewards every N steps (0: off)."""
    progress: bool = True
    """Show a console progress bar."""


@dataclass
class CheckpointConfig:
    every_steps: int = 0
    """Write a checkpoint every N steps (0: only at the end)."""
    keep_last: int = 2
    """How many step checkpoints to keep."""
    save_final_model: bool = True
    """Also save the final policy as a plain Hugging Face model directory."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain data, with type checks


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            # YAML 1.1 reads on/off/yes/no as booleans, so `wandb=off` arrives as False
            hint = " (YAML read a bare on/off/yes/no as a boolean)" if isinstance(value, bool) else ""
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, args))}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _build(cls: type, values: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {full!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"trainer.lr=3e-5"`` -> ("trainer.lr", 3e-05); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML reads 3e-5 as a string (it wants 3.0e-5); users type the former
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            pass
    return key, value


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Recipe YAML (optional) + dotted overrides -> validated :class:`Config`."""
    tree: dict = {}
    if recipe is not None:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {str(err).splitlines()[0]}")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of sections")
        tree = _normalise_yaml_numbers(loaded or {})
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    config = _build(Config, tree)
    validate(config)
    return config


def _normalise_yaml_numbers(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _normalise_yaml_numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_normalise_yaml_numbers(v) for v in node]
    if isinstance(node, str):
        try:
            if any(c in node for c in "eE") and node.strip()[0] in "0123456789.-+":
                return float(node)
        except (ValueError, IndexError):
            return node
    return node


def _check_vllm(cfg: Config) -> None:
    """rollout.engine=vllm: what the colocated engine cannot do, refused before anything loads."""
    import importlib.util

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
    if not cfg.trainer.off_policy_steps:
        return
    if cfg.rollout.dynamic_sampling == "refill":
        raise ConfigError("trainer.off_policy_steps > 0 samples ahead of the rewards: rollout.dynamic_sampling=refill "
                          "cannot ask for more prompts (use drop or off)")
    if cfg.rollout.engine == "vllm":
        raise ConfigError("trainer.off_policy_steps > 0 runs its own sampler process: not with rollout.engine=vllm")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("trainer.off_policy_steps > 0 is single-process for now: not under torchrun "
                          "(docs/off-policy.md describes the sampler/trainer rank split)")


def validate(cfg: Config) -> None:
    """Value checks that types alone cannot express."""
    checks = [
        (cfg.rollout.num_prompts >= 1, "rollout.num_prompts must be >= 1"),
        (cfg.rollout.group_size >= 1, "rollout.group_size must be >= 1"),
        (cfg.rollout.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1"),
        (cfg.rollout.temperature > 0, "rollout.temperature must be > 0"),
        (0 < cfg.rollout.top_p <= 1, "rollout.top_p must be in (0, 1]"),
        (cfg.trainer.steps >= 0, "trainer.steps must be >= 0"),
        (cfg.trainer.lr > 0, "trainer.lr must be > 0"),
        (cfg.trainer.num_iterations >= 1, "trainer.num_iterations must be >= 1"),
        (cfg.trainer.micro_batch_size >= 0, "trainer.micro_batch_size must be >= 0"),
        (cfg.trainer.max_nonfinite_updates >= 0, "trainer.max_nonfinite_updates must be >= 0"),
        (cfg.rollout.stop_check_every >= 0, "rollout.stop_check_every must be >= 0 (0: auto)"),
        (cfg.loss.beta >= 0, "loss.beta must be >= 0"),
        (cfg.loss.epsilon_low >= 0, "loss.epsilon_low must be >= 0"),
        (cfg.loss.delta is None or cfg.loss.delta > 1, "loss.delta must be > 1 (it bounds the ratio)"),
        (cfg.loss.kl_estimator in ("k1", "k2", "k3", "k3_ratio"), "loss.kl_estimator must be k1, k2, k3 or k3_ratio"),
        (len(cfg.reward.verifiers) >= 1, "reward.verifiers must name at least one verifier"),
        (cfg.reward.overlong_cache_length < cfg.rollout.max_new_tokens or cfg.reward.overlong_cache_length == 0,
         "reward.overlong_cache_length must be smaller than rollout.max_new_tokens"),
        (cfg.eval.pass_k >= 0, "eval.pass_k must be >= 0"),
        (cfg.rollout.max_refill_rounds >= 0, "rollout.max_refill_rounds must be >= 0"),
        (cfg.model.lora.r >= 0, "model.lora.r must be >= 0"),
        (0 <= cfg.model.lora.dropout < 1, "model.lora.dropout must be in [0, 1)"),
        (len(cfg.model.lora.target_modules) >= 1, "model.lora.target_modules must name at least one module"),
        (cfg.data.num_test >= 0 and cfg.data.num_train >= 0, "data.num_train/num_test must be >= 0"),
        (cfg.trainer.off_policy_steps >= 0, "trainer.off_policy_steps must be >= 0"),
        (cfg.trainer.sampler_threads >= 0, "trainer.sampler_threads must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if cfg.trainer.parallel == "fsdp" and cfg.model.lora.r > 0:
        raise ConfigError("trainer.parallel=fsdp does not support model.lora (use ddp: a LoRA policy's "
                          "trainable state is small)")
    if cfg.trainer.parallel == "fsdp" and cfg.rollout.dynamic_sampling != "off":
        # ranks would run different numbers of generations (refill) or skip the update (an all-equal
        # step), and under fsdp both need every rank's part in the collectives
        raise ConfigError("trainer.parallel=fsdp needs rollout.dynamic_sampling=off")
    if cfg.rollout.engine == "vllm":
        _check_vllm(cfg)
    _check_off_policy(cfg)
    if cfg.advantage.mode != "outcome" and cfg.rollout.group_size < 2:
        pass  # process supervision normalises over steps, so G=1 is still meaningful
    model = cfg.model.name_or_path
    looks_local = model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()
    if not model.startswith("embedded:") and looks_local and not Path(model).expanduser().is_dir():
        raise ConfigError(f"model.name_or_path: no model directory at {model}")
    if model.startswith("embedded:") and model != "embedded:tiny-arith":
        raise ConfigError(f"model.name_or_path: unknown embedded model {model!r} (have: embedded:tiny-arith)")
