"""Policy losses: hand-computed values per option, masking with garbage, KL gradient facts."""

from __future__ import annotations

import pytest
import torch

from verifrl.losses import (
    LOSS_AGGREGATIONS,
    POLICY_OBJECTIVES,
    kl_estimate,
    masked_mean,
    policy_loss,
)

NAN, INF = float("nan"), float("inf")


def _batch(garbage: float = NAN):
    """B=2, T=3. Row 0: ratios [1.5, 0.9], A=+1, position 2 is padding (garbage).
    Row 1: ratios [0.5, 1.0, 1.3], A=-1."""
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.5, 0.9, 1.0], [0.5, 1.0, 1.3]]))
    logp[0, 2] = garbage
    old[0, 2] = garbage
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv = torch.tensor([1.0, -1.0])
    return logp.requires_grad_(), old, adv, mask


# Per-token losses with eps = 0.2 (clip range [0.8, 1.2]), -min(r*A, clip(r)*A):
#   row 0 (A=+1): r=1.5 -> min(1.5, 1.2) = 1.2 -> -1.2 ; r=0.9 -> -0.9        sum -2.1, mean -1.05
#   row 1 (A=-1): r=0.5 -> min(-.5, -.8) = -.8 -> .8 ; r=1 -> 1 ; r=1.3 -> min(-1.3, -1.2) -> 1.3
#                                                                              sum 3.1, mean 1.033333
@pytest.mark.parametrize(
    "loss_type, kwargs, expected",
    [
        ("grpo", {}, (-1.05 + 3.1 / 3) / 2),  # -0.0083333
        ("bnpo", {}, (-2.1 + 3.1) / 5),  # 0.2
        ("dr_grpo", {"max_completion_length": 4}, 1.0 / (2 * 4)),  # 0.125
        ("dapo", {}, 1.0 / 5),  # one process, no accumulation: == bnpo
        ("dapo", {"num_items_in_batch": 10}, 1.0 / 10),  # global token count under accumulation
    ],
)
def test_aggregations_hand_computed(loss_type, kwargs, expected):
    logp, old, adv, mask = _batch()
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type=loss_type, **kwargs)
    assert abs(loss.item() - expected) < 1e-6
    assert abs(metrics["pg_loss"] - expected) < 1e-6
    # clipped: row 0 t0 (r=1.5 > 1.2, A>0) high; row 1 t0 (r=.5 < .8, A<0) low;
    # row 1 t2 (r=1.3 > 1.2 but A<0) is NOT clipped: the unclipped term is the one chosen
    assert metrics["clip_frac"] == pytest.approx(2 / 5)
    assert metrics["clip_frac_low"] == pytest.approx(1 / 5)
    assert metrics["clip_frac_high"] == pytest.approx(1 / 5)
    assert metrics["ratio_mean"] == pytest.approx((1.5 + 0.9 + 0.5 + 1.0 + 1.3) / 5)
    assert "kl" not in metrics


def test_epsilon_high_clip_higher():
    # eps_high = 0.4: row 0 t0 (r=1.5) now clipped at 1.4 -> -1.4 ; bnpo = (-2.3 + 3.1) / 5 = 0.16
    logp, old, adv, mask = _batch()
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="bnpo", epsilon_high=0.4)
    assert loss.item() == pytest.approx(0.16, abs=1e-6)
    assert metrics["clip_frac_high"] == pytest.approx(0.2) and metrics["clip_frac_low"] == pytest.approx(0.2)
    # eps_high = 0.6: r=1.5 < 1.6 unclipped -> -1.5 ; bnpo = (-2.4 + 3.1) / 5 = 0.14
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="bnpo", epsilon_high=0.6)
    assert loss.item() == pytest.approx(0.14, abs=1e-6)
    assert metrics["clip_frac_high"] == 0.0
    # eps_low = 0.6: row 1 t0 (r=.5 >= .4) no longer clipped -> .5 ; bnpo = (-2.1 + .5 + 1 + 1.3) / 5 = 0.14
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="bnpo", epsilon_low=0.6, epsilon_high=0.2)
    assert loss.item() == pytest.approx(0.14, abs=1e-6)
    assert metrics["clip_frac_low"] == 0.0


