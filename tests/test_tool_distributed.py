"""DDP with tools: 2 gloo ranks on batches with spliced observations give the one-process update, and
the global normalisers (dapo's token count over ranks) count the policy's own tokens only."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.conftest import TEST_MODEL
from tests.test_distributed import CASES, G, P, _fixed_batch, _free_port, _train_once
from verifrl import distributed
from verifrl.embedded import build_model
from verifrl.update import TrainBatch

FIELDS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "old_logprobs", "advantages",
          "ref_logprobs", "context_mask")


def _tool_batch(vocab: int) -> TrainBatch:
    """The fixed batch with completion positions 1-2 of every row longer than 3 made observations."""
    batch = _fixed_batch(vocab)
    context = batch.completion_mask.clone()
    tool = torch.zeros_like(context, dtype=torch.bool)
    long_rows = context.sum(1) > 3
    tool[long_rows, 1:3] = True
    old = batch.old_logprobs.masked_fill(tool, 0.0)  # observations have no sampler log-prob
    return TrainBatch(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, context * (~tool).long(), old,
                      batch.advantages, batch.ref_logprobs, context_mask=context)


def _shard(batch: TrainBatch, rank: int, world: int) -> TrainBatch:
    rows = torch.tensor([p * G + j for p in list(range(P))[rank::world] for j in range(G)])
    return TrainBatch(*(getattr(batch, name)[rows] for name in FIELDS))


def _worker(rank: int, world: int, port: int, model, batch: TrainBatch, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    assert distributed.init("gloo")
    results = [_train_once(model, _shard(batch, rank, world), cfg, micro_batch_size=2) for cfg in CASES]
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    distributed.destroy()


@pytest.mark.slow
def test_two_gloo_ranks_with_observations_match_one_process(tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    model = build_model(TEST_MODEL, tiny_tokenizer)
    batch = _tool_batch(len(tiny_tokenizer))
    assert int((batch.context_mask - batch.completion_mask).sum()) > 0
    single = [_train_once(model, batch, cfg, micro_batch_size=0) for cfg in CASES]
    mp.start_processes(_worker, args=(2, _free_port(), model, batch, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # the same batch with the observations trained on gives another update: the masking is not trivial
    unmasked = copy.copy(batch)
    unmasked.completion_mask = batch.context_mask
    for case, cfg in enumerate(CASES):
        leaked = _train_once(model, unmasked, cfg, micro_batch_size=0)
        assert any(not torch.allclose(leaked[n], single[case][n], atol=1e-6) for n in leaked), cfg
        for name, expected in single[case].items():
            for r in range(2):
                assert torch.allclose(ranks[r][case][name], expected, atol=1e-6, rtol=1e-5), (cfg.type, name, r)
