"""The critic of PPO (``advantage.estimator: gae``): a value model, its loss and its update.

Place in the data flow: ... -> rewards -> **values -> advantages (GAE)** -> loss -> update
(policy, then **critic**) -> logging.

- :class:`ValueModel`: a scalar value head on a transformer backbone. By default the backbone is
  a copy of the policy's own initial weights (``critic.model`` empty), as verl and OpenRLHF
  initialise the critic from the actor's checkpoint; ``critic.model`` names another model
  directory or hub name. ``V(s_t)`` for completion token t is read from the hidden state of the
  position *before* t (the state in which token t is chosen), as the policy's logits are.
- :func:`value_loss`: PPO's clipped value loss (verl ``compute_value_loss``).
- :func:`explained_variance`: ``1 - Var(R - V) / Var(R)`` over the masked tokens.
- :class:`Critic`: the value model with its optimiser; ``values`` (no gradient) before the
  advantages, ``update`` after the policy update, ``warming_up`` for ``critic.warmup_steps``
  (critic-only steps, verl ``trainer.critic_warmup``), ``save``/``load`` for checkpoints
  (``critic/`` in the step directory).
- :func:`critic_advantages`: token rewards + values -> GAE advantages (whitened over the global
  batch by default) and value targets; :func:`ppo_advantages` builds the token rewards of a
  sampled batch and calls it, :func:`critic_step` runs the critic's update epochs (the trainer's
  two calls).

Tool use: the critic reads the whole completion, tool observations included (they are context,
like the prompt), but GAE, the value loss and the metrics run over the model's own tokens only
(the policy's loss mask), so an observation token gets no reward, no value target and no
advantage, and costs no discount step.

LoRA (``model.lora.r > 0``): the critic gets its *own* LoRA adapter of the same rank on its own
frozen copy of the base weights, and a fully trained value head; the policy's adapter is never
shared. A full critic would need an optimiser state the size of the model, which is what LoRA
avoids for the policy. Under torchrun (ddp) every rank holds the whole critic, starts from rank
0's weights, and its gradients are summed over ranks like the policy's; fsdp is refused by
config validation.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from verifrl import distributed
from verifrl.advantages import gae, masked_whiten
from verifrl.losses import masked_mean
from verifrl.models import ModelLoadError, model_path, resolve_device, resolve_dtype, with_lora
from verifrl.rewards import critic_token_rewards, kl_token_penalty
from verifrl.update import micro_batches


class ValueModel(nn.Module):
    """Transformer backbone + ``Linear(hidden, 1)`` value head; returns V per completion token."""

    def __init__(self, backbone: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1)
        # zero init: the first values are exactly 0 (no random baseline before the critic learns)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                completion_mask: Tensor) -> Tensor:
        """(N, Lp) left-padded prompts + (N, Lc) right-padded completions -> (N, Lc) float32 values.

        The value of completion token t is read at the position before it (the last prompt
        position for t = 0), the state in which the policy chose token t.
        """
        device = self.value_head.weight.device
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1).to(device)  # (N, Lp+Lc)
        attention = torch.cat([prompt_mask, completion_mask], dim=1).to(device)  # (N, Lp+Lc)
        positions = (attention.cumsum(1) - 1).clamp(min=0)  # (N, Lp+Lc), left padding not counted
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                               use_cache=False).last_hidden_state  # (N, Lp+Lc, H)
        width = prompt_ids.shape[1]
        states = hidden[:, width - 1: width + completion_ids.shape[1] - 1]  # (N, Lc, H)
        return self.value_head(states.float().to(self.value_head.weight.dtype)).squeeze(-1).float()  # (N, Lc)


def load_value_model(critic_cfg, model_cfg, log=print) -> ValueModel:
    """The value model: ``critic.model`` (or the policy's own initial weights) + a zero value head,
    on the policy's device and dtype; with ``model.lora.r > 0`` its own LoRA adapter."""
    from transformers import AutoModelForCausalLM

    path = critic_cfg.model or model_path(model_cfg, log=log)
    device = resolve_device(model_cfg.device)
    dtype = resolve_dtype(model_cfg.dtype, device)
    try:
        language_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype,
                                                              trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"critic.model: cannot load {path!r}: {str(err).splitlines()[0]}") from None
    backbone = language_model.base_model  # the transformer without its LM head
    hidden_size = language_model.config.get_text_config().hidden_size
    if model_cfg.lora.r > 0:
        backbone = with_lora(backbone, model_cfg.lora, task_type="FEATURE_EXTRACTION")
    model = ValueModel(backbone, hidden_size).to(device)
    model.value_head.to(torch.float32)  # a scalar head: float32 even when the backbone is bf16
    return model


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range: float | None,
               num_tokens: Tensor | int | None = None) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped value loss (verl ``compute_value_loss``, OpenRLHF ``ValueLoss``).

    ``l_t = 0.5 * max((V_t - R_t)^2, (clip(V_t, V_old_t - c, V_old_t + c) - R_t)^2)`` with
    ``c = clip_range``; ``clip_range=None`` gives the plain ``0.5 * (V_t - R_t)^2``. Aggregated as a
    token mean: the token sum over ``num_tokens`` (the whole batch's masked tokens, so that
    micro-batches add up to one full-batch step), or over this mask's tokens when None.

    Args:
        values: (B, T) the critic's current values (differentiable).
        old_values: (B, T) the values when the batch was scored (no gradient).
        returns: (B, T) GAE value targets (no gradient).
        mask: (B, T) 1 on the tokens that count.
        clip_range: c, or None for no clipping.
        num_tokens: normaliser (see above).

    Returns:
        ``(loss, metrics)``: ``value_loss`` (the aggregated loss) and ``value_clip_fraction``
        (share of masked tokens where the clipped term was the larger one, i.e. the clip acted).
    """
    keep = mask.bool()
    zero = torch.zeros_like(values)
    v = torch.where(keep, values, zero)
    old = torch.where(keep, old_values.detach().to(values.dtype), zero)
    target = torch.where(keep, returns.detach().to(values.dtype), zero)
    unclipped = (v - target).square()  # (B, T)
    if clip_range is None:
        per_token, clipped_more = unclipped, torch.zeros_like(keep)
    else:
        clipped = (old + torch.clamp(v - old, -clip_range, clip_range) - target).square()  # (B, T)
        per_token, clipped_more = torch.maximum(unclipped, clipped), clipped > unclipped
    per_token = torch.where(keep, 0.5 * per_token, zero)
    total = keep.sum() if num_tokens is None else torch.as_tensor(num_tokens, device=values.device)
    loss = per_token.sum() / total.to(values.dtype).clamp(min=1)
    return loss, {"value_loss": float(loss.detach()),
                  "value_clip_fraction": float(masked_mean((clipped_more & keep).float(), keep))}


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> float:
    """``1 - Var(R - V) / Var(R)`` over the masked tokens: 1 is a perfect critic, 0 one no better
    than a constant, negative one worse than the mean; NaN when the returns have no variance."""
    keep = mask.bool()
    r, v = returns[keep].double(), values[keep].double()
    if r.numel() < 2:
        return float("nan")
    var_r = r.var()
    if var_r == 0:
        return float("nan")
    return float(1 - (r - v).var() / var_r)


class Critic:
    """The value model and its AdamW optimiser (constant learning rate ``critic.lr``)."""

    def __init__(self, model: ValueModel, critic_cfg, trainer_cfg) -> None:
        self.model = model
        self.cfg = critic_cfg
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=critic_cfg.lr,
                                           betas=trainer_cfg.adam_betas, weight_decay=trainer_cfg.weight_decay)
        self.max_grad_norm = trainer_cfg.max_grad_norm
        self.micro_batch_size = trainer_cfg.micro_batch_size
        self.updates = 0  # critic steps done (counts the warm-up)

    @property
    def warming_up(self) -> bool:
        """True during the first ``critic.warmup_steps`` steps: only the critic trains."""
        return self.updates < self.cfg.warmup_steps

    @torch.no_grad()
    def values(self, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
               completion_mask: Tensor) -> Tensor:
        """V for every completion token, (N, Lc) float32 on the CPU, 0 on padding; micro-batched."""
        self.model.eval()
        out = torch.zeros(completion_ids.shape, dtype=torch.float32)
        step = self.micro_batch_size or max(1, completion_ids.shape[0])
        for start in range(0, completion_ids.shape[0], step):
            rows = torch.arange(start, min(start + step, completion_ids.shape[0]))
            p_ids, p_mask, c_ids, c_mask, width = _trimmed(prompt_ids, prompt_mask, completion_ids, completion_mask, rows)
            out[rows, :width] = self.model(p_ids, p_mask, c_ids, c_mask).cpu()
        return torch.where(completion_mask.bool(), out, torch.zeros_like(out))

    def update(self, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor,
               loss_mask: Tensor, old_values: Tensor, returns: Tensor) -> dict[str, float]:
        """One optimiser step of the clipped value loss on the batch: gradient accumulation over
        micro-batches, token mean over the global batch's ``loss_mask`` tokens (the policy's loss
        mask: tokens the model chose), attention over ``completion_mask``; a non-finite gradient
        skips the step. All masks (N, Lc)."""
        self.model.train()
        total_tokens = distributed.sum_across_ranks(loss_mask.sum()).clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"value_loss": 0.0, "value_clip_fraction": 0.0}
        lengths = prompt_mask.sum(1) + completion_mask.sum(1)
        tokens_here = max(1, int(loss_mask.sum()))
        for rows in micro_batches(lengths, self.micro_batch_size) if loss_mask.shape[0] else []:
            p_ids, p_mask, c_ids, c_mask, width = _trimmed(prompt_ids, prompt_mask, completion_ids, completion_mask, rows)
            values = self.model(p_ids, p_mask, c_ids, c_mask)  # (n, width)
            device = values.device
            chunk_mask = loss_mask[rows, :width].to(device)
            loss, metrics = value_loss(values, old_values[rows, :width].to(device), returns[rows, :width].to(device),
                                       chunk_mask, self.cfg.clip_range, num_tokens=total_tokens.to(device))
            loss.backward()
            sums["value_loss"] += metrics["value_loss"]
            sums["value_clip_fraction"] += metrics["value_clip_fraction"] * int(chunk_mask.sum()) / tokens_here
        for param in self.model.parameters():  # a rank with no rows still joins the all-reduce
            if param.requires_grad and param.grad is None:
                param.grad = torch.zeros_like(param)
        distributed.all_reduce_gradients(self.model)
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad],
            self.max_grad_norm if self.max_grad_norm > 0 else float("inf"))
        finite = bool(torch.isfinite(grad_norm))
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        sums["grad_norm"] = float(grad_norm)
        sums["nonfinite_skipped"] = 0.0 if finite else 1.0
        return sums

    def trainable_weights(self) -> dict[str, Tensor]:
        """The weights a checkpoint keeps: all of them, or only the adapter and the value head
        under LoRA (the frozen base comes from its model again)."""
        weights = self.model.state_dict()
        if any(not p.requires_grad for p in self.model.parameters()):
            trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
            weights = {k: v for k, v in weights.items() if k in trainable}
        return weights

    def save(self, directory: Path) -> None:
        """Write ``directory/``: ``model.safetensors`` (:meth:`trainable_weights`), ``optimizer.pt``
        (AdamW state: tensors and plain values, read back with ``weights_only``) and
        ``critic_state.json`` (the update count, which decides the warm-up)."""
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        # cloned: safetensors refuses tensors that share storage (views of one buffer)
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in self.trainable_weights().items()},
                  str(directory / "model.safetensors"))
        torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")
        (directory / "critic_state.json").write_text(json.dumps({"updates": self.updates}))

    def load(self, directory: Path) -> None:
        """Restore what :meth:`save` wrote; a critic of another shape is a one-line ``ValueError``."""
        from safetensors.torch import load_file

        weights = load_file(str(directory / "model.safetensors"))
        result = self.model.load_state_dict(weights, strict=False)
        trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
        missing = trainable & set(result.missing_keys)
        if missing or result.unexpected_keys:
            raise ValueError(f"{directory}: the checkpoint's critic does not match this critic (missing "
                             f"{sorted(missing)[:3]}, unexpected {list(result.unexpected_keys)[:3]})")
        self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True))
        self.updates = int(json.loads((directory / "critic_state.json").read_text())["updates"])


def _trimmed(prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor, completion_mask: Tensor,
             rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """The rows' tensors without all-padding columns (left of the longest prompt, right of the
    longest completion); returns the kept completion width too."""
    p_mask, c_mask = prompt_mask[rows], completion_mask[rows]
    prompt_width = max(1, int(p_mask.sum(1).max()))
    nonzero = c_mask.any(0).nonzero()
    width = int(nonzero.max()) + 1 if nonzero.numel() else 1
    return (prompt_ids[rows][:, -prompt_width:], p_mask[:, -prompt_width:], completion_ids[rows][:, :width],
            c_mask[:, :width], width)


def build_critic(cfg, log=print) -> Critic:
    """The critic of a run, every rank starting from rank 0's weights."""
    model = load_value_model(cfg.critic, cfg.model, log=log)
    distributed.broadcast_parameters(model)
    return Critic(model, cfg.critic, cfg.trainer)


