"""Advantage estimators: hand-computed vectors, invariants and the trainer entry point."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verifrl.advantages import (
    ADVANTAGE_ESTIMATORS,
    group_advantages,
    process_supervision_advantages,
    register_advantage_estimator,
    reinforce_pp_advantages,
    rloo_advantages,
    token_advantages,
)

# ---------------------------------------------------------------- outcome estimators


def test_group_scale_sample_std_with_eps():
    # r = [1,0,0,1]: mean .5, centred ±.5, sample std sqrt((4 * .25) / 3) = 0.5773503
    # A = .5 / (0.5773503 + 1e-4) = 0.8658750 ; with eps = 0: .5 / 0.5773503 = 0.8660254
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    expected = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    torch.testing.assert_close(group_advantages(r), 0.5 / (math.sqrt(1 / 3) + 1e-4) * expected)
    torch.testing.assert_close(group_advantages(r, eps=0.0), 0.8660254 * expected)
    assert abs(float(group_advantages(r)[0, 0]) - 0.865875) < 1e-6


def test_group_batch_and_none_scales():
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # group: row 0 centred ±.5, std sqrt(.5) = .7071068 -> .5 / .7072068 = .7070068; row 1 all equal -> 0
    torch.testing.assert_close(group_advantages(r, "group"), torch.tensor([[0.7070068, -0.7070068], [0.0, 0.0]]))
    # batch: mean per group, std over [1,0,1,1]: mean .75, sum sq dev .75, /3 = .25 -> std .5
    # A = ±.5 / (.5 + 1e-4) = ±0.9998000
    torch.testing.assert_close(group_advantages(r, "batch"), torch.tensor([[0.9998000, -0.9998000], [0.0, 0.0]]))
    # none (Dr. GRPO): centred only
    torch.testing.assert_close(group_advantages(r, "none"), torch.tensor([[0.5, -0.5], [0.0, 0.0]]))


def test_all_equal_group_is_exactly_zero_and_single_completion_is_zero():
    r = torch.tensor([[0.7, 0.7, 0.7]])
    for scale in ("group", "batch", "none"):
        assert torch.equal(group_advantages(r, scale), torch.zeros(1, 3))
    assert torch.equal(group_advantages(torch.tensor([[1.0], [0.0]])), torch.zeros(2, 1))
    assert torch.equal(rloo_advantages(torch.tensor([[1.0]])), torch.zeros(1, 1))
    assert torch.equal(reinforce_pp_advantages(torch.tensor([[1.0]])), torch.zeros(1, 1))


def test_rloo_leave_one_out():
    # r = [1,0,0]: A0 = 1 - (0+0)/2 = 1 ; A1 = 0 - (1+0)/2 = -.5 ; A2 = -.5
    torch.testing.assert_close(rloo_advantages(torch.tensor([[1.0, 0.0, 0.0]])), torch.tensor([[1.0, -0.5, -0.5]]))


def test_reinforce_pp_batch_std_of_centred_rewards():
    # centred [[.5,-.5],[0,0]]; std over the 4 centred values: mean 0, sum sq .5, /3 -> sqrt(1/6) = .4082483
    # A = ±.5 / (.4082483 + 1e-4) = ±1.2244449
    out = reinforce_pp_advantages(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.2244449, -1.2244449], [0.0, 0.0]]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(-5, 5).map(lambda x: round(x, 3)), min_size=3, max_size=3), min_size=1, max_size=4))
def test_group_advantages_are_centred_and_unit_scale(rows):
    r = torch.tensor(rows)
    a = group_advantages(r, eps=0.0)
    spread = r.max(1).values - r.min(1).values
    assert torch.allclose(a.sum(1), torch.zeros(len(rows)), atol=1e-4)
    for i in range(len(rows)):
        if spread[i] > 1e-3:  # a nonconstant group ends with sample std 1
            assert abs(float(a[i].std()) - 1.0) < 1e-3


def test_registry_and_custom_estimator():
    assert {"grpo", "rloo", "reinforce_pp"} <= set(ADVANTAGE_ESTIMATORS)
    with pytest.raises(ValueError, match="already registered"):
        register_advantage_estimator("grpo")(lambda r, **_: r)

    @register_advantage_estimator("test_double")
    def _double(rewards, *, scale, eps):
        return 2 * rewards

    try:
        out = token_advantages(torch.tensor([[1.0, 2.0]]), torch.tensor([[1, 2]]), 2, estimator="test_double")
        torch.testing.assert_close(out, torch.tensor([[2.0, 0.0], [4.0, 4.0]]))
    finally:
        del ADVANTAGE_ESTIMATORS["test_double"]


# ---------------------------------------------------------------- process supervision


def _hand_group():
    # 8 steps in the pool: 4 rewards of 1, 4 of 0 -> mean .5, sample std sqrt(8 * .25 / 7) = sqrt(2/7)
    # so every normalised step reward is ±z with z = .5 / (sqrt(2/7) + eps)
    step_rewards = [[1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    step_ends = [[1, 4], [1, 3, 6], [1, 2, 4]]
    lengths = [5, 7, 6]
    return step_rewards, step_ends, lengths


@pytest.mark.parametrize("eps", [0.0, 1e-4])
def test_process_supervision_hand_computed(eps):
    z = 0.5 / (math.sqrt(2 / 7) + eps)  # 0.9354143 for eps = 0
    out = process_supervision_advantages(*_hand_group(), eps=eps)
    expected = torch.tensor([
        # C0 (len 5): steps end at 1, 4 with +z, +z -> t0-1: 2z, t2-4: z; t5, t6 padding
        [2, 2, 1, 1, 1, 0, 0],
        # C1 (len 7): ends 1, 3, 6 with +z, -z, -z -> t0-1: -z, t2-3: -2z, t4-6: -z
        [-1, -1, -2, -2, -1, -1, -1],
        # C2 (len 6): ends 1, 2, 4 with +z, -z, -z -> t0-1: -z, t2: -2z, t3-4: -z, t5 after last step: 0
        [-1, -1, -2, -1, -1, 0, 0],
    ], dtype=torch.float32) * z
    assert out.shape == (3, 7)
    torch.testing.assert_close(out, expected)
    if eps == 0.0:
        assert abs(float(out[0, 0]) - 2 * 0.9354143) < 1e-5


def test_process_single_step_each_equals_outcome_advantages():
    rewards = [0.0, 1.0, 1.0, 0.5]
    lengths = [3, 5, 2, 4]
    out = process_supervision_advantages([[r] for r in rewards], [[n - 1] for n in lengths], lengths)
    outcome = group_advantages(torch.tensor([rewards]))[0]  # (G,)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out[i, :n], outcome[i].expand(n))
        assert torch.equal(out[i, n:], torch.zeros(5 - n))


def test_process_edge_cases():
    # all step rewards equal: exactly zero everywhere
    out = process_supervision_advantages([[1.0, 1.0], [1.0]], [[0, 2], [1]], [3, 2])
    assert torch.equal(out, torch.zeros(2, 3))
    # a completion with no steps gets 0 and adds nothing to the pool
    # pool = [1, 0]: mean .5, std sqrt(.5) -> r~ = ±.5 / (0.7071068 + 1e-4) = ±0.7070068
    out = process_supervision_advantages([[1.0], [0.0], []], [[1], [0], []], [2, 2, 4])
    torch.testing.assert_close(out, torch.tensor([[0.7070068] * 2 + [0, 0], [-0.7070068, 0, 0, 0], [0.0] * 4]))
    # one-completion group: normalised over its own steps; a single step -> 0
    assert torch.equal(process_supervision_advantages([[1.0]], [[2]], [3]), torch.zeros(1, 3))
    out = process_supervision_advantages([[1.0, 0.0]], [[0, 2]], [3])
    torch.testing.assert_close(out, torch.tensor([[0.0, -0.7070068, -0.7070068]]))
    # truncated completion: its unfinished tail (tokens 3-5, no scored step) gets 0
    out = process_supervision_advantages([[1.0, 0.0], [0.0]], [[1, 2], [0]], [6, 2])
    assert torch.equal(out[0, 3:], torch.zeros(3))
    assert float(out[0, 0]) != 0.0
    # an empty group and an empty-length completion
    assert process_supervision_advantages([], [], []).shape == (0, 0)
    assert process_supervision_advantages([[], [1.0], [0.0]], [[], [0], [0]], [0, 1, 1]).shape == (3, 1)


def test_two_steps_ending_on_same_token_both_count():
    # pool [1, 0, 0, 1] (mean .5, std .5773503); C0 steps 1 and 0 both end at token 1:
    # r~ = +z and -z sum to 0 at t <= 1, C1 gets -z then +z
    z = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    out = process_supervision_advantages([[1.0, 0.0], [0.0, 1.0]], [[1, 1], [0, 1]], [2, 2])
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [0.0, z]]))


def test_steps_after_the_final_answer_follow_the_formula():
    # a step scored after the answer (ending at token 3) still feeds tokens <= 3; the verifier, not
    # this function, decides to merge such text into the answer step (see verifiers/steps.py)
    with_extra = process_supervision_advantages([[1.0, 0.0], [0.0]], [[1, 3], [1]], [4, 2])
    z_pool = torch.tensor([1.0, 0.0, 0.0])
    r = (z_pool - z_pool.mean()) / (z_pool.std() + 1e-4)
    torch.testing.assert_close(with_extra[0], torch.stack([r[0] + r[1]] * 2 + [r[1]] * 2))


def test_process_rejects_bad_input():
    with pytest.raises(ValueError, match="outside"):
        process_supervision_advantages([[1.0]], [[3]], [3])
    with pytest.raises(ValueError, match="step rewards but"):
        process_supervision_advantages([[1.0, 0.0]], [[1]], [3])
    with pytest.raises(ValueError, match="one per completion"):
        process_supervision_advantages([[1.0]], [[1]], [3, 3])


# ---------------------------------------------------------------- token_advantages


def test_token_advantages_outcome_broadcast_and_row_order():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    lengths = torch.tensor([[2, 3], [1, 4]])
    out = token_advantages(rewards, lengths, 5)
    a = 0.5 / (math.sqrt(0.5) + 1e-4)  # 0.7070068
    expected = torch.tensor([[a, a, 0, 0, 0], [-a, -a, -a, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    torch.testing.assert_close(out, expected)
    rloo = token_advantages(rewards, lengths, 5, estimator="rloo")
    torch.testing.assert_close(rloo[0], torch.tensor([1.0, 1.0, 0, 0, 0]))  # 1 - 0
    torch.testing.assert_close(rloo[1], torch.tensor([-1.0, -1.0, -1.0, 0, 0]))
    none = token_advantages(rewards, lengths, 5, scale="none")
    torch.testing.assert_close(none[1], torch.tensor([-0.5, -0.5, -0.5, 0, 0]))


def test_token_advantages_process_and_mixed_modes():
    step_rewards, step_ends, lengths = _hand_group()
    rewards = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    all_lengths = torch.tensor([lengths, [2, 2, 2]])
    sr = [step_rewards, [[1.0], [1.0], [0.0]]]
    se = [step_ends, [[1], [1], [1]]]
    process = token_advantages(rewards, all_lengths, 8, mode="process", step_rewards=sr, step_ends=se)
    assert process.shape == (6, 8)
    torch.testing.assert_close(process[:3, :7], process_supervision_advantages(step_rewards, step_ends, lengths))
    assert torch.equal(process[:3, 7], torch.zeros(3))
    # second group: single steps ending at the last token == its outcome advantages
    torch.testing.assert_close(process[3:, :2], group_advantages(torch.tensor([[1.0, 1.0, 0.0]]))[0, :, None].expand(3, 2))

    outcome = token_advantages(rewards, all_lengths, 8)
    mixed = token_advantages(rewards, all_lengths, 8, mode="outcome+process", step_rewards=sr, step_ends=se,
                             process_weight=0.5)
    torch.testing.assert_close(mixed, outcome + 0.5 * process)
    zero_weight = token_advantages(rewards, all_lengths, 8, mode="outcome+process", step_rewards=sr, step_ends=se,
                                   process_weight=0.0)
    torch.testing.assert_close(zero_weight, outcome)


def test_token_advantages_errors_list_valid_names():
    r, n = torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="grpo.*reinforce_pp.*rloo"):
        token_advantages(r, n, 2, estimator="ppo")
    with pytest.raises(ValueError, match="outcome, process, outcome\\+process"):
        token_advantages(r, n, 2, mode="steps")
    with pytest.raises(ValueError, match="group, batch, none"):
        token_advantages(r, n, 2, scale="global")
    with pytest.raises(ValueError, match="only applies to estimator 'grpo'"):
        token_advantages(r, n, 2, estimator="rloo", scale="batch")
    with pytest.raises(ValueError, match="needs step_rewards"):
        token_advantages(r, n, 2, mode="process")
    with pytest.raises(ValueError, match="exceeds width"):
        token_advantages(r, n * 3, 2)
