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
