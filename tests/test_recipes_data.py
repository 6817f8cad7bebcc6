"""GSM8K / MATH / MATH-500 loaders on local files in the hub schemas, and the real-model recipes:
each loads, takes an override, and dry-runs to its first scored batch on the tiny model."""

import json
import shutil

import pytest

from pathlib import Path

from verifrl.tasks.code import load_code_rows
from verifrl.tasks.loaders import DataError, load_task
from tests.conftest import tiny_model_overrides
from verifrl.cli import main
from verifrl.config_loading import load_config
from verifrl.dryrun import dry_run
from verifrl.models import load_tokenizer, model_path

GSM8K_RECIPE = "recipes/gsm8k-qwen2.5-0.5b.yaml"
MATH_RECIPE = "recipes/math-qwen2.5-1.5b.yaml"
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>\n{% endif %}")


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _gsm8k_dir(root):
    train = [
        {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"question": "A farm sells 1,000 eggs twice. How many?", "answer": "2 * 1000 = 2000\n#### 2,000"},
        {"question": "No marker here.", "answer": "The answer is 5."},  # skipped: no ####
        {"question": "Null answer?", "answer": None},  # skipped
        {"question": "", "answer": "#### 3"},  # skipped: empty question
    ]
    test = [{"question": "What is 6 * 7?", "answer": "6 * 7 = 42\n#### 42"},
            {"question": "Negative?", "answer": "#### -3"}]
    _jsonl(root / "train.jsonl", train)
    _jsonl(root / "test.jsonl", test)
    return root


def _math_files(root):
    train = _jsonl(root / "math_train.jsonl", [
        {"problem": "Compute $1/2 + 1/4$.", "solution": "We get $\\boxed{\\frac{3}{4}}$.", "level": "Level 1",
         "type": "Prealgebra"},
        {"problem": "Solve $x^2 = 4$, $x > 0$.", "solution": "So $x = \\boxed{2}$.", "level": "Level 2",
         "type": "Algebra"},
        {"problem": "No box.", "solution": "The answer is clearly two.", "level": "Level 3", "type": "Algebra"},
        {"problem": "Interval?", "solution": "It is $\\boxed{[0, \\infty)}$.", "level": "Level 5",
         "type": "Intermediate Algebra"},
    ])
    test = _jsonl(root / "math500_test.jsonl", [
        {"problem": "What is $2+3$?", "solution": "$2+3=5$.", "answer": "5", "subject": "Prealgebra",
         "level": 1, "unique_id": "test/prealgebra/1.json"},
        {"problem": "Simplify $\\sqrt{8}$.", "solution": "$2\\sqrt2$", "answer": "2\\sqrt{2}", "subject": "Algebra",
         "level": 2, "unique_id": "test/algebra/2.json"},
        {"problem": "Missing answer.", "solution": "", "answer": "", "subject": "Algebra", "level": 3,
         "unique_id": "test/algebra/3.json"},
    ])
    return train, test


SAMPLES = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("source, name, fields, answers", [
    ("gsm8k", "gsm8k-sample.jsonl", {}, ["72", "10", "3750"]),
    ("math", "math-sample.jsonl", {}, ["12", "\\frac{7}{12}", "4"]),
    ("json", "generic-sample.json", {"question_field": "prompt", "answer_field": "target"}, ["56", "10", "1024"]),
])
def test_the_shipped_sample_files_load_in_their_format(source, name, fields, answers):
    from verifrl.config import DataConfig

    task = load_task(DataConfig(source=source, path=str(SAMPLES / name), test_split="train", **fields))
    assert list(task.train["answer"]) == answers and task.skipped == {"train": 0, "test": 0}


@pytest.mark.parametrize("schema, name, count", [("mbpp", "mbpp-sample.jsonl", 3), ("humaneval", "humaneval-sample.jsonl", 1)])
def test_the_shipped_code_samples_convert_without_dropped_rows(schema, name, count):
    rows, skipped = load_code_rows(str(SAMPLES / name), schema)
    assert (len(rows), skipped) == (count, 0) and all(json.loads(r["tests"])["asserts"] for r in rows)


