"""Dataset loaders: every source becomes rows with ``question`` and ``answer`` columns.

Place in the data flow: **prompts** -> rollouts -> ...

Sources (``data.source`` in a recipe):
- ``arithmetic``: the built-in generator (:mod:`verifrl.tasks.arithmetic`), no files needed.
- ``gsm8k``: GSM8K's schema (``question``, ``answer`` ending in ``#### N``); hub ``openai/gsm8k``
  (config ``main``) or a local json/jsonl/parquet file or directory in that schema.
- ``math``: Hendrycks MATH / MATH-500 schema (``problem``, ``solution`` with a ``\\boxed{}``
  answer, optional ``answer``, ``level``, ``type``/``subject``); hub
  ``EleutherAI/hendrycks_math`` (its seven subject configurations concatenated, or those named in
  ``data.subsets``) for training and ``HuggingFaceH4/MATH-500`` for evaluation
  (``data.test_path``).
- ``hf`` / ``json``: any dataset; ``data.question_field`` and ``data.answer_field`` name the columns.

Rows whose question or reference answer is missing or empty are skipped and counted (the count
is returned and logged), never passed on to crash a verifier later. A file or dataset without
the needed columns raises :class:`DataError` naming it and the columns, before any model loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from verifrl.tasks.arithmetic import arithmetic_dataset

DEFAULT_HUB_NAMES = {
    "gsm8k": ("openai/gsm8k", "main"),
    "math": ("EleutherAI/hendrycks_math", None),
}
# hub datasets that have no default configuration: the ones a recipe gets without naming subsets
DEFAULT_SUBSETS = {
    "openai/gsm8k": ["main"],
    "EleutherAI/hendrycks_math": ["algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                                  "number_theory", "prealgebra", "precalculus"],
}
_LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


class DataError(ValueError):
    """A dataset cannot be used as configured; the message names the file or dataset."""


@dataclass
class LoadedTask:
    train: datasets.Dataset
    test: datasets.Dataset
    skipped: dict[str, int]  # split -> rows dropped for a missing question/answer


def gsm8k_reference(answer_text: str) -> str | None:
    """The number after ``####`` in a GSM8K answer, thousands separators removed."""
    match = re.search(r"####\s*(.+?)\s*$", answer_text.strip())
    return match.group(1).replace(",", "").strip() if match else None


def math_reference(row: dict[str, Any]) -> str | None:
    """MATH's reference: the ``answer`` column when present (MATH-500), else the last
    ``\\boxed{}`` of the worked solution (Hendrycks MATH); None for a solution without a box."""
    if row.get("answer"):
        return str(row["answer"])
    from verifiers.math import extract_answer  # the same extractor the reward uses
    from verifiers.math.extract import find_boxes

    solution = str(row.get("solution") or "")
    if not any(box[2].strip() for box in find_boxes(solution)):
        return None  # no boxed answer: "the answer is clearly two" is prose, not a reference
    return extract_answer(solution, last_number_fallback=False)


def _read_all(path: str, split: str, subsets: list[str]) -> datasets.Dataset:
    """One split of a local file/directory or hub dataset; hub subsets are concatenated."""
    local = Path(path).expanduser()
    names = list(subsets) or ([] if local.exists() else DEFAULT_SUBSETS.get(path, []))
    if local.exists() or not names:
        return _read(path, split, None)
    return datasets.concatenate_datasets([_read(path, split, name) for name in names])


def _read(path: str, split: str, config_name: str | None) -> datasets.Dataset:
    local = Path(path).expanduser()
    if local.exists():
        files: str | list[str]
        if local.is_dir():
            matches = sorted(p for p in local.rglob("*") if split in p.stem and p.suffix in _LOCAL_FORMATS)
            if not matches:
                raise DataError(f"{local}: no {split} file (*{split}*.jsonl/.json/.parquet/.csv) in the directory")
            files, suffix = [str(p) for p in matches], matches[0].suffix
        else:
            files, suffix = str(local), local.suffix
        if suffix not in _LOCAL_FORMATS:
            raise DataError(f"{local}: unsupported file type {suffix!r} (use jsonl, json, parquet or csv)")
        try:
            return datasets.load_dataset(_LOCAL_FORMATS[suffix], data_files=files, split="train")
        except Exception as err:  # datasets wraps parse errors in many types
            raise DataError(f"{local}: cannot be read as {_LOCAL_FORMATS[suffix]}: {err}") from err
    try:
        return datasets.load_dataset(path, config_name, split=split)
    except Exception as err:
        raise DataError(f"dataset {path!r} split {split!r}: cannot be loaded ({type(err).__name__}: {err})") from err


def _require_columns(ds: datasets.Dataset, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: missing column(s) {missing}; it has {ds.column_names}")


def _normalise(ds: datasets.Dataset, source: str, question_field: str, answer_field: str, where: str):
    """Map a raw split to rows with question/answer; returns (dataset, skipped count)."""
    if source == "gsm8k":
        _require_columns(ds, ["question", "answer"], where)
        ds = ds.map(lambda r: {"question": r["question"], "answer": gsm8k_reference(r["answer"] or "") or ""})
    elif source == "math":
        _require_columns(ds, ["problem"], where)
        if "answer" not in ds.column_names and "solution" not in ds.column_names:
            raise DataError(f"{where}: a MATH dataset needs an 'answer' or a 'solution' column; it has {ds.column_names}")
        ds = ds.map(lambda r: {"question": r["problem"], "answer": math_reference(r) or ""})
    else:
        _require_columns(ds, [question_field, answer_field], where)
        ds = ds.map(lambda r: {"question": r[question_field], "answer": r[answer_field]})
    before = len(ds)
    ds = ds.filter(lambda r: bool(str(r["question"] or "").strip()) and r["answer"] is not None
                   and bool(str(r["answer"]).strip()))
    return ds, before - len(ds)


def load_task(cfg) -> LoadedTask:
    """Train and test splits for a :class:`verifrl.config.DataConfig`."""
    if cfg.source == "arithmetic":
        return LoadedTask(
            arithmetic_dataset("train", cfg.num_train, seed=cfg.seed),
            arithmetic_dataset("test", cfg.num_test or 1000, seed=cfg.seed),
            {"train": 0, "test": 0},
        )
    if cfg.source not in ("gsm8k", "math", "hf", "json"):
        raise DataError(f"data.source: unknown source {cfg.source!r} (arithmetic, gsm8k, math, hf, json)")
    if cfg.source in ("hf", "json") and not cfg.path:
        raise DataError(f"data.path: source {cfg.source!r} needs a hub name or a local file")
    train_name = cfg.path or DEFAULT_HUB_NAMES[cfg.source][0]
    subsets = list(cfg.subsets)
    test_path = cfg.test_path
    splits, skipped = {}, {}
    for role, split in (("train", cfg.train_split), ("test", cfg.test_split)):
        name = test_path if role == "test" and test_path else train_name
        # subsets name configurations of data.path; a separate test dataset uses its own default
        raw = _read_all(name, split, subsets if name == train_name else [])
        where = f"{name} [{split}]"
        ds, skipped[role] = _normalise(raw, cfg.source, cfg.question_field, cfg.answer_field, where)
        if len(ds) == 0:
            raise DataError(f"{where}: no usable rows (all {skipped[role]} lacked a question or answer)")
        cap = cfg.num_train if role == "train" else cfg.num_test
        if cap and len(ds) > cap:
            ds = ds.shuffle(seed=cfg.seed).select(range(cap))
        splits[role] = ds
    return LoadedTask(splits["train"], splits["test"], skipped)
