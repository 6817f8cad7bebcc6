"""Dynamic sampling (DAPO): group selection by hand, refill rounds with a fake sampler (the trainer
run is in test_trainer_options.py)."""

import pytest
import torch

from verifrl.dynamic_sampling import collect_informative, informative_groups, refill_size, select_groups
from verifrl.rollout import RolloutBatch
from verifrl.scoring import ScoredBatch
from verifiers import VerifyResult


def test_informative_groups_are_those_with_unequal_rewards():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5 + 1e-6]])
    assert informative_groups(r).tolist() == [False, True, False, True]
    assert informative_groups(torch.tensor([[1.0], [0.0]])).tolist() == [False, False]  # G = 1


def test_select_groups_by_mode_and_limit():
    r = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.2, 0.3]])
    assert select_groups(r, "off", 4) == [0, 1, 2, 3]
    assert select_groups(r, "drop", 5) == [1, 3, 4]
    assert select_groups(r, "refill", 2) == [1, 3]  # first informative groups in sampling order
    assert select_groups(r[[0, 2]], "drop", 5) == []
    with pytest.raises(ValueError, match="off, drop, refill"):
        select_groups(r, "keep", 2)


def test_refill_size_scales_the_missing_count_by_the_informative_share():
    assert refill_size(missing=0, sampled=8, kept=8, cap=8) == 0
    assert refill_size(missing=4, sampled=8, kept=0, cap=8) == 8  # nothing informative yet: a full round
    assert refill_size(missing=2, sampled=8, kept=4, cap=8) == 4  # half were informative: 2 / 0.5
    assert refill_size(missing=6, sampled=8, kept=1, cap=8) == 8  # capped at num_prompts
    assert refill_size(missing=1, sampled=9, kept=8, cap=8) == 2  # ceil(1 * 9 / 8)


def _fake_round(group_rewards: list[list[float]], start_id: int, width: int):
    """A RolloutBatch/ScoredBatch whose completion of group p, sample g is token id start_id+p, length p+1."""
    P, G = len(group_rewards), len(group_rewards[0])
    N = P * G
    ids = torch.zeros(N, width, dtype=torch.long)
    lengths = torch.tensor([p % width + 1 for p in range(P) for _ in range(G)])
    for i in range(N):
        ids[i, : lengths[i]] = start_id + i // G
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    rewards = torch.tensor([float(r) for g in group_rewards for r in g])
    batch = RolloutBatch(torch.ones(N, 2, dtype=torch.long), torch.ones(N, 2, dtype=torch.long), ids, mask,
                         mask.float() * -0.5, lengths, torch.zeros(N, dtype=torch.bool),
                         [f"c{start_id + i // G}" for i in range(N)], G)
    scored = ScoredBatch(rewards[:, None].clone(), rewards.clone(), [[VerifyResult(float(r)) for r in rewards]],
                         None, None, {"verifier/x/error_rate": 0.0})
    return batch, scored, rewards


def test_drop_keeps_only_informative_groups_and_counts_the_rest():
    rows = [{"id": k} for k in range(4)]
    first = _fake_round([[1, 1], [0, 1], [0, 0], [1, 0]], 10, 5)
    out = collect_informative(rows, first, mode="drop", num_prompts=4, max_refill_rounds=3,
                              sample=None, next_rows=None, pad_id=0)
    assert [r["id"] for r in out.rows] == [1, 3]
    assert out.batch.texts == ["c11", "c11", "c13", "c13"]
    assert out.rewards.tolist() == [0, 1, 1, 0]
    assert out.scored.rewards.tolist() == [0, 1, 1, 0]
    assert out.batch.completion_ids.shape == (4, 4)  # trimmed to the longest kept completion
    assert out.metrics["rollout/dropped_groups"] == 2 and out.metrics["rollout/kept_groups"] == 2
    assert out.metrics["rollout/refill_rounds"] == 0
    assert out.metrics["reward/frac_zero_std_groups"] == 0.5


