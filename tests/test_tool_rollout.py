"""Tool calls inside the loop engine: token in / token out, masks, log-prob alignment, budgets."""

import pytest
import torch

from tests.tool_script import ScriptedLM
from verifrl.rollout import generate
from verifrl.samplers import completion_mask_with_tools
from verifrl.tool_session import ToolSet, encode_observation
from verifiers.base import strip_tool_output
from verifrl.tools import _FunctionTool, completed_call
from verifrl.update import completion_logprobs

PROMPT_A = "Question: Compute 48 * 37 + 25.\nSolution:\n"
PROMPT_B = "Question: Compute 3 + 4.\nSolution:\n"


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def chars(tok, text: str) -> list[int]:
    """One token per character: a tokenization BPE would never produce for this text."""
    return [i for c in text for i in ids(tok, c)]


class EchoTool(_FunctionTool):
    """Evaluates the block with Python's eval (test only: trusted input), counts batches."""

    def __init__(self):
        super().__init__(lambda code: str(eval(code)))
        self.batches = []

    def run_batch(self, calls):
        self.batches.append([c.code for c in calls])
        return super().run_batch(calls)


def transcript(tok, code: str, output: str, answer: str, split_answer: bool = False) -> tuple[list[int], list[int]]:
    """(script ids, observation ids) of ```python code``` + its output block + the answer."""
    call = ids(tok, "```python\n") + ids(tok, code + "\n") + ids(tok, "```")
    observation = encode_observation(tok, "\n```output\n") + encode_observation(tok, output) + \
        encode_observation(tok, "\n```\n")
    tail = chars(tok, f"Answer: {answer}") if split_answer else ids(tok, f"Answer: {answer}")
    return call + observation + tail + [tok.eos_token_id], observation


@pytest.fixture()
def echo_tools():
    tool = EchoTool()
    return tool, ToolSet({"python": tool}, max_calls=4, max_observation_tokens=64)


def test_spliced_sequence_is_exactly_the_sampled_ids_plus_observation_ids(tiny_tokenizer, echo_tools):
    tok = tiny_tokenizer
    tool, toolset = echo_tools
    script, observation = transcript(tok, "48 * 37 + 25", "1801", "1801", split_answer=True)
    model = ScriptedLM(tok, {PROMPT_A: script})
    batch = generate(model, tok, [PROMPT_A], group_size=2, max_new_tokens=64, temperature=1.0, tools=toolset)
    for row in range(2):
        got = batch.completion_ids[row, : batch.lengths[row]].tolist()
        assert got == script  # the model's own (non-canonical) ids, the tool's ids, nothing re-tokenized
    # decode -> encode would NOT give these ids back: anyone rebuilding the sequence from text breaks this
    assert ids(tok, batch.texts[0]) != script
    assert batch.texts[0].endswith("```\nAnswer: 1801")
    assert "```output\n1801\n```" in batch.texts[0]
    # both rows closed their block at the same token: one batch of two calls
    assert tool.batches == [["48 * 37 + 25", "48 * 37 + 25"]]
    start = len(ids(tok, "```python\n") + ids(tok, "48 * 37 + 25\n") + ids(tok, "```"))
    expected_mask = [False] * len(script)
    expected_mask[start: start + len(observation)] = [True] * len(observation)
    assert batch.tool_mask[0, : len(script)].tolist() == expected_mask
    assert batch.tool_calls.tolist() == [1, 1] and batch.tool_errors.tolist() == [0, 0]
    # observation tokens: no sampler log-prob; model tokens: a real one
    assert (batch.sampler_logprobs[batch.tool_mask] == 0).all()
    own = batch.model_mask.bool()
    assert (batch.sampler_logprobs[own] < 0).all()
    assert batch.model_lengths.tolist() == [len(script) - len(observation)] * 2


def test_logprobs_stay_aligned_around_the_observation(tiny_tokenizer, echo_tools):
    tok = tiny_tokenizer
    _, toolset = echo_tools
    script, _ = transcript(tok, "48 * 37 + 25", "1801", "1801")
    model = ScriptedLM(tok, {PROMPT_A: script, PROMPT_B: ids(tok, "3 + 4 = 7\nAnswer: 7") + [tok.eos_token_id]})
    batch = generate(model, tok, [PROMPT_A, PROMPT_B], group_size=2, max_new_tokens=64, tools=toolset)
    # the update's forward attends to the observation (completion_mask), trains on model tokens only
    recomputed, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                        batch.completion_mask)
    own = batch.model_mask.bool()
    assert torch.allclose(batch.sampler_logprobs[own], recomputed.detach()[own], atol=1e-5)
    # leaving the observation out of the context shifts every later position: the values change
    shifted, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.model_mask)
    after = own.clone()
    after[:, : int(batch.tool_mask[0].nonzero().max()) + 1] = False
    assert not torch.allclose(batch.sampler_logprobs[after], shifted.detach()[after], atol=1e-3)
    assert batch.tool_calls.tolist() == [1, 1, 0, 0]