def critic_advantages(token_rewards: Tensor, values: Tensor, mask: Tensor, advantage_cfg) -> tuple[Tensor, Tensor]:
    """GAE advantages and value targets, the advantages whitened over the global batch
    (``advantage.whiten``, on by default as in verl). All (N, T)."""
    advantages, returns = gae(token_rewards, values, mask, gamma=advantage_cfg.gamma, lam=advantage_cfg.lam)
    if advantage_cfg.whiten:
        advantages = masked_whiten(advantages, mask, sum_across=distributed.sum_across_ranks)
    return advantages, returns


def critic_step(critic: Critic, batch, loss_mask: Tensor, values: Tensor, returns: Tensor,
                epochs: int) -> dict[str, float]:
    """``epochs`` critic updates on a sampled batch (verl runs the critic for as many PPO epochs as
    the actor) and the ``critic/*`` metrics: the last epoch's ``value_loss`` and
    ``value_clip_fraction``; ``explained_variance``, ``values_mean`` and ``returns_mean`` of the
    values the advantages were computed with; ``warmup`` 1 while only the critic trains."""
    metrics = {"critic/warmup": 1.0 if critic.warming_up else 0.0,
               "critic/values_mean": float(masked_mean(values, loss_mask)),
               "critic/returns_mean": float(masked_mean(returns, loss_mask)),
               "critic/explained_variance": explained_variance(values, returns, loss_mask)}
    for _ in range(epochs):
        updated = critic.update(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask,
                                loss_mask, values, returns)
    metrics.update({f"critic/{k}": v for k, v in updated.items()})
    return metrics


