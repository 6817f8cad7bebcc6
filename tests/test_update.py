"""The update stage on a real tiny model: direction of one GRPO step, micro-batching, masking."""

import copy

import torch

from verifrl.config import LossConfig
from verifrl.rollout import generate
from verifrl.update import TrainBatch, completion_logprobs, update_policy


def _batch(model, tokenizer):
    torch.manual_seed(1)
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Compute 12 - 5.\nSolution:\n"]
    return generate(model, tokenizer, prompts, group_size=2, max_new_tokens=10, temperature=1.0)


def _sequence_logprob(model, rollout):
    logp, _ = completion_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                  rollout.completion_mask)
    return (logp * rollout.completion_mask).sum(1).detach()  # (N,)


def _step(model, rollout, advantages, micro_batch_size=0, loss_type="grpo"):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    adv = advantages[:, None] * rollout.completion_mask  # (N, T)
    batch = TrainBatch(rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask,
                       rollout.sampler_logprobs, adv.float())
    return update_policy(model, optimizer, batch, LossConfig(type=loss_type, beta=0.0), temperature=1.0,
                         micro_batch_size=micro_batch_size, max_grad_norm=0.0, max_completion_length=10)


def test_one_step_raises_rewarded_and_lowers_penalised_completions(tiny_model, tiny_tokenizer):
    rollout = _batch(tiny_model, tiny_tokenizer)
    before = _sequence_logprob(tiny_model, rollout)
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    metrics = _step(tiny_model, rollout, advantages)
    after = _sequence_logprob(tiny_model, rollout)
    assert (after[advantages > 0] > before[advantages > 0]).all()
    assert (after[advantages < 0] < before[advantages < 0]).all()
    assert metrics["grad_norm"] > 0


def test_zero_advantages_leave_the_policy_unchanged(tiny_model, tiny_tokenizer):
    rollout = _batch(tiny_model, tiny_tokenizer)
    state = copy.deepcopy(tiny_model.state_dict())
    _step(tiny_model, rollout, torch.zeros(4))
    for name, value in tiny_model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_micro_batching_gives_the_full_batch_gradient_step(tiny_model, tiny_tokenizer):
    rollout = _batch(tiny_model, tiny_tokenizer)
    twin = copy.deepcopy(tiny_model)
    advantages = torch.tensor([0.5, -1.0, 2.0, -0.3])
    for loss_type in ("grpo", "dapo", "dr_grpo"):
        _step(tiny_model, rollout, advantages, micro_batch_size=0, loss_type=loss_type)
        _step(twin, rollout, advantages, micro_batch_size=1, loss_type=loss_type)
        for (name, a), b in zip(tiny_model.state_dict().items(), twin.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-6), (loss_type, name)


def test_logprobs_and_entropy_match_a_full_log_softmax(tiny_model, tiny_tokenizer, monkeypatch):
    """Only the completion's logits are computed and no log_softmax tensor is kept: same numbers
    as the textbook full-sequence log_softmax, with or without ``logits_to_keep``."""
    import verifrl.update as update

    rollout = _batch(tiny_model, tiny_tokenizer)
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    attention = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    logits = tiny_model(input_ids=ids, attention_mask=attention,
                        position_ids=(attention.cumsum(1) - 1).clamp(min=0)).logits
    width = rollout.prompt_ids.shape[1]
    log_probs = torch.log_softmax(logits[:, width - 1 : -1] / 0.7, dim=-1)  # (N, Lc, V)
    expected = log_probs.gather(2, rollout.completion_ids[..., None]).squeeze(2)
    expected_entropy = -(log_probs.exp() * log_probs).sum(-1)
    for accepts in (True, False):
        monkeypatch.setattr(update, "forward_accepts", lambda model, name, accepts=accepts: accepts)
        logp, entropy = completion_logprobs(tiny_model, rollout.prompt_ids, rollout.prompt_mask,
                                            rollout.completion_ids, rollout.completion_mask, 0.7, with_entropy=True)
        assert torch.allclose(logp, expected, atol=1e-5) and torch.allclose(entropy, expected_entropy, atol=1e-5)


def test_a_nonfinite_gradient_skips_the_step_and_leaves_the_weights(tiny_model, tiny_tokenizer):
    rollout = _batch(tiny_model, tiny_tokenizer)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=0.1)
    adv = torch.full(rollout.completion_ids.shape, float("nan"))
    batch = TrainBatch(rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, rollout.completion_mask,
                       rollout.sampler_logprobs, adv)
    metrics = update_policy(tiny_model, optimizer, batch, LossConfig(type="dapo"), temperature=1.0,
                            micro_batch_size=0, max_grad_norm=1.0, max_completion_length=10)
    assert metrics["update/nonfinite_skipped"] == 1.0
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
    assert not optimizer.state  # Adam's moments were not fed the NaN either