def test_gsm8k_loader_parses_the_hash_answer_and_counts_skipped_rows(tmp_path):
    cfg = load_config(GSM8K_RECIPE, [f"data.path={_gsm8k_dir(tmp_path / 'gsm8k')}"]).data
    task = load_task(cfg)
    assert sorted(task.train["answer"]) == ["2000", "7"]  # thousands separator removed
    assert task.test["answer"] == ["42", "-3"]
    assert task.skipped == {"train": 3, "test": 0}
    assert "How many?" in task.train[0]["question"]


def test_math_loader_takes_the_boxed_answer_and_a_separate_math500_test_file(tmp_path):
    train, test = _math_files(tmp_path)
    cfg = load_config(MATH_RECIPE, [f"data.path={train}", f"data.test_path={test}"]).data
    task = load_task(cfg)
    by_question = dict(zip(task.train["question"], task.train["answer"]))
    assert by_question == {"Compute $1/2 + 1/4$.": "\\frac{3}{4}", "Solve $x^2 = 4$, $x > 0$.": "2",
                           "Interval?": "[0, \\infty)"}
    assert "level" in task.train.column_names and "type" in task.train.column_names
    assert task.test["answer"] == ["5", "2\\sqrt{2}"]  # MATH-500's answer column, not the solution
    assert task.skipped == {"train": 1, "test": 1}


@pytest.mark.parametrize("source, rows, column", [
    ("gsm8k", [{"question": "1+1?", "solution": "#### 2"}], "answer"),
    ("math", [{"question": "1+1?", "solution": "\\boxed{2}"}], "problem"),
])
def test_a_file_missing_a_column_is_a_one_line_error_naming_it(tmp_path, source, rows, column):
    path = _jsonl(tmp_path / "data.jsonl", rows)
    cfg = load_config(None, [f"data.source={source}", f"data.path={path}"]).data
    with pytest.raises(DataError) as err:
        load_task(cfg)
    message = str(err.value)
    assert f"'{column}'" in message and str(path) in message and len(message.splitlines()) == 1


@pytest.fixture()
def chat_model(tmp_path):
    """The tiny embedded model saved with a simple chat template (Qwen's needs the real vocabulary)."""
    cfg = load_config(None, tiny_model_overrides())
    target = tmp_path / "tiny-chat"
    shutil.copytree(model_path(cfg.model, log=lambda *a: None), target)
    tokenizer = load_tokenizer(str(target))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(target)
    return target


SMALL = ["rollout.num_prompts=2", "rollout.group_size=2", "rollout.max_new_tokens=6", "trainer.micro_batch_size=2"]


@pytest.mark.parametrize("recipe", [GSM8K_RECIPE, MATH_RECIPE])
def test_recipe_loads_accepts_overrides_and_dry_runs_to_the_first_batch(tmp_path, chat_model, recipe, capsys):
    if recipe == GSM8K_RECIPE:
        data = [f"data.path={_gsm8k_dir(tmp_path / 'gsm8k')}"]
    else:
        train, test = _math_files(tmp_path)
        data = [f"data.path={train}", f"data.test_path={test}"]
    base = load_config(recipe)
    assert base.data.use_chat_template and "\\boxed{}" in base.data.system_prompt
    assert base.trainer.lr == pytest.approx(1e-6) and base.loss.beta == pytest.approx(0.04)
    cfg = load_config(recipe, [f"model.name_or_path={chat_model}", *data, *SMALL, "trainer.lr=3e-6"])
    assert cfg.trainer.lr == pytest.approx(3e-6) and cfg.rollout.group_size == 2
    result = dry_run(cfg, log=lambda *a: None)
    assert len(result["prompts"]) == 2 and len(result["completions"]) == 4 and len(result["rewards"]) == 4
    for prompt in result["prompts"]:
        assert prompt.startswith("<system>\nPlease reason step by step, and put your final answer within \\boxed{}.")
        assert prompt.endswith("<assistant>\n")
    assert all(r in (0.0, 1.0) for r in result["rewards"])  # scored by the math verifier
    assert all(reason for reason in result["reasons"])
    assert result["skipped"]["train"] >= 1

    # the same through the command line, overrides on both sides of the option
    overrides = [f"model.name_or_path={chat_model}", *data, *SMALL]
    assert main(["train", recipe, *overrides, "--dry-run", f"logging.output_dir={tmp_path / 'runs'}"]) == 0
    out = capsys.readouterr().out
    assert "dry run:" in out and "--- prompt 0" in out and "mean reward" in out
    assert not (tmp_path / "runs").exists()  # nothing written
