"""The run configuration's schema: dataclasses whose fields are the recipe's keys.

A YAML recipe mirrors the dataclass tree exactly; every field has a default that works and a
docstring line. Loading a recipe with CLI overrides is :func:`verifrl.config_loading.load_config`;
the value checks (unknown names of the registries, impossible values) are
:mod:`verifrl.config_validation`. Both raise :class:`ConfigError` with a one-line message naming the
key, before any model or dataset is loaded. Fields whose value names an algorithm or component
(``advantage.estimator``, ``loss.type``...) are plain strings checked against the registry that
implements them, so a new one is added in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A recipe or override is wrong; the message names the key or file."""


@dataclass
class EmbeddedModelConfig:
    """How the embedded default model is built and warm-started."""

    hidden_size: int = 96
    """Width of the transformer."""
    num_layers: int = 3
    """Number of decoder layers."""
    num_heads: int = 4
    """Attention heads (key/value heads are the same number)."""
    vocab_size: int = 384
    """Target BPE vocabulary size (digits are always single tokens)."""
    sft_steps: int = 700
    """Supervised warm-start optimiser steps. Tuned so greedy accuracy lands in 20-60%."""
    sft_batch_size: int = 16
    """Worked solutions per warm-start step."""
    sft_lr: float = 3e-3
    """Peak AdamW learning rate of the warm start (cosine decay, short linear warm-up)."""
    sft_examples: int = 20000
    """Distinct training problems the warm start draws from."""
    sft_final_lr_fraction: float = 0.3
    """Learning rate at the end of the warm start's cosine decay, as a fraction of the peak."""
    sft_terse_fraction: float = 0.0
    """Share of warm-start solutions written tersely (the whole expression on one line) instead of
    one operation per line. 0 by default: with a mixed corpus the tiny model learns both styles
    worse (measured: 18% vs 61% greedy after the same steps)."""
    seed: int = 0
    """Seed of the tokenizer corpus, initial weights and warm-start batches."""
    difficulties: list[int] = field(default_factory=list)
    """Difficulty levels of the warm-start problems (empty: 1-4, the main job's task; the tool
    recipes add 5 and 6, two-digit products; the long-chain recipe adds 7)."""
    tool_fraction: float = 0.0
    """Share of warm-start solutions written as a python tool call (a ```python block, its
    ```output block, then the answer) instead of stepwise; the rest are worked in the head."""
    tool_vocabulary: bool = False
    """Train the BPE tokenizer on tool-call transcripts too, so the fences and the output block
    get merged tokens (the byte alphabet already represents any text, one byte per token)."""


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
    test_fraction: float = 0.1
    """A single local file (``path``, no ``test_path``) is split in two by a hash of the question:
    this share of the hash space is held out as the test split, the rest is trained on."""
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
    max_prompt_tokens: int = 1024
    """Rows whose formatted prompt is longer than this many tokens are skipped and counted when the
    task loads (one huge row would otherwise exhaust the sampler's memory). 0: no limit."""
    prompt_template: str = "Question: {question}\nSolution:\n"
    """Python format string over the row's columns; the model's text continues from it."""
    use_chat_template: bool = False
    """Wrap the formatted prompt as a user message with the tokenizer's chat template."""
    system_prompt: str = ""
    """System message for chat templates (empty: none)."""
    seed: int = 0
    """Seed of the built-in generator and of prompt shuffling."""
    difficulties: list[int] = field(default_factory=list)
    """Built-in task only: difficulty levels to draw from (empty: 1-4, the main job's task; 5 and 6
    are two-digit products that the tool-use recipes hand to the python tool; 7 is the long chain of
    5-8 dependent steps, recipes/tiny-arith-long.yaml)."""


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
    engine: str = "loop"
    """Sampler: ``loop`` (verifrl's KV-cache loop: shared prompt prefill, finished rows dropped),
    ``hf`` (``model.generate``), ``cb`` (transformers' continuous batching, ``generate_batch``) or
    ``vllm`` (a vLLM engine in this process, weights pushed before every rollout; GPU, optional
    extra, not yet run by the authors: see docs/speed.md)."""
    vllm_gpu_memory_utilization: float = 0.3
    """engine=vllm: share of the GPU's memory vLLM may take (weights and KV cache)."""
    vllm_sleep: bool = True
    """engine=vllm: release vLLM's weights and KV cache between rollouts, so the update has the memory."""
    stop_check_every: int = 0
    """loop engine: look for ended rows every N tokens; each look waits for the device, N > 1 lets a
    GPU run ahead of the host (ended rows decode padding until the next look). 0: 8 on a GPU
    (+32 % tokens/s measured on an H200), 1 on a CPU."""
    dynamic_sampling: str = "off"
    """DAPO dynamic sampling: ``drop`` removes groups whose rewards are all equal (zero advantage)
    from the update; ``refill`` also samples more prompts until num_prompts groups are informative
    or max_refill_rounds extra rounds are spent. Counted in ``rollout/dropped_groups``."""
    max_refill_rounds: int = 3
    """Extra generation rounds a step may spend refilling (refill mode only)."""
    max_memory_gb: float = 0.0
    """Memory the sampler's KV cache, attention scores and logits may take, checked from the model
    config before anything is sampled (the run stops with an error naming the knobs instead of
    being killed for memory). 0: the free memory of the policy's device when the run starts."""
    tools: list[str] = field(default_factory=list)
    """Tools the policy may call mid-rollout (registered names, e.g. ``[python]``; loop engine only):
    a ```python block closed by the model runs in the sandbox and its output is spliced in as a
    ```output block that is never trained on. Empty: no tools."""
    max_tool_calls: int = 4
    """Most tool calls per completion; later blocks get no output."""
    max_observation_tokens: int = 256
    """Most tokens of one spliced output block, fences included (longer output is cut with a
    visible marker). Observation tokens do not count in max_new_tokens."""
    tool_options: dict = field(default_factory=dict)
    """Per-tool constructor options, e.g. ``{python: {timeout: 3.0, memory_mb: 512}}``."""


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
    verifier_timeout: float = 60.0
    """Seconds any verifier (built-in or custom) may take on one completion (a ``verify_batch`` call:
    that times its rows). A call past it scores as a verifier error (``on_verifier_error``), counted
    in ``reward/verifier_timeouts``; the stuck call is abandoned, not killed (docs/robustness.md).
    0: no limit, verifiers run on the calling thread."""
    max_abs_score: float = 1e6
    """A verifier score (or step score) of larger magnitude is a verifier error, like NaN."""
    warn_error_rate: float = 0.5
    """Print a warning when a step's verifier error rate or unparsed-reference rate passes this."""
    tool_error_penalty: float = 0.0
    """Subtracted from the reward once per tool call that raised, timed out or crashed (0: off)."""
    overlap_verification: bool | None = None
    """Verify completions on a background thread as they finish, while the rest are still sampled.
    None (null): on when the policy samples on a GPU, off on a CPU, where the checks compete with
    sampling for the cores (2-4 % slower per step on 2 cores, bench/overlap.py)."""


