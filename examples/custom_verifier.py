"""A user-defined verifier in a few lines: reward answers that are correct AND end the solution.

Use it from a recipe (or the command line) by its import path, mixed with the built-in one:

    reward:
      verifiers:
        - {name: math, weight: 1.0}
        - {name: "examples.custom_verifier:concise_answer", weight: 0.2, kwargs: {max_lines: 4}}
"""

from verifiers import VerifyResult, register
from verifiers.math import answers_equal, extract_answer


@register("concise_answer")
def concise_answer(completion: str, example: dict, max_lines: int = 4) -> VerifyResult:
    answer = extract_answer(completion)
    lines = [line for line in completion.splitlines() if line.strip()]
    correct = answer is not None and answers_equal(answer, example["answer"])
    ends_with_answer = bool(lines) and lines[-1].lower().startswith("answer")
    score = float(correct and ends_with_answer and len(lines) <= max_lines)
    return VerifyResult(score=score, info={"answer": answer, "lines": len(lines)})
