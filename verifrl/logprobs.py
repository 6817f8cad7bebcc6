"""Token log-probs and entropy from logits, without (N, L, V)-sized float32 intermediates.

Place in the data flow: used by the update (and the reference forward) between the model's logits
and the loss.

With a 150k-token vocabulary the logits of a GRPO batch are gigabytes; the textbook
``log_softmax(logits.float() / T).gather(token)`` keeps a float32 copy and a log_softmax output of
that size for the backward, and the backward makes two or three more. Here the float32 math is done
a few rows at a time, in the forward and again in the backward, so the only full-size tensors are
the logits themselves and their gradient, in the logits' own dtype. Same values as the textbook
formula (per-row reductions are unchanged; only rounding of the gradient's last bit may differ).
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 24
"""float32 elements of the temporaries per chunk (64 MiB); at least one row per chunk."""


def _row_chunks(logits: torch.Tensor, max_elements: int) -> list[slice]:
    per_row = max(1, logits[0].numel()) if logits.shape[0] else 1
    rows = max(1, max_elements // per_row)
    return [slice(start, start + rows) for start in range(0, logits.shape[0], rows)]


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T in float32 (a new tensor unless already float32 with T = 1: never written to)."""
    logits = logits.float()
    return logits if temperature == 1.0 else logits / temperature


class _TokenLogprobs(torch.autograd.Function):
    """(logits (N, L, V), ids (N, L)) -> (log p(ids), log Z) at temperature T, both (N, L) float32."""

    @staticmethod
    def forward(ctx, logits, ids, temperature, max_elements):
        token_logprobs = torch.empty(ids.shape, dtype=torch.float32, device=logits.device)
        log_normalizer = torch.empty(ids.shape, dtype=torch.float32, device=logits.device)
        for rows in _row_chunks(logits, max_elements):
            scaled = _scaled(logits[rows], temperature)  # (n, L, V) float32
            log_normalizer[rows] = torch.logsumexp(scaled, dim=-1)
            token_logprobs[rows] = scaled.gather(2, ids[rows, :, None]).squeeze(2) - log_normalizer[rows]
        ctx.save_for_backward(logits, ids, log_normalizer)
        ctx.temperature, ctx.max_elements = temperature, max_elements
        ctx.mark_non_differentiable(log_normalizer)
        return token_logprobs, log_normalizer

    @staticmethod
    def backward(ctx, grad_token_logprobs, _grad_log_normalizer):
        logits, ids, log_normalizer = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        for rows in _row_chunks(logits, ctx.max_elements):
            # d/dx_v [x_token - logsumexp(x)] = 1[v = token] - softmax(x)_v, and x = logits / T
            grad = (_scaled(logits[rows], ctx.temperature) - log_normalizer[rows, :, None]).exp_()  # softmax
            grad.mul_(-grad_token_logprobs[rows, :, None])
            grad.scatter_add_(2, ids[rows, :, None], grad_token_logprobs[rows, :, None])
            grad_logits[rows] = grad if ctx.temperature == 1.0 else grad.div_(ctx.temperature)
        return grad_logits, None, None, None


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0,
                   max_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """log softmax(logits / T) at ``ids`` and the log normaliser log Z, each (N, L) float32.

    Args:
        logits: (N, L, V) in any float dtype; gradients flow back to it in that dtype.
        ids: (N, L) token ids to score.
    """
    return _TokenLogprobs.apply(logits, ids, float(temperature), max_elements)


@torch.no_grad()
def entropy(logits: torch.Tensor, log_normalizer: torch.Tensor, temperature: float = 1.0,
            max_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """-sum_v p log p of softmax(logits / T) per position, (N, L, V) -> (N, L) float32, given log Z."""
    out = torch.empty(log_normalizer.shape, dtype=torch.float32, device=logits.device)
    for rows in _row_chunks(logits, max_elements):
        log_probs = _scaled(logits[rows], temperature) - log_normalizer[rows, :, None]
        out[rows] = -(log_probs.exp() * log_probs).sum(-1)
    return out