def test_dual_clip_delta():
    # delta = 1.25 caps the unclipped ratio: row 1 t2 (A<0, r=1.3) -> min(-1.25, -1.2) = -1.25 -> 1.25;
    # row 0 t0 (A>0) min(1.25, 1.2) stays 1.2. bnpo = (-2.1 + .8 + 1 + 1.25) / 5 = 0.19
    logp, old, adv, mask = _batch()
    loss, metrics = policy_loss(logp, old, adv, mask, loss_type="bnpo", delta=1.25)
    assert loss.item() == pytest.approx(0.19, abs=1e-6)
    assert metrics["dual_clip_frac"] == pytest.approx(1 / 5)
    loss.backward()
    assert logp.grad[1, 2] == 0.0  # capped: constant, no gradient


def test_sequence_level_importance_gspo():
    # row 0: exp(mean(log 1.5, log .9)) = sqrt(1.35) = 1.1618950, A=+1, inside [.8, 1.2] -> -1.1618950 per token
    # row 1: (.5 * 1 * 1.3)^(1/3) = 0.8662391, A=-1 -> +0.8662391 per token
    # grpo: (-1.1618950 + 0.8662391) / 2 = -0.1478279
    logp, old, adv, mask = _batch()
    loss, metrics = policy_loss(logp, old, adv, mask, importance_level="sequence")
    assert loss.item() == pytest.approx(-0.1478279, abs=1e-6)
    assert metrics["ratio_mean"] == pytest.approx((2 * 1.1618950 + 3 * 0.8662391) / 5, abs=1e-6)
    assert metrics["clip_frac"] == 0.0


def test_padding_garbage_never_matters():
    clean_logp, old, adv, mask = _batch(garbage=0.0)
    loss_clean, m_clean = policy_loss(clean_logp, old, adv, mask, loss_type="grpo", beta=0.1,
                                      ref_logp=torch.zeros(2, 3), kl_estimator="k3_ratio")
    loss_clean.backward()
    for garbage in (NAN, INF, -INF):
        logp, old_g, _, _ = _batch(garbage=garbage)
        ref = torch.zeros(2, 3)
        ref[0, 2] = garbage
        adv_tok = torch.tensor([[1.0, 1.0, garbage], [-1.0, -1.0, -1.0]])  # (B, T) advantages too
        loss, metrics = policy_loss(logp, old_g, adv_tok, mask, loss_type="grpo", beta=0.1, ref_logp=ref,
                                    kl_estimator="k3_ratio")
        loss.backward()
        assert torch.isfinite(loss) and loss.item() == pytest.approx(loss_clean.item(), abs=1e-7)
        assert torch.isfinite(logp.grad).all() and logp.grad[0, 2] == 0.0
        torch.testing.assert_close(logp.grad, clean_logp.grad)
        assert metrics == pytest.approx(m_clean)


def test_ratio_one_reduces_to_vanilla_policy_gradient():
    torch.manual_seed(0)
    logp = torch.randn(3, 4).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    adv = torch.tensor([0.7, -1.2, 2.0])
    loss, metrics = policy_loss(logp, logp.detach(), adv, mask, loss_type="grpo")
    loss.backward()
    # d/dlogp of -(1/B) sum_b (1/|o_b|) sum_t A_b * logp_bt  ==  -A_b / (B * |o_b|)
    expected = -adv[:, None] / (3 * mask.sum(1, keepdim=True)) * mask
    torch.testing.assert_close(logp.grad, expected)
    assert metrics["clip_frac"] == 0.0 and metrics["ratio_mean"] == pytest.approx(1.0)