def ppo_advantages(critic: Critic, cfg, batch, rewards: Tensor, loss_mask: Tensor, ref_logprobs: Tensor | None,
                   step_scores=None, step_ends=None) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's advantages for a sampled batch: the critic's values, the token rewards (the outcome
    ``rewards`` (N,) on the last model token unless ``advantage.mode`` is process; with step scores
    [N][K_i] and their end tokens, each step's penalty on its last token; ``-beta * k1`` per token
    with ``loss.kl_placement: reward``), then GAE over ``loss_mask`` (the model's own tokens: tool
    observations are skipped as if absent) and whitening. Returns ``(values, advantages,
    returns)``, (N, Lc) each."""
    values = critic.values(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.completion_mask)
    token_rewards = critic_token_rewards(None if cfg.advantage.mode == "process" else rewards, loss_mask,
                                         step_scores=step_scores, step_ends=step_ends,
                                         step_weight=cfg.advantage.process_weight)  # (N, Lc)
    if ref_logprobs is not None and cfg.loss.kl_placement == "reward":
        token_rewards += kl_token_penalty(batch.sampler_logprobs, ref_logprobs, loss_mask, cfg.loss.beta)
    advantages, returns = critic_advantages(token_rewards, values, loss_mask, cfg.advantage)
    return values, advantages, returns
