"""Hostile data: a single local file is split into disjoint train/test parts by a hash of the
question; over-long prompt rows are skipped and counted at load time, never sampled."""

import json

import pytest

from verifrl.tasks.loaders import DataError, load_task
from verifrl.config_loading import load_config


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


def _rows_with_huge_prompts(tmp_path):
    rows = [{"question": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(60)]
    rows.insert(7, {"question": "7 + " * 2_500_000 + "1?", "answer": "1"})  # a 10 MB prompt
    rows.insert(30, {"question": "1 + " * 12_500 + "1?", "answer": "1"})  # a 50 KB prompt
    return _jsonl(tmp_path / "hostile.jsonl", rows)


class _CountingTokenizer:
    """The tiny tokenizer, counting the characters it is asked to tokenize."""

    def __init__(self, tokenizer):
        self.tokenizer, self.characters = tokenizer, 0

    def __call__(self, text, **kwargs):
        self.characters += len(text)
        return self.tokenizer(text, **kwargs)

    def get_vocab(self):
        return self.tokenizer.get_vocab()


def test_over_long_prompts_are_skipped_and_a_10_mb_one_is_never_tokenized(tiny_tokenizer):
    from verifrl.prompts import measure_prompts

    prompts = ["Question: What is 2 + 3?\nSolution:\n", "7 + " * 2_500_000, "1 + " * 12_500, "Question: 5 * 6?"]
    counting = _CountingTokenizer(tiny_tokenizer)
    fit = measure_prompts(prompts, counting, max_tokens=64)
    assert fit.kept == [0, 3]
    assert fit.longest == len(tiny_tokenizer(prompts[0], add_special_tokens=False)["input_ids"])
    assert counting.characters < 100_000  # the 10 MB prompt was ruled out by its length alone
    assert measure_prompts(prompts[:1], tiny_tokenizer, max_tokens=0).kept == [0]  # 0: no limit


def test_sampling_memory_estimate_is_the_hand_computed_sum():
    from transformers import Qwen2Config

    from verifrl.memory import SamplingShape, sampling_bytes

    config = Qwen2Config(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=64,
                         vocab_size=100)
    parts = sampling_bytes(config, SamplingShape(rows=8, prefill_rows=2, prompt_tokens=10, new_tokens=6),
                           dtype_bytes=4, scores_materialised=True, last_logits_only=False)
    assert parts["kv_cache"] == 2 * 2 * 2 * 16 * 8 * 16 * 4  # K,V x layers x kv heads x head dim x rows x len x 4
    assert parts["attention"] == 2 * 4 * 10 * 10 * 4  # prefill rows x heads x prompt^2 x 4
    assert parts["logits"] == 2 * 10 * 100 * 4 + 3 * 8 * 100 * 4


def _train_args(tmp_path, path, *extra):
    from tests.conftest import tiny_model_overrides

    return ["train", "recipes/tiny-arith.yaml", *tiny_model_overrides(), "data.source=json", f"data.path={path}",
            "data.test_fraction=0.3", "trainer.steps=1", "rollout.num_prompts=2", "rollout.group_size=2",
            "rollout.max_new_tokens=4", "logging.wandb=disabled", "logging.progress=false",
            "checkpoint.save_final_model=false", "--run-dir", str(tmp_path / "run"), *extra]


@pytest.mark.slow
def test_a_dataset_with_10_mb_and_50_kb_prompts_trains_with_both_skipped_and_counted(tmp_path, capsys):
    from verifrl.cli import main

    assert main(_train_args(tmp_path, _rows_with_huge_prompts(tmp_path), "data.max_prompt_tokens=256")) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    too_long = summary["data"]["skipped_too_long"]
    assert too_long["train"] + too_long["test"] == 2
    assert summary["data"]["train_rows"] + summary["data"]["test_rows"] == 60
    assert "longer than data.max_prompt_tokens=256 tokens" in out
    assert 0 < summary["data"]["longest_prompt_tokens"] <= 256


def test_a_sampling_batch_that_cannot_fit_fails_before_sampling_naming_the_knobs(tmp_path, capsys):
    from verifrl.cli import main

    path = _single_file(tmp_path)
    assert main(_train_args(tmp_path, path, "rollout.max_memory_gb=0.00001")) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("verifrl: error")]
    assert len(errors) == 1
    err = errors[0]
    assert "rollout.max_memory_gb" in err and "rollout.chunk_size" in err and "data.max_prompt_tokens" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing was sampled