def test_kl_in_loss_values_per_estimator():
    # one token, on-policy: logp = log .5, ref = log .25 -> log r = log .5 = -0.6931472, r = .5
    # k1 = 0.6931472 ; k2 = .5 * 0.4804530 = 0.2402265 ; k3 = (.5 - 1) + 0.6931472 = 0.1931472
    logp = torch.log(torch.tensor([[0.5]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.25]]))
    mask = torch.ones(1, 1)
    adv = torch.tensor([0.0])  # isolate the KL term
    for est, value in (("k1", 0.6931472), ("k2", 0.2402265), ("k3", 0.1931472), ("k3_ratio", 0.1931472)):
        loss, metrics = policy_loss(logp, logp.detach(), adv, mask, beta=0.1, ref_logp=ref, kl_estimator=est)
        assert loss.item() == pytest.approx(0.1 * value, abs=1e-6)
        assert metrics["kl"] == pytest.approx(value, abs=1e-6)
        assert metrics["pg_loss"] == 0.0
    # off-policy k3_ratio: old = log .4 -> weight pi/old = .5/.4 = 1.25 -> 0.1931472 * 1.25 = 0.2414340
    loss, metrics = policy_loss(logp, torch.log(torch.tensor([[0.4]])), adv, mask, beta=1.0, ref_logp=ref,
                                kl_estimator="k3_ratio")
    assert loss.item() == pytest.approx(0.2414340, abs=1e-6)


def test_beta_zero_never_touches_ref():
    logp, old, adv, mask = _batch()
    loss_a, m_a = policy_loss(logp, old, adv, mask, beta=0.0, ref_logp=None)
    loss_b, m_b = policy_loss(logp, old, adv, mask, beta=0.0, ref_logp=torch.full((2, 3), NAN))
    assert loss_a.item() == loss_b.item() and m_a == m_b


def _categorical(seed: int = 0, vocab: int = 5):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(vocab, generator=g, dtype=torch.float64).requires_grad_()
    ref_logp = torch.log_softmax(torch.randn(vocab, generator=g, dtype=torch.float64), -1)
    return theta, ref_logp


@pytest.mark.parametrize("estimator, target", [("k1", "zero"), ("k2", "reverse"), ("k3", "forward"),
                                               ("k3_ratio", "reverse")])
def test_kl_estimator_expected_gradient_by_enumeration(estimator, target):
    """E_{x~pi}[d k(x)] over every token x of a small categorical, with the sample x held fixed."""
    theta, ref_logp = _categorical()
    logp = torch.log_softmax(theta, -1)
    probs = logp.exp().detach()
    surrogate = (probs * kl_estimate(logp, ref_logp, estimator)).sum()  # exact expectation over x
    (grad,) = torch.autograd.grad(surrogate, theta)

    theta2 = theta.detach().clone().requires_grad_()
    logp2 = torch.log_softmax(theta2, -1)
    if target == "reverse":  # KL(pi || ref)
        kl = (logp2.exp() * (logp2 - ref_logp)).sum()
    elif target == "forward":  # KL(ref || pi)
        kl = (ref_logp.exp() * (ref_logp - logp2)).sum()
    else:
        kl = 0.0 * theta2.sum()
    (expected,) = torch.autograd.grad(kl, theta2)
    torch.testing.assert_close(grad, expected)
    if target == "forward":  # and it really differs from the reverse-KL gradient
        logp3 = torch.log_softmax(theta2, -1)
        reverse = torch.autograd.grad((logp3.exp() * (logp3 - ref_logp)).sum(), theta2)[0]
        assert (grad - reverse).abs().max() > 1e-3


def test_kl_estimator_values_unbiased_by_enumeration():
    theta, ref_logp = _categorical(1)
    logp = torch.log_softmax(theta, -1).detach()
    probs = logp.exp()
    true_kl = float((probs * (logp - ref_logp)).sum())
    for est in ("k1", "k3", "k3_ratio"):
        assert float((probs * kl_estimate(logp, ref_logp, est)).sum()) == pytest.approx(true_kl, rel=1e-9)
    assert float((probs * kl_estimate(logp, ref_logp, "k2")).sum()) != pytest.approx(true_kl, rel=1e-3)
    assert (kl_estimate(logp, ref_logp, "k3") >= 0).all()


