"""verifrl's verifiers inside other trainers: a real trl.GRPOTrainer step, and verl's compute_score signature."""

import json
import subprocess
import sys

import pytest

from verifiers.integrations import trl_reward, verifier_for_data_source, verl_compute_score
from verifiers.math import MathVerifier


def test_trl_reward_scores_strings_and_chat_messages_with_dataset_columns():
    reward = trl_reward("math")
    assert reward.__name__ == "math"
    completions = [
        "2 + 3 = 5\nAnswer: 5",
        [{"role": "assistant", "content": "so the answer is \\boxed{\\frac{1}{2}}"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "Answer: 7"}]}],
        "",
    ]
    logged = {}
    scores = reward(prompts=["p"] * 4, completions=completions, completion_ids=[[1]] * 4,
                    answer=["5", "0.5", "8", "3"], trainer_state=None,
                    log_extra=lambda column, values: logged.setdefault(column, values), log_metric=None)
    assert scores == [1.0, 1.0, 0.0, 0.0]
    assert logged == {"math_reason": ["correct", "correct", "wrong", "no_answer"]}


def test_trl_reward_passes_verifier_options_and_names_a_missing_column():
    reward = trl_reward("math", answer_key="solution")
    assert reward(prompts=["p"], completions=["Answer: 4"], solution=["#### 4"]) == [1.0]
    with pytest.raises(KeyError, match="no column 'solution'.*answer"):
        reward(prompts=["p"], completions=["Answer: 4"], answer=["4"])


def test_verl_compute_score_picks_the_verifier_by_data_source():
    assert verifier_for_data_source("openai/gsm8k") == "math"
    assert verifier_for_data_source("DigitalLearningGmbH/MATH-lighteval") == "math"
    assert verifier_for_data_source("aime_2024") == "math"
    assert verifier_for_data_source("codecontests") == "code"
    with pytest.raises(ValueError, match="no verifier for data_source 'searchR1_nq'"):
        verifier_for_data_source("searchR1_nq")
    assert verl_compute_score("openai/gsm8k", "48 + 24 = 72\n#### 72", "72") == {"score": 1.0, "acc": 1.0}
    assert verl_compute_score("lighteval/MATH", "so $\\boxed{\\dfrac{3}{4}}$", "0.75") == {"score": 1.0, "acc": 1.0}
    assert verl_compute_score("lighteval/MATH", "\\boxed{5}", "4")["score"] == 0.0
    # an unknown source is scored once the verifier is named, by extra_info or reward_kwargs
    assert verl_compute_score("my_qa", "Answer: 12", "12", extra_info={"verifier": "math"})["score"] == 1.0
    assert verl_compute_score("my_qa", "Answer: 12", "12", verifier="math")["score"] == 1.0


def test_verl_compute_score_runs_code_against_tests_from_ground_truth_or_extra_info():
    program = "```python\nprint(sum(map(int, input().split())))\n```"
    stdio = json.dumps({"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]})  # verl's codecontests layout
    assert verl_compute_score("codecontests", program, stdio) == {"score": 1.0, "acc": 1.0}
    half = json.dumps({"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "11\n"]})
    assert verl_compute_score("codecontests", program, half) == {"score": 0.5, "acc": 0.0}
    function = "```python\ndef add(a, b):\n    return a + b\n```"
    tests = {"entry_point": "add", "asserts": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]}
    assert verl_compute_score("mbpp", function, None, extra_info={"tests": tests, "index": 3})["score"] == 1.0


def test_integrations_import_neither_verifrl_nor_torch():
    code = ("import sys, verifiers.integrations; "
            "print(sorted(m for m in ('verifrl', 'torch', 'transformers', 'trl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_a_real_trl_grpo_step_is_rewarded_by_the_math_verifier(tmp_path, tiny_model, tiny_tokenizer):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from verifrl.embedded import prompt_text  # noqa: F401

    tiny_tokenizer.padding_side = "left"
    # the untrained model is nudged towards ending on "7" (a logit bias on the sampler, not on the
    # reward) so that some completions are right and some wrong, and the step has something to learn
    seven, eos = tiny_tokenizer.convert_tokens_to_ids("7"), tiny_tokenizer.eos_token_id
    rows = [("3 + 4", "7"), ("1 + 6", "7"), ("2 * 4", "8"), ("9 - 6", "3")]
    dataset = Dataset.from_dict({"prompt": [prompt_text(q) for q, _ in rows], "answer": [a for _, a in rows]})
    reward = trl_reward("math")
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=12, learning_rate=1e-3, logging_steps=1, report_to=[],
                      save_strategy="no", use_cpu=True, bf16=False, seed=0, dataloader_num_workers=0,
                      generation_kwargs={"sequence_bias": {(seven,): 6.0, (seven, eos): 30.0}})
    trainer = GRPOTrainer(model=tiny_model, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tiny_tokenizer)
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    trainer.train()
    try:
        assert trainer.state.global_step == 1
        # the rewards TRL logged are the math verifier's scores of the completions it logged
        completions, logged = list(trainer._logs["completion"]), list(trainer._logs["rewards"]["math"])
        prompts = list(trainer._logs["prompt"])
        assert len(completions) == len(logged) == 8
        answer_of = {prompt_text(q): a for q, a in rows}
        direct = MathVerifier()
        expected = [direct(c, {"answer": answer_of[p]}).score for p, c in zip(prompts, completions)]
        assert logged == expected
        assert 0 < sum(expected) < len(expected)  # right and wrong completions both occurred
        assert any(not p.detach().equal(before[n]) for n, p in tiny_model.named_parameters())
        step_log = next(entry for entry in trainer.state.log_history if "rewards/math/mean" in entry)
        assert step_log["rewards/math/mean"] == pytest.approx(sum(expected) / len(expected))
        assert list(trainer._logs["extra"]["math_reason"])  # the verifier's reasons reach TRL's table
    finally:
        reward.close()