def test_refill_samples_more_prompts_until_the_batch_is_full():
    # a drawn prompt is informative when its id is a multiple of 3
    drawn_ids, sizes = iter(range(100, 200)), []

    def next_rows(n):
        return [{"id": next(drawn_ids)} for _ in range(n)]

    def sample(new_rows):
        sizes.append(len(new_rows))
        return _fake_round([[0.0, 1.0] if r["id"] % 3 == 0 else [1.0, 1.0] for r in new_rows], 20 + 10 * len(sizes), 6)

    rows = [{"id": k} for k in range(4)]
    first = _fake_round([[1, 1], [0, 1], [0, 0], [1, 1]], 10, 3)
    out = collect_informative(rows, first, mode="refill", num_prompts=4, max_refill_rounds=5,
                              sample=sample, next_rows=next_rows, pad_id=0)
    # kept 1/4 -> missing 3 -> ceil(3*4/1) capped at 4: ids 100-103 (102 informative);
    # kept 2/8 -> missing 2 -> ceil(2*8/2)=8 capped at 4: ids 104-107 (105);
    # kept 3/12 -> missing 1 -> ceil(1*12/3)=4: ids 108-111 (108, 111) -> full, 111 is surplus
    assert sizes == [4, 4, 4]
    assert [r["id"] for r in out.rows] == [1, 102, 105, 108]
    assert out.rewards.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert out.batch.texts == ["c11", "c11", "c32", "c32", "c41", "c41", "c50", "c50"]
    # rounds padded to widths 3 and 6, merged, then trimmed to the longest kept completion (3 tokens)
    assert out.batch.completion_ids.shape == (8, 3) and out.batch.lengths.tolist() == [2, 2, 3, 3, 2, 2, 1, 1]
    assert out.batch.completion_ids[4].tolist() == [41, 41, 0]
    assert out.batch.sampler_logprobs.shape == out.batch.completion_ids.shape
    assert len(out.scored.results[0]) == 8
    m = out.metrics
    assert (m["rollout/sampled_groups"], m["rollout/kept_groups"], m["rollout/dropped_groups"],
            m["rollout/surplus_groups"], m["rollout/refill_rounds"]) == (16, 4, 11, 1, 3)


@pytest.mark.parametrize("max_rounds", [0, 1])
def test_refill_stops_at_the_round_bound(max_rounds):
    rows = [{"id": k} for k in range(2)]
    calls = []

    def sample(new_rows):
        calls.append(len(new_rows))
        return _fake_round([[0, 0]] * len(new_rows), 50, 4)

    first = _fake_round([[1, 1], [0, 0]], 10, 4)
    out = collect_informative(rows, first, mode="refill", num_prompts=2, max_refill_rounds=max_rounds,
                              sample=sample, next_rows=lambda n: [{"id": 9}] * n, pad_id=0)
    assert calls == [2] * max_rounds  # nothing informative: each round asks for a full batch
    assert out.batch is None and out.rows == []
    assert out.metrics["rollout/dropped_groups"] == 2 + 2 * max_rounds
    assert out.metrics["reward/mean"] == pytest.approx(2 / (4 + 4 * max_rounds))
    assert out.metrics["rollout/refill_rounds"] == max_rounds


def test_a_rank_with_enough_groups_still_draws_in_lockstep_without_sampling():
    """Under torchrun agree(n) is the largest refill any rank asks for. A rank that is already full
    (here: both groups informative) draws the agreed prompts to keep the prompt streams equal,
    samples nothing, and stops when the other rank stops asking (here after 2 rounds)."""
    asked, drawn, sampled = [], [], []
    other_rank_wants = iter([3, 1, 0])

    def agree(n):
        asked.append(n)
        return max(n, next(other_rank_wants))

    def next_rows(n):
        drawn.append(n)
        return [{"id": 100 + k} for k in range(n)]

    def sample(new_rows):
        sampled.append(len(new_rows))
        return _fake_round([[0, 1]] * len(new_rows), 200, 4)

    rows = [{"id": 0}, {"id": 1}]
    first = _fake_round([[0, 1], [1, 0]], 10, 4)
    out = collect_informative(rows, first, mode="refill", num_prompts=2, max_refill_rounds=5, sample=sample,
                              next_rows=next_rows, pad_id=0, agree=agree)
    assert asked == [0, 0, 0] and drawn == [3, 1] and sampled == []
    assert [r["id"] for r in out.rows] == [0, 1] and out.metrics["rollout/refill_rounds"] == 2
