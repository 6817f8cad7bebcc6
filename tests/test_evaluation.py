"""Held-out evaluation: the unbiased pass@k estimator by hand, and engines that agree greedily."""

import pytest

from verifrl.evaluation import evaluate, pass_at_k


def test_pass_at_k_hand_computed():
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(5, 2, 1) == pytest.approx(2 / 5)  # pass@1 is the share correct
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0  # any 2 of the 4 include a correct one
    assert pass_at_k(8, 2, 8) == 1.0
    with pytest.raises(ValueError, match="at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_evaluation_gives_the_same_numbers_with_the_loop_and_hf_engines(tiny_model, tiny_tokenizer):
    from verifrl.embedded import prompt_text
    from verifrl.scoring import NamedVerifier

    def length_parity(completion: str, example: dict) -> float:
        return float(len(completion) % 2)

    questions = ["Compute 3 + 4.", "Tom has 5 pens and buys 12 more. How many pens?", "Compute 9 - 2."]
    prompts, rows = [prompt_text(q) for q in questions], [{"answer": "7"}] * 3
    verifiers = [NamedVerifier("parity", 1.0, length_parity)]
    loop = evaluate(tiny_model, tiny_tokenizer, prompts, rows, verifiers, max_new_tokens=12, engine="loop")
    hf = evaluate(tiny_model, tiny_tokenizer, prompts, rows, verifiers, max_new_tokens=12, engine="hf")
    assert loop == hf and loop["n"] == 3