@dataclass
class AdvantageConfig:
    estimator: str = "grpo"
    """Advantage estimator (``verifrl.advantages.ADVANTAGE_ESTIMATORS``): grpo (group-normalised),
    rloo, reinforce_pp (group baselines), or gae (PPO with a critic: ``critic.*``, docs/credit-assignment.md)."""
    mode: str = "outcome"
    """Sequence rewards only, DeepSeekMath process supervision, or both."""
    scale_rewards: str = "group"
    """Divide centred rewards by the group std, the batch std, or not at all (Dr. GRPO)."""
    eps: float = 1e-4
    """Added to the std so an all-equal group gets exactly zero advantage."""
    process_weight: float = 1.0
    """Weight of the process-supervision term in outcome+process mode (steps come from the verifier
    that returns step_scores, e.g. math_steps, whose ``segmenter`` kwarg sets the segmentation);
    with estimator gae, the scale of the dense step rewards."""
    step_credit: Literal["all", "first_error"] = "all"
    """Process modes: which steps carry a step reward. first_error: the steps up to a completion's
    first false step and its answer step (later steps are dropped: the chain is lost by then)."""
    gamma: float = 1.0
    """estimator gae: discount per token (verl algorithm.gamma)."""
    lam: float = 0.95
    """estimator gae: GAE lambda (verl algorithm.lam; 1: Monte Carlo returns, 0: one-step TD)."""
    whiten: bool = True
    """estimator gae: whiten the advantages over the whole batch (masked mean 0, std 1), as verl's
    compute_gae_advantage_return does; the group estimators normalise themselves and ignore it."""