def test_rows_that_call_at_different_tokens_run_as_separate_batches(tiny_tokenizer, echo_tools):
    tok = tiny_tokenizer
    tool, toolset = echo_tools
    late, _ = transcript(tok, "48 * 37 + 25", "1801", "1801")
    early, _ = transcript(tok, "3 + 4", "7", "7")
    model = ScriptedLM(tok, {PROMPT_A: late, PROMPT_B: early})
    batch = generate(model, tok, [PROMPT_A, PROMPT_B], group_size=1, max_new_tokens=64, tools=toolset)
    assert tool.batches == [["3 + 4"], ["48 * 37 + 25"]]
    assert batch.completion_ids[0, : batch.lengths[0]].tolist() == late
    assert batch.completion_ids[1, : batch.lengths[1]].tolist() == early


def test_max_new_tokens_counts_own_tokens_and_calls_are_capped(tiny_tokenizer):
    tok = tiny_tokenizer
    tool = EchoTool()
    toolset = ToolSet({"python": tool}, max_calls=2, max_observation_tokens=64)
    one, observation = transcript(tok, "1 + 1", "2", "2")
    cell = one[: one.index(tok.eos_token_id) - len(ids(tok, "Answer: 2"))]  # call + observation
    script = cell * 3 + ids(tok, "Answer: 2") + [tok.eos_token_id]
    model = ScriptedLM(tok, {PROMPT_B: script})
    own_needed = len(script) - 2 * len(observation)  # the third call gets no observation
    batch = generate(model, tok, [PROMPT_B], max_new_tokens=own_needed, tools=toolset, greedy=True)
    assert batch.tool_calls.tolist() == [2] and len(tool.batches) == 2
    assert batch.model_lengths.tolist() == [own_needed]
    assert batch.truncated.tolist() == [False]
    # one token less: cut by the budget of own tokens, whatever the observations took
    short = generate(model, tok, [PROMPT_B], max_new_tokens=own_needed - 1, tools=toolset, greedy=True)
    assert short.truncated.tolist() == [True] and short.model_lengths.tolist() == [own_needed - 1]


def test_long_observations_are_cut_with_a_visible_marker(tiny_tokenizer):
    tok = tiny_tokenizer
    toolset = ToolSet({"python": _FunctionTool(lambda code: "9" * 500)}, max_calls=1, max_observation_tokens=48)
    script, _ = transcript(tok, "1", "1", "1")
    model = ScriptedLM(tok, {PROMPT_B: script})
    batch = generate(model, tok, [PROMPT_B], max_new_tokens=40, tools=toolset, greedy=True)
    assert int(batch.tool_mask[0].sum()) == 48
    assert "```output\n999" in batch.texts[0] and "99\n...[output truncated]\n```\n" in batch.texts[0]


def test_tool_output_with_special_token_text_is_never_an_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    observation = encode_observation(tok, f"x{tok.eos_token}y")
    assert tok.eos_token_id not in observation


def test_budget_cut_ignores_padding_that_equals_eos():
    eos = 0  # pad == eos, as for many hub tokenizers
    completion = torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 0, 0, 0, 0]])
    tool_mask = torch.tensor([[False, True, True, False, False, False], [False] * 6])
    mask, lengths, truncated = completion_mask_with_tools(completion, tool_mask, {eos}, max_new_tokens=2)
    assert lengths.tolist() == [4, 2] and truncated.tolist() == [True, True]
    assert mask.tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]]
    mask, lengths, truncated = completion_mask_with_tools(completion, tool_mask, {eos}, max_new_tokens=3)
    assert lengths.tolist() == [5, 3] and truncated.tolist() == [False, False]


def test_call_detection_and_output_stripping():
    assert completed_call("Let me compute.\n```python\nx = 2\nx * 3\n```", ["python"]) == ("python", "x = 2\nx * 3")
    assert completed_call("```python\nx = 2\n", ["python"]) is None
    assert completed_call("```bash\nls\n```", ["python"]) is None
    assert completed_call("```python\n1\n```\n", ["python"]) == ("python", "1")
    text = "```python\nprint(7)\n```\n```output\n\\boxed{7}\n```\nSo the answer is 8."
    assert strip_tool_output(text) == "```python\nprint(7)\n```\n\nSo the answer is 8."
    assert strip_tool_output("a ```output\n\\boxed{3}") == "a "


def test_tools_refuse_other_engines(tiny_tokenizer, echo_tools):
    model = ScriptedLM(tiny_tokenizer, {PROMPT_B: [tiny_tokenizer.eos_token_id]})
    with pytest.raises(ValueError, match="loop engine"):
        generate(model, tiny_tokenizer, [PROMPT_B], engine="hf", tools=echo_tools[1])
