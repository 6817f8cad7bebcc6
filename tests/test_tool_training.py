"""Observation tokens in training: in the context, never in the loss, the normalisers, KL, entropy,
the overlong penalty or a process-supervision step; rewards read the model's own text."""

import pytest
import torch

from tests.test_tool_rollout import PROMPT_B, ids, transcript
from tests.tool_script import ScriptedLM
from verifrl import trainer
from verifrl.segments import drop_observation_steps
from verifrl.config import LossConfig
from verifrl.config_loading import load_config
from verifrl.evaluation import evaluate
from verifrl.groups import build_tools
from verifrl.scoring import build_verifiers
from verifrl.tool_session import ToolSet
from verifrl.update import TrainBatch, completion_logprobs, update_policy


def _hand_built(tok):
    """Row 0: own tokens, a 4-token observation, own tokens, EOS. Row 1: no call."""
    prompt = ids(tok, "Question: Compute 3 + 4.\nSolution:\n")
    own_a, obs, own_b = ids(tok, "```python\n3 + 4\n```"), ids(tok, "\n```output\n7\n```\n"), ids(tok, "Answer: 7")
    row0 = own_a + obs + own_b + [tok.eos_token_id]
    row1 = ids(tok, "3 + 4 = 7\nAnswer: 7") + [tok.eos_token_id]
    width = max(len(row0), len(row1))
    completion = torch.full((2, width), tok.pad_token_id)
    context = torch.zeros((2, width), dtype=torch.long)
    tool_mask = torch.zeros((2, width), dtype=torch.bool)
    for r, row in enumerate((row0, row1)):
        completion[r, : len(row)] = torch.tensor(row)
        context[r, : len(row)] = 1
    tool_mask[0, len(own_a): len(own_a) + len(obs)] = True
    prompt_ids = torch.tensor([prompt, prompt])
    return prompt_ids, torch.ones_like(prompt_ids), completion, context, tool_mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_every_normaliser_counts_model_tokens_only(tiny_model, tiny_tokenizer, loss_type):
    prompt_ids, prompt_mask, completion, context, tool_mask = _hand_built(tiny_tokenizer)
    own = context * (~tool_mask).long()  # (2, Lc) the model-token mask
    logp, entropy = completion_logprobs(tiny_model, prompt_ids, prompt_mask, completion, context, with_entropy=True)
    logp, entropy = logp.detach(), entropy.detach()
    advantages = torch.where(tool_mask, torch.full_like(logp, 100.0), torch.ones_like(logp))  # garbage on observations
    ref = torch.where(tool_mask, torch.full_like(logp, 1e3), logp)  # KL 0 on own tokens, huge on observations
    batch = TrainBatch(prompt_ids, prompt_mask, completion, own, logp.clone(), advantages, ref, context_mask=context)
    max_len = 40
    metrics = update_policy(tiny_model, torch.optim.SGD(tiny_model.parameters(), lr=0.0), batch,
                            LossConfig(type=loss_type, beta=0.1), temperature=1.0, micro_batch_size=0,
                            max_grad_norm=0.0, max_completion_length=max_len)
    # ratio 1, advantage 1 on every own token: -1 per own token, normalised by own tokens only
    expected = -float(own.sum()) / (2 * max_len) if loss_type == "dr_grpo" else -1.0
    assert metrics["pg_loss"] == pytest.approx(expected, abs=1e-5)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["entropy"] == pytest.approx(float(entropy[own.bool()].mean()), rel=1e-4)


def test_step_spans_never_end_in_an_observation():
    tool_mask = torch.tensor([[False, False, True, True, False, False]])
    ends, scores = drop_observation_steps([[1, 3, 5]], [[1.0, 0.0, 1.0]], tool_mask)
    assert ends == [[1, 5]] and scores == [[1.0, 1.0]]


def _tool_cfg(extra=()):
    return load_config("recipes/tiny-arith.yaml", [
        "rollout.tools=[python]", "rollout.num_prompts=2", "rollout.group_size=2", "rollout.max_new_tokens=40",
        "reward.tool_error_penalty=0.5", "reward.overlong_cache_length=39", "reward.overlap_verification=false",
        *extra])


def test_rl_step_trains_own_tokens_and_scores_own_text(tiny_tokenizer, monkeypatch):
    tok = tiny_tokenizer
    prompt_a = "Question: Compute 3 + 4.\nSolution:\n"
    prompt_b = "Question: Compute 2 + 5.\nSolution:\n"
    raising, _ = transcript(tok, "1/0", "ZeroDivisionError: division by zero", "7")  # raises, then answers
    # answers only through the tool: the verifier must not read 7 in the output block (last number 5: wrong)
    answer_in_output, _ = transcript(tok, "2 + 5", "7", "7")
    answer_in_output = answer_in_output[: len(answer_in_output) - len(ids(tok, "Answer: 7")) - 1] + [tok.eos_token_id]
    model = ScriptedLM(tok, {prompt_a: raising, prompt_b: answer_in_output})
    cfg = _tool_cfg()
    captured = {}

    def capture(policy, optimizer, batch, *args, **kwargs):
        captured["batch"] = batch
        return {}

    monkeypatch.setattr(trainer, "update_policy", capture)
    rows = [{"question": "Compute 3 + 4.", "answer": "7"}, {"question": "Compute 2 + 5.", "answer": "7"}]
    verifiers = build_verifiers(cfg.reward.verifiers)
    tools = build_tools(cfg)
    try:
        metrics, samples = trainer.rl_step(cfg, model, None, tok, None, verifiers, rows, tools=tools)
    finally:
        tools.close()
    batch = captured["batch"]
    obs = batch.context_mask.bool() & ~batch.completion_mask.bool()
    assert int(obs.sum()) > 0  # observations are in the context ...
    assert (batch.old_logprobs[obs] == 0).all()  # ... with no sampler log-prob, and not in the loss mask
    assert metrics["tool/calls_per_completion"] == 1.0 and metrics["tool/call_rate"] == 1.0
    assert metrics["tool/error_rate"] == 0.5 and metrics["tool/observation_tokens"] > 0
    assert metrics["time/tools"] > 0
    own_lengths = batch.completion_mask.sum(1).float()  # (4,) rows a, a, b, b
    penalty = torch.where(own_lengths > 1, (1 - own_lengths) / 39, torch.zeros_like(own_lengths))
    expected = torch.tensor([1.0 - 0.5, 1.0 - 0.5, 0.0, 0.0]) + penalty  # correct-but-raised, answer-in-output
    assert metrics["reward/mean"] == pytest.approx(float(expected.mean()), abs=1e-5)
    assert "```output\nZeroDivisionError: division by zero\n```" in samples[0]["completion"]
    assert samples[0]["tool_calls"] == 1


def test_evaluation_calls_tools_and_reports_calls_per_completion(tiny_tokenizer):
    tok = tiny_tokenizer
    script, _ = transcript(tok, "3 + 4", "7", "7")
    model = ScriptedLM(tok, {PROMPT_B: script})
    cfg = _tool_cfg()
    toolset = ToolSet.build(["python"], 4, 64)
    try:
        result = evaluate(model, tok, [PROMPT_B], [{"answer": "7"}], build_verifiers(cfg.reward.verifiers),
                          max_new_tokens=40, pass_k=2, tools=toolset)
    finally:
        toolset.close()
    assert result["accuracy"] == 1.0 and result["pass@2"] == 1.0
    assert result["tool_calls_per_completion"] == 1.0 and result["tool_call_rate"] == 1.0
