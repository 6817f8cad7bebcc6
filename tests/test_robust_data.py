"""Hostile data: a single local file is split into disjoint train/test parts by a hash of the
question; over-long prompt rows are skipped and counted at load time, never sampled."""

import json

import pytest

from data.loaders import DataError, load_task
from verifrl.config import load_config


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _single_file(tmp_path, n=200):
    return _jsonl(tmp_path / "all.jsonl", [{"question": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)}
                                            for i in range(n)])


def test_a_single_file_is_split_into_disjoint_train_and_test_by_question_hash(tmp_path):
    path = _single_file(tmp_path)
    cfg = load_config(None, ["data.source=json", f"data.path={path}", "data.num_test=0"]).data
    task = load_task(cfg)
    train, test = set(task.train["question"]), set(task.test["question"])
    assert not train & test, "held-out questions were trained on"
    assert len(train) + len(test) == 200
    assert 8 <= len(test) <= 35  # data.test_fraction 0.1 of 200, by hash
    assert any("200 rows" in note and f"{len(test)} test" in note for note in task.notes)
    again = load_task(cfg)  # deterministic: the same question always lands in the same split
    assert set(again.test["question"]) == test
    bigger = load_task(load_config(None, ["data.source=json", f"data.path={path}", "data.num_test=0",
                                          "data.test_fraction=0.5"]).data)
    assert test <= set(bigger.test["question"])  # the split is a threshold on a fixed hash


def test_a_given_test_file_is_used_as_is(tmp_path):
    path = _single_file(tmp_path)
    test_file = _jsonl(tmp_path / "held.jsonl", [{"question": "Held out?", "answer": "1"}])
    task = load_task(load_config(None, ["data.source=json", f"data.path={path}",
                                        f"data.test_path={test_file}"]).data)
    assert len(task.train) == 200 and task.test["question"] == ["Held out?"]


def test_a_single_file_too_small_for_a_test_part_is_a_one_line_error(tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", [{"question": "What is 1 + 1?", "answer": "2"}])
    cfg = load_config(None, ["data.source=json", f"data.path={path}", "data.test_fraction=0.01"]).data
    with pytest.raises(DataError, match="data.test_fraction|data.test_path") as err:
        load_task(cfg)
    assert len(str(err.value).splitlines()) == 1
