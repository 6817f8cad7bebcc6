"""Step segmentation, sampled-token character offsets and step-end tokens, with a real BPE tokenizer."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from verifiers.segments import split_steps
from verifrl.segments import step_end_tokens, token_char_offsets

TOM = "12 + 5 = 17\n17 - 3 = 14\nAnswer: 14"
CORPUS = [TOM, "45 * 2 = 90\n23 + 90 = 113\n113 - 12 = 101\nAnswer: 101",
          "Step 1: 3 × 4 = 12\n\nStep 2: café costs 12\nAnswer: 12"] * 20


def _bpe(vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE without the GPT-2 regex split, so merges can cross newlines ("7\\n1")."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture(scope="module")
def merged_tok():
    return _bpe(310)  # few enough merges that tokens straddle line boundaries


@pytest.fixture(scope="module")
def byte_tok():
    return _bpe(290)  # "×" stays split into two byte tokens


def _texts(text, spans):
    return [text[s:e] for s, e in spans]


# ---------------------------------------------------------------- split_steps


def test_line_segmenter_newline_belongs_to_the_step_before():
    assert _texts(TOM, split_steps(TOM)) == ["12 + 5 = 17\n", "17 - 3 = 14\n", "Answer: 14"]
    # blank lines join the step before; leading blank text joins the first; trailing text the last
    text = "\n\n1 + 1 = 2\n\n\n2 + 2 = 4\n  \n"
    spans = split_steps(text, "line")
    assert spans == [(0, 14), (14, len(text))]  # 2 + 9 + 3 characters, then 13
    assert _texts(text, spans) == ["\n\n1 + 1 = 2\n\n\n", "2 + 2 = 4\n  \n"]
    assert split_steps("") == [] and split_steps(" \n\t\n") == []
    assert split_steps("no newline at all") == [(0, 17)]


def test_paragraph_and_step_marker_segmenters():
    text = "a = 1\nb = 2\n\nc = 3\n\n\nAnswer: 3"
    assert _texts(text, split_steps(text, "paragraph")) == ["a = 1\nb = 2\n\n", "c = 3\n\n\n", "Answer: 3"]
    marked = "Let us see.\nStep 1: 2 + 2 = 4\nso far\nStep 2) 4 * 3 = 12\nAnswer: 12\n"
    assert _texts(marked, split_steps(marked, "step_marker")) == [
        "Let us see.\nStep 1: 2 + 2 = 4\nso far\n", "Step 2) 4 * 3 = 12\n", "Answer: 12\n"]
    assert split_steps("just prose, no markers", "step_marker") == [(0, 22)]


@pytest.mark.parametrize("segmenter", ["line", "paragraph", "step_marker"])
@pytest.mark.parametrize("text", [TOM, "x\n\ny\n", "  Step 1: a\nStep 2: b  ", "\n\nq"])
def test_builtin_spans_tile_the_text(segmenter, text):
    spans = split_steps(text, segmenter)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(s < e for s, e in spans)


def test_callable_segmenter_is_validated():
    assert split_steps("abc def", lambda t: [(0, 3), (4, 7)]) == [(0, 3), (4, 7)]
    with pytest.raises(ValueError, match="bad span"):
        split_steps("abc", lambda t: [(2, 3), (0, 1)])
    with pytest.raises(ValueError, match="line, step_marker, paragraph"):
        split_steps("abc", "sentence")


# ---------------------------------------------------------------- token offsets and step ends


def _check_offsets(tok, ids):
    offsets = token_char_offsets(tok, ids)
    full = tok.decode(ids, skip_special_tokens=True)
    assert len(offsets) == len(ids)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(full)
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))  # contiguous, no overlap
    return offsets, full


def test_offsets_follow_sampled_ids_and_eos_is_empty_at_end(merged_tok):
    ids = merged_tok.encode(TOM) + [merged_tok.eos_token_id]
    offsets, full = _check_offsets(merged_tok, ids)
    assert full == TOM
    for (s, e), i in zip(offsets[:-1], ids[:-1]):
        assert TOM[s:e] == merged_tok.decode([i])
    assert offsets[-1] == (len(TOM), len(TOM))  # EOS: empty span at the end
    # a non-canonical tokenisation (what a sampler may produce) is followed, not re-tokenised
    pieces = [merged_tok.convert_tokens_to_ids(c) for c in ["1", "2"]] + merged_tok.encode(" + 5 = 17")
    offsets, full = _check_offsets(merged_tok, pieces)
    assert full == "12 + 5 = 17" and offsets[:2] == [(0, 1), (1, 2)]


def test_step_end_with_boundary_inside_a_token(merged_tok):
    ids = merged_tok.encode(TOM) + [merged_tok.eos_token_id]
    offsets = token_char_offsets(merged_tok, ids)
    spans = split_steps(TOM)  # step 1 = "12 + 5 = 17\n" ends at character 11 (the "\n")
    straddle = next(i for i, (s, e) in enumerate(offsets) if s <= 11 < e)
    assert offsets[straddle][1] > 12, "precondition: a token holds both '\\n' and the next step's start"
    ends = step_end_tokens(spans, offsets)
    assert ends[0] == straddle  # the straddling token belongs to the earlier step
    assert ends[1] > ends[0]
    assert ends[-1] == len(ids) - 1  # last step covers the trailing EOS
    # the second step ends at the token containing its "\n" (character 23)
    assert offsets[ends[1]][0] <= 23 < offsets[ends[1]][1]


def test_split_multibyte_character_uses_the_fallback(byte_tok):
    text = "Step 1: 3 × 4 = 12\nAnswer: 12"
    ids = byte_tok.encode(text)
    assert any(byte_tok.decode([i]) == "\ufffd" for i in ids), "precondition: × split over byte tokens"
    offsets, full = _check_offsets(byte_tok, ids)
    assert full == text
    x = text.index("×")
    holders = [i for i, (s, e) in enumerate(offsets) if s <= x < e]
    assert len(holders) == 1  # the character belongs to exactly one token (the one completing it)
    before = offsets[holders[0] - 1]
    assert before[0] == before[1]  # the lone first byte decodes to nothing yet: empty span
    ends = step_end_tokens(split_steps(text), offsets)
    newline = text.index("\n")
    assert offsets[ends[0]][0] <= newline < offsets[ends[0]][1]


def test_step_end_tokens_edges():
    offsets = [(0, 2), (2, 5), (5, 5), (5, 9), (9, 9)]  # token 2 and 4 are special (empty)
    assert step_end_tokens([(0, 3), (3, 9)], offsets) == [1, 4]
    assert step_end_tokens([(0, 5), (5, 6)], offsets) == [1, 3]
    assert step_end_tokens([(9, 9)], offsets) == [4]  # empty step at the end -> last token
    assert step_end_tokens([], []) == []
    with pytest.raises(ValueError, match="past the decoded text"):
        step_end_tokens([(0, 12)], offsets)


def test_until_first_error_keeps_steps_to_the_first_false_one_and_the_answer():
    from verifrl.segments import until_first_error

    ends = [[3, 7, 11, 15, 20], [4, 9, 12], [5, 8], [6]]
    scores = [[1.0, 0.5, 0.0, 1.0, 0.0],  # false at step 2: step 3 (true) is dropped, the answer kept
              [1.0, 1.0, 1.0],  # no error: all kept
              [0.0, 1.0],  # the first step false: it and the (right) answer
              [0.0]]  # the answer alone (a wrong answer is not a "first error" to cut after)
    kept_ends, kept_scores = until_first_error(ends, scores)
    assert kept_ends == [[3, 7, 11, 20], [4, 9, 12], [5, 8], [6]]
    assert kept_scores == [[1.0, 0.5, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0], [0.0]]
