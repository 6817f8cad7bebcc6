"""Token side of step segmentation: the token where each reasoning step ends.

Place in the data flow: prompts -> rollouts -> verifier results (step spans, from
:func:`verifiers.segments.split_steps`) -> rewards -> **advantages** (step-end token indices for
process supervision) -> loss -> update -> logging.

1. :func:`token_char_offsets` gives each *sampled* token its character span in
   ``tokenizer.decode(token_ids, skip_special_tokens=True)`` by decoding the ids incrementally;
   the text is never re-tokenised (re-encoding can merge or split differently from what was
   sampled). Special tokens (EOS) and tokens that only complete a multi-byte character decode to
   nothing new and get an empty span.
2. :func:`step_end_tokens` maps each step to the 0-based index of the token containing the step's
   last character; a token that straddles a boundary belongs to the earlier step (it holds that
   step's last character). A step that reaches the end of the text ends at the completion's last
   token, trailing special tokens (EOS) included.
"""

from __future__ import annotations

from typing import Sequence

from verifiers.segments import Span


def token_char_offsets(tokenizer, token_ids: Sequence[int], window: int = 6) -> list[Span]:
    """Character span of each sampled token in ``tokenizer.decode(token_ids, skip_special_tokens=True)``.

    Fast path: token k's text is ``decode(ids[k-w : k+1])`` minus ``decode(ids[k-w : k])`` (same
    start, so tokenizer-specific handling of the first token cancels out). If the pieces do not
    concatenate to the full decoded text (a multi-byte character split across tokens, clean-up of
    spaces), fall back to cumulative decoding, where token k ends at the longest common prefix of
    ``decode(ids[:k+1])`` and the full text (monotone, so spans never overlap).

    Args:
        tokenizer: a Hugging Face tokenizer (``decode`` with ``skip_special_tokens``).
        token_ids: the completion's sampled ids, EOS included if sampled.
        window: tokens of left context for the fast path.

    Returns:
        One ``(start, end)`` per token, tiling the decoded text; special tokens get an empty span.
    """
    ids = [int(i) for i in token_ids]

    def decode(part: Sequence[int]) -> str:
        return tokenizer.decode(list(part), skip_special_tokens=True)

    full = decode(ids)
    spans: list[Span] = []
    position = 0
    pieces = []
    for k in range(len(ids)):
        start = max(0, k - window)
        before, upto = decode(ids[start:k]), decode(ids[start:k + 1])
        if not upto.startswith(before):
            break
        piece = upto[len(before):]
        pieces.append(piece)
        spans.append((position, position + len(piece)))
        position += len(piece)
    if len(spans) == len(ids) and "".join(pieces) == full:
        return spans

    spans, previous = [], 0
    for k in range(len(ids)):
        prefix = decode(ids[:k + 1])
        common = 0
        limit = min(len(prefix), len(full))
        while common < limit and prefix[common] == full[common]:
            common += 1
        end = max(previous, common)
        spans.append((previous, end))
        previous = end
    if spans:  # whatever the last decode left out (e.g. clean-up) belongs to the last token
        spans[-1] = (spans[-1][0], len(full)) if spans[-1][1] < len(full) else spans[-1]
    return spans


def step_end_tokens(spans: Sequence[Span], token_offsets: Sequence[Span]) -> list[int]:
    """For each step, the 0-based index of the token that contains the step's last character.

    Args:
        spans: step character spans (end exclusive), e.g. from :func:`split_steps`.
        token_offsets: per-token character spans, from :func:`token_char_offsets`.

    Returns:
        One token index per step. A token straddling a step boundary is the end of the earlier
        step; a step reaching the end of the text (or an empty step at the end) ends at the last
        token, so trailing special tokens are covered; an empty step elsewhere ends at the token
        holding the character just before it (or token 0).
    """
    if not token_offsets:
        if spans:
            raise ValueError("steps given for a completion with no tokens")
        return []
    text_end = max(end for _, end in token_offsets)
    ends: list[int] = []
    for start, end in spans:
        if end > text_end:
            raise ValueError(f"step span {(start, end)} goes past the decoded text ({text_end} characters)")
        if end >= text_end:
            ends.append(len(token_offsets) - 1)
            continue
        last_char = max(end - 1, 0)
        # first token whose span covers last_char (empty spans cover nothing)
        index = next((i for i, (s, e) in enumerate(token_offsets) if s <= last_char < e), None)
        if index is None:
            raise ValueError(f"no token covers character {last_char}")
        ends.append(index)
    return ends


def step_ends_for(batch, tokenizer, step_spans) -> list[list[int]]:
    """Token index of each step's last character, per completion. [N][K_i]."""
    ends = []
    for i, spans in enumerate(step_spans):
        ids = batch.completion_ids[i, : int(batch.lengths[i])].tolist()
        offsets = token_char_offsets(tokenizer, ids)
        ends.append(step_end_tokens(spans, offsets) if spans else [])
    return ends


def drop_observation_steps(step_ends: list[list[int]], step_scores: list[list[float]],
                           tool_mask) -> tuple[list[list[int]], list[list[float]]]:
    """Steps that end inside a tool observation are dropped with their scores: a step's reward is
    credited to the tokens up to its end, and observation tokens are not the policy's. [N][K_i]."""
    kept_ends, kept_scores = [], []
    for i, (ends, scores) in enumerate(zip(step_ends, step_scores)):
        keep = [k for k, end in enumerate(ends) if not bool(tool_mask[i, end])]
        kept_ends.append([ends[k] for k in keep])
        kept_scores.append([scores[k] for k in keep])
    return kept_ends, kept_scores


def until_first_error(step_ends: list[list[int]], step_scores: list[list[float]],
                      ) -> tuple[list[list[int]], list[list[float]]]:
    """Keep each completion's steps up to its first false step (score 0) and its answer step (the
    last); the steps in between carry no step reward (``advantage.step_credit: first_error``).

    After a wrong step the chain is lost whatever follows, so later steps, true or false, say
    nothing about the choice that mattered; dropping them also stops "true steps after the error"
    from earning reward. [N][K_i] each; the answer step is always the last and always kept.
    """
    kept_ends, kept_scores = [], []
    for ends, scores in zip(step_ends, step_scores):
        first = next((k for k, score in enumerate(scores[:-1]) if score == 0.0), None)
        keep = list(range(len(scores))) if first is None else [*range(first + 1), len(scores) - 1]
        kept_ends.append([ends[k] for k in keep])
        kept_scores.append([scores[k] for k in keep])
    return kept_ends, kept_scores
