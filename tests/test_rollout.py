import pytest
import torch

from verifrl.rollout import completion_mask_from_ids, generate
from verifrl.update import completion_logprobs


def test_mask_keeps_first_eos_and_drops_the_rest():
    eos = 1
    ids = torch.tensor([[5, 6, 1, 1, 1], [5, 1, 7, 1, 1], [5, 6, 7, 8, 9]])
    mask, lengths, truncated = completion_mask_from_ids(ids, {eos})
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert lengths.tolist() == [3, 2, 5]
    assert truncated.tolist() == [False, False, True]


def test_sampler_logprobs_equal_the_policys_own_forward(tiny_model, tiny_tokenizer):
    torch.manual_seed(0)
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens.\nSolution:\n"]
    batch = generate(tiny_model, tiny_tokenizer, prompts, group_size=3, max_new_tokens=12, temperature=0.7)
    assert batch.completion_ids.shape[0] == 6
    assert batch.sampler_logprobs.shape == batch.completion_ids.shape
    recomputed, _ = completion_logprobs(tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask, temperature=0.7)
    mask = batch.completion_mask.bool()
    assert torch.allclose(batch.sampler_logprobs[mask], recomputed.detach()[mask], atol=1e-4)
    # prompts of different lengths are left-padded, completions right-padded
    assert batch.prompt_mask[:, 0].tolist().count(0) > 0
    assert (batch.sampler_logprobs[~mask] == 0).all()


def test_greedy_is_deterministic_and_texts_match_ids(tiny_model, tiny_tokenizer):
    prompts = ["Question: Compute 3 + 4.\nSolution:\n"]
    a = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=10)
    b = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=10)
    assert a.texts == b.texts
    ids = a.completion_ids[0, : a.lengths[0]]
    assert a.texts[0] == tiny_tokenizer.decode(ids, skip_special_tokens=True)
    assert a.sampler_logprobs is None


def test_own_sampling_loop_matches_model_generate_greedily(tiny_model, tiny_tokenizer):
    """engine="loop" (shared prefill, finished rows dropped) decodes exactly what model.generate does."""
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens and buys 12 more.\nSolution:\n"]
    ours = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=12, engine="loop")
    hf = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=12, engine="hf")
    assert ours.texts == hf.texts
    assert torch.equal(ours.lengths, hf.lengths)
    assert torch.equal(ours.completion_ids * ours.completion_mask, hf.completion_ids * hf.completion_mask)
    # sampled groups share each prompt's prefill; rows still stop at their own EOS
    torch.manual_seed(0)
    sampled = generate(tiny_model, tiny_tokenizer, prompts, group_size=4, max_new_tokens=12, engine="loop")
    assert sampled.completion_ids.shape[0] == 8 and (sampled.lengths <= 12).all()


def test_rows_dropped_mid_batch_keep_exact_logprobs(tiny_model, tiny_tokenizer):
    """Many stop tokens make rows end at different steps; the cache compaction must not mix rows up."""
    stops = [tiny_tokenizer.eos_token_id] + [tiny_tokenizer.convert_tokens_to_ids(d) for d in "0123456789"]
    tiny_model.generation_config.eos_token_id = stops
    torch.manual_seed(1)
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens.\nSolution:\n"]
    batch = generate(tiny_model, tiny_tokenizer, prompts, group_size=6, max_new_tokens=16, temperature=1.5)
    assert len(set(batch.lengths.tolist())) > 2  # rows really ended at different steps
    recomputed, _ = completion_logprobs(tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask, temperature=1.5)
    mask = batch.completion_mask.bool()
    assert torch.allclose(batch.sampler_logprobs[mask], recomputed.detach()[mask], atol=1e-4)


def test_continuous_batching_engine_matches_the_loop_and_reports_exact_logprobs(tiny_model, tiny_tokenizer):
    if not hasattr(tiny_model, "generate_batch"):
        import pytest
        pytest.skip("this transformers has no continuous batching")
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens and buys 12 more.\nSolution:\n"]
    cb = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=12, engine="cb")
    loop = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=12, engine="loop")
    assert cb.texts == loop.texts and torch.equal(cb.lengths, loop.lengths)
    torch.manual_seed(0)
    batch = generate(tiny_model, tiny_tokenizer, prompts, group_size=3, max_new_tokens=12, temperature=0.7, engine="cb")
    assert batch.completion_ids.shape[0] == 6 and batch.prompt_mask[:, 0].tolist().count(0) > 0
    recomputed, _ = completion_logprobs(tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask, temperature=0.7)
    mask = batch.completion_mask.bool()
    assert torch.allclose(batch.sampler_logprobs[mask], recomputed.detach()[mask], atol=1e-4)
    assert (batch.sampler_logprobs[~mask] == 0).all()


def _collect(calls):
    """on_finished that records every call: [(rows, texts)]."""
    return lambda rows, texts: calls.append((list(rows), list(texts)))


def _reported(calls, n):
    """Row -> text from the recorded calls; every row exactly once."""
    seen = [row for rows, _ in calls for row in rows]
    assert sorted(seen) == list(range(n)), "each row is reported exactly once"
    return {row: text for rows, texts in calls for row, text in zip(rows, texts)}


