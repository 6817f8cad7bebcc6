from verifrl.tasks.arithmetic import arithmetic_dataset, generate_problems, split_of


def test_splits_never_overlap_whatever_the_seeds():
    train = {p.question for p in generate_problems(3000, "train", seed=1)}
    test = {p.question for p in generate_problems(800, "test", seed=2)}
    assert not train & test
    assert all(split_of(q) == "test" for q in test)


def test_generation_is_deterministic_and_distinct():
    a = generate_problems(200, "train", seed=3)
    b = generate_problems(200, "train", seed=3)
    assert a == b
    assert len({p.question for p in a}) == 200
    assert generate_problems(200, "train", seed=4) != a


def test_solutions_are_correct_step_by_step():
    # every "x op y = z" line of every solution holds, and the last line states the answer
    for p in generate_problems(500, "train", seed=0):
        lines = p.solution().splitlines()
        assert lines[-1] == f"Answer: {p.answer}"
        for line in lines[:-1]:
            left, right = line.split(" = ")
            x, op, y = left.split(" ")
            value = {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op]
            assert value == int(right), line
        assert int(lines[-2].split(" = ")[1]) == p.answer
        assert p.answer >= 0


def test_dataset_has_the_columns_and_all_difficulties():
    ds = arithmetic_dataset("test", 100, seed=0)
    assert set(ds.column_names) == {"question", "answer", "solution", "difficulty"}
    assert set(ds["difficulty"]) == {1, 2, 3, 4}
    assert all(a.isdigit() for a in ds["answer"])


def test_long_chain_has_five_to_eight_dependent_checked_steps():
    # difficulty 7: 5 and 6 are the tool-use levels (two-digit products)
    from verifiers.steps import MathStepVerifier

    problems = generate_problems(300, "train", seed=0, difficulties=(7,))
    assert {len(p.steps) for p in problems} == {5, 6, 7, 8}
    verifier = MathStepVerifier(segmenter="line")
    for p in problems[:50]:
        # each step starts from the previous step's result, and math_steps checks every one
        for before, after in zip(p.steps, p.steps[1:]):
            assert after.split(" ")[0] == before.split(" = ")[1]
        result = verifier(p.solution(), {"question": p.question, "answer": str(p.answer)})
        assert result.score == 1.0 and result.step_scores == [1.0] * (len(p.steps) + 1)
        assert 0 <= p.answer <= 60 and eval(p.expression) == p.answer  # noqa: S307 (our own text)


def test_default_mix_is_unchanged_by_the_long_chain():
    # the long chain (7) is opt-in: the default draws only 1-4, exactly as before it existed (the
    # digest of these 400 problems was taken from the generator before the long chain was added)
    import hashlib

    problems = generate_problems(400, "train", seed=0)
    assert {p.difficulty for p in problems} == {1, 2, 3, 4}
    text = "".join(p.question + p.solution() for p in problems)
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == "d15b7e7214aa06d4"