def test_policy_loss_k3_ratio_gradient_matches_reverse_kl_on_policy():
    # policy_loss's KL term with k3_ratio, one single-token row per vocabulary item, averaged with
    # weights pi(x) (the exact on-policy expectation), has the gradient of KL(pi || ref)
    theta, ref_logp = _categorical(2)
    logp = torch.log_softmax(theta, -1)
    probs = logp.exp().detach()
    vocab = logp.shape[0]
    per_row, _ = zip(*[
        policy_loss(logp[x].view(1, 1), logp[x].detach().view(1, 1), torch.zeros(1), torch.ones(1, 1),
                    beta=1.0, ref_logp=ref_logp[x].view(1, 1), kl_estimator="k3_ratio")
        for x in range(vocab)
    ])
    (grad,) = torch.autograd.grad(sum(p * l for p, l in zip(probs, per_row)), theta)
    logp = torch.log_softmax(theta, -1)
    (expected,) = torch.autograd.grad((logp.exp() * (logp - ref_logp)).sum(), theta)
    torch.testing.assert_close(grad, expected)


def test_validation_errors():
    logp, old, adv, mask = _batch()
    with pytest.raises(ValueError, match="bnpo, dapo, dr_grpo, grpo"):
        policy_loss(logp, old, adv, mask, loss_type="ppo")
    with pytest.raises(ValueError, match=r"unknown policy objective 'ppo_clp' \(did you mean 'ppo_clip'\?\)"):
        policy_loss(logp, old, adv, mask, objective="ppo_clp")
    with pytest.raises(ValueError, match="max_completion_length"):
        policy_loss(logp, old, adv, mask, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="needs ref_logp"):
        policy_loss(logp, old, adv, mask, beta=0.1)
    with pytest.raises(ValueError, match="k1, k2, k3, k3_ratio"):
        policy_loss(logp, old, adv, mask, beta=0.1, ref_logp=old, kl_estimator="k4")
    with pytest.raises(ValueError, match="sequence, token"):
        policy_loss(logp, old, adv, mask, importance_level="group")
    assert set(LOSS_AGGREGATIONS) == {"grpo", "bnpo", "dr_grpo", "dapo"}


def test_masked_mean():
    x = torch.tensor([[1.0, NAN, 3.0], [INF, 2.0, 4.0]])
    mask = torch.tensor([[1, 0, 1], [0, 1, 1]])
    assert float(masked_mean(x, mask)) == pytest.approx(2.5)  # (1 + 3 + 2 + 4) / 4
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([2.0, 3.0]))
    assert float(masked_mean(x, torch.zeros(2, 3))) == 0.0


def test_a_new_policy_objective_is_one_decorated_function():
    """Registering an objective makes it usable by name; REINFORCE (-ratio * A, no clip) on the
    hand batch: ratio 1 everywhere, so the loss is minus the mean advantage over active tokens."""
    @POLICY_OBJECTIVES.register("test_reinforce")
    def _reinforce(ratio, log_ratio, adv, *, epsilon_low, epsilon_high, delta, **_):
        return -ratio * adv, {}

    try:
        logp = torch.zeros(2, 2)
        mask = torch.tensor([[1, 1], [1, 0]])
        loss, metrics = policy_loss(logp, logp, torch.tensor([1.0, -2.0]), mask, loss_type="bnpo",
                                    objective="test_reinforce")
        assert float(loss) == pytest.approx(-(1 + 1 - 2) / 3)
        assert "clip_frac" not in metrics and metrics["ratio_mean"] == 1.0
    finally:
        del POLICY_OBJECTIVES["test_reinforce"]