def test_loop_reports_rows_as_they_end_with_the_batch_texts(tiny_model, tiny_tokenizer):
    """Rows stop at different steps (many stop tokens), in chunks of 5 that split the groups of 6:
    every row is reported once, with global indices, and its text is the batch's text."""
    stops = [tiny_tokenizer.eos_token_id] + [tiny_tokenizer.convert_tokens_to_ids(d) for d in "0123456789"]
    tiny_model.generation_config.eos_token_id = stops
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens.\nSolution:\n"]
    for chunk_size in (0, 5, 6):
        calls = []
        torch.manual_seed(1)
        batch = generate(tiny_model, tiny_tokenizer, prompts, group_size=6, max_new_tokens=16, temperature=1.5,
                         chunk_size=chunk_size, on_finished=_collect(calls))
        assert len(set(batch.lengths.tolist())) > 2  # rows really ended at different steps
        reported = _reported(calls, 12)
        assert [reported[i] for i in range(12)] == batch.texts, chunk_size
        chunks = 1 if chunk_size == 0 else -(-12 // chunk_size)
        assert len(calls) > chunks  # reported while sampling, not only once per chunk
        # the callback does not change what is sampled
        torch.manual_seed(1)
        plain = generate(tiny_model, tiny_tokenizer, prompts, group_size=6, max_new_tokens=16, temperature=1.5,
                         chunk_size=chunk_size)
        assert plain.texts == batch.texts and torch.equal(plain.completion_ids, batch.completion_ids)


def test_loop_reports_length_cut_rows_at_the_end(tiny_model, tiny_tokenizer):
    """With a 3-token limit most rows never sample EOS: they come in the last call, cut at the limit."""
    calls = []
    torch.manual_seed(0)
    batch = generate(tiny_model, tiny_tokenizer, ["Question: Compute 3 + 4.\nSolution:\n"], group_size=4,
                     max_new_tokens=3, on_finished=_collect(calls))
    assert batch.truncated.any()
    reported = _reported(calls, 4)
    assert [reported[i] for i in range(4)] == batch.texts
    assert {i for i in range(4) if batch.truncated[i]} <= set(calls[-1][0])


@pytest.mark.parametrize("engine", ["hf", "cb"])
def test_whole_chunk_engines_report_each_chunk_once(tiny_model, tiny_tokenizer, engine):
    if engine == "cb" and not hasattr(tiny_model, "generate_batch"):
        pytest.skip("this transformers has no continuous batching")
    stops = [tiny_tokenizer.eos_token_id] + [tiny_tokenizer.convert_tokens_to_ids(d) for d in "0123456789"]
    tiny_model.generation_config.eos_token_id = stops
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens.\nSolution:\n"]
    calls = []
    torch.manual_seed(1)
    batch = generate(tiny_model, tiny_tokenizer, prompts, group_size=6, max_new_tokens=16, temperature=1.5,
                     chunk_size=5, engine=engine, on_finished=_collect(calls))
    assert [rows for rows, _ in calls] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    reported = _reported(calls, 12)
    assert [reported[i] for i in range(12)] == batch.texts
    assert len(set(batch.lengths.tolist())) > 2


def test_deferred_stop_checks_keep_greedy_tokens_exact_logprobs_and_reported_texts(tiny_model, tiny_tokenizer):
    """stop_check_every=4: rows that end between looks decode padding, which must never leak into
    the tokens, the log-probs, the width of the batch or the texts handed to on_finished."""
    stops = [tiny_tokenizer.eos_token_id] + [tiny_tokenizer.convert_tokens_to_ids(d) for d in "0123456789"]
    tiny_model.generation_config.eos_token_id = stops
    prompts = ["Question: Compute 3 + 4.\nSolution:\n", "Question: Tom has 5 pens.\nSolution:\n"]
    every = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=16)
    deferred = generate(tiny_model, tiny_tokenizer, prompts, greedy=True, max_new_tokens=16, stop_check_every=4)
    assert deferred.texts == every.texts and torch.equal(deferred.completion_ids, every.completion_ids)
    torch.manual_seed(1)
    reported = {}
    batch = generate(tiny_model, tiny_tokenizer, prompts, group_size=6, max_new_tokens=16, temperature=1.5,
                     stop_check_every=4, on_finished=lambda rows, texts: reported.update(zip(rows, texts)))
    assert len(set(batch.lengths.tolist())) > 2 and batch.completion_ids.shape[1] == int(batch.lengths.max())
    assert [reported[i] for i in range(12)] == batch.texts
    recomputed, _ = completion_logprobs(tiny_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask, temperature=1.5)
    mask = batch.completion_mask.bool()
    assert torch.allclose(batch.sampler_logprobs[mask], recomputed.detach()[mask], atol=1e-4)
    assert (batch.sampler_logprobs[~mask] == 0).all()
    assert (batch.completion_ids[~mask] == tiny_tokenizer.pad_token_id).all()


def test_nan_weights_are_reported_as_diverged_by_every_sampling_engine(tiny_model, tiny_tokenizer):
    import pytest

    from verifrl.samplers import NonFiniteLogits

    with torch.no_grad():
        tiny_model.lm_head.weight.fill_(float("nan"))
    for engine in ("loop", "hf"):
        with pytest.raises(NonFiniteLogits, match="NaN/inf"):
            generate(tiny_model, tiny_tokenizer, ["Question: Compute 3 + 4.\nSolution:\n"], group_size=2,
                     max_new_tokens=4, engine=engine)


def test_an_unknown_engine_is_an_error_not_a_fallback(tiny_model, tiny_tokenizer):
    import pytest

    with pytest.raises(ValueError, match="unknown rollout engine 'lop'"):
        generate(tiny_model, tiny_tokenizer, ["Question: Compute 3 + 4.\nSolution:\n"], engine="lop")
