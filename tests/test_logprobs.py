"""Chunked token log-probs and entropy: the textbook log_softmax numbers and gradients."""

import torch

from verifrl.logprobs import entropy, token_logprobs


def _textbook(logits, ids, temperature):
    log_probs = torch.log_softmax(logits.double() / temperature, dim=-1)
    return log_probs.gather(2, ids[..., None]).squeeze(2), -(log_probs.exp() * log_probs).sum(-1)


def test_values_and_gradient_match_log_softmax_for_any_chunking():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11) * 3
    ids = torch.randint(0, 11, (3, 5))
    upstream = torch.randn(3, 5)
    leaf = logits.double().requires_grad_()
    expected, expected_entropy = _textbook(leaf, ids, 0.7)
    (expected * upstream.double()).sum().backward()
    for max_elements in (1, 55, 10**9):  # one row per chunk, exactly one row, everything at once
        x = logits.clone().requires_grad_()
        logp, log_z = token_logprobs(x, ids, 0.7, max_elements)
        (logp * upstream).sum().backward()
        assert torch.allclose(logp.double(), expected.detach(), atol=1e-5)
        assert torch.allclose(x.grad.double(), leaf.grad, atol=1e-5)
        assert torch.allclose(entropy(x, log_z, 0.7, max_elements).double(), expected_entropy.detach(), atol=1e-5)


def test_hand_computed_two_token_vocabulary():
    # logits (0, ln 3) at T=1: p = (1/4, 3/4); token 1 -> log 3/4; d/dlogits = (0 - 1/4, 1 - 3/4)
    x = torch.tensor([[[0.0, float(torch.log(torch.tensor(3.0)))]]], requires_grad=True)
    logp, log_z = token_logprobs(x, torch.tensor([[1]]))
    logp.sum().backward()
    assert torch.allclose(logp, torch.log(torch.tensor([[0.75]])))
    assert torch.allclose(log_z, torch.log(torch.tensor([[4.0]])))
    assert torch.allclose(x.grad, torch.tensor([[[-0.25, 0.25]]]))
    h = -(0.25 * torch.log(torch.tensor(0.25)) + 0.75 * torch.log(torch.tensor(0.75)))
    assert torch.allclose(entropy(x, log_z), h.view(1, 1))


def test_bf16_logits_get_a_bf16_gradient_and_float32_logprobs():
    torch.manual_seed(1)
    x = (torch.randn(2, 4, 50) * 2).bfloat16().requires_grad_()
    ids = torch.randint(0, 50, (2, 4))
    logp, _ = token_logprobs(x, ids, 1.3)
    logp.sum().backward()
    assert logp.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
    expected, _ = _textbook(x.detach().float(), ids, 1.3)
    assert torch.allclose(logp.double(), expected, atol=1e-5)  # float32 math on the bf16 values