@dataclass
class CriticConfig:
    """The value model of ``advantage.estimator: gae`` (PPO with a critic); unused otherwise."""

    model: str = ""
    """Model directory or hub name of the critic's backbone (empty: the policy's own initial
    weights, as verl/OpenRLHF initialise the critic from the actor). A value head is added."""
    lr: float = 1.0e-5
    """Critic AdamW learning rate (verl critic.optim.lr), constant."""
    clip_range: float | None = 0.5
    """Clipped value loss: new values are kept within +-clip_range of the values at sampling time
    (verl critic.cliprange_value, default 0.5); null: unclipped squared error."""
    warmup_steps: int = 0
    """First steps in which only the critic trains, so the policy's first advantages come from a
    critic that has seen some returns (verl trainer.critic_warmup)."""


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
    type: str = "dapo"
    """Token-loss aggregation (``verifrl.losses.LOSS_AGGREGATIONS``): grpo per-sequence mean; dapo/bnpo
    token mean; dr_grpo constant."""
    objective: str = "ppo_clip"
    """Per-token policy term (``verifrl.losses.POLICY_OBJECTIVES``): ppo_clip (clipped surrogate),
    cispo (MiniMax-M1: -sg(min(r, 1 + epsilon_high)) * A * log pi, every token keeps its gradient;
    epsilon_low and delta do not apply) or sapo (soft gate sigmoid(tau (r - 1)) * 4 / tau, no clip)."""
    epsilon_low: float = 0.2
    """Lower clip range of the importance ratio."""
    epsilon_high: float | None = None
    """Upper clip range (None: same as epsilon_low; DAPO clip-higher uses 0.28)."""
    delta: float | None = None
    """Dual-clip upper bound on the unclipped ratio (None: off)."""
    importance_level: str = "token"
    """Per-token ratio (GRPO) or length-normalised sequence ratio (GSPO)."""
    beta: float = 0.0
    """KL coefficient to the frozen reference model (0: no reference model is loaded)."""
    kl_estimator: str = "k3"
    """KL estimator: k1, k2, k3, or k3_ratio (k3 with the gradient of KL(pi||ref))."""
    kl_placement: Literal["loss", "reward"] = "loss"
    """KL term in the loss (GRPO) or in the reward (PPO/InstructGPT): the completion's summed k1
    for the group estimators, -beta * k1 on every token for gae."""
    sapo_temperature_pos: float = 1.0
    """objective sapo: gate temperature of tokens with a positive advantage (TRL default)."""
    sapo_temperature_neg: float = 1.05
    """objective sapo: gate temperature of the other tokens (TRL default; higher fades faster)."""
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
    """Take pi_old from the trainer instead of the sampler's log-probs, and log the sampler/trainer
    gap (``offpolicy/*``). No extra pass: the update's first forward on the batch is pi_old (read
    detached, as verl does on-policy). None: on when a rollout correction or off_policy_steps needs it."""
    off_policy_steps: int = 0
    """Sample the batch of step k+N with step k's weights in a separate sampler process while the
    trainer updates (0: sample and update in turn, on one set of weights). docs/off-policy.md."""
    sampler_threads: int = 0
    """off_policy_steps > 0 on a CPU: torch threads of the sampler process (0: half the cores); the
    trainer gets the other cores unless trainer.threads is set."""
    sampler_ranks: int = 0
    """off_policy_steps > 0 under torchrun: the last K ranks sample (each a share of the prompts, on
    its own device) while the other ranks train with ddp; weights go to them after every update."""


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
    report_to: list[Literal["wandb", "tensorboard"]] = field(default_factory=lambda: ["wandb"])
    """Trackers besides metrics.jsonl: wandb (pip install 'verifrl[wandb]'; skipped with a note when
    not installed), tensorboard (event files under <run_dir>/tensorboard). [] for none."""
    wandb: Literal["auto", "online", "offline", "disabled"] = "auto"
    """auto: WANDB_MODE when set, else online when wandb has credentials (WANDB_API_KEY or `wandb login`), else offline."""
    wandb_project: str = "verifrl"
    """wandb project name (WANDB_PROJECT in the environment takes precedence)."""
    sample_table_every: int = 10
    """Log a table of sample completions with their rewards every N steps (0: off)."""
    progress: bool = True
    """Print a progress line per step on the console (rank 0 only)."""


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
    critic: CriticConfig = field(default_factory=CriticConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
