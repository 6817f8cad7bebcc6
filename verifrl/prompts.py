"""Prompts: dataset rows -> prompt strings, and a seeded, resumable order over the train split.

Place in the data flow: **prompts** -> rollouts -> verifier results -> ...
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

import datasets

from verifrl.config import Config
from verifrl.tasks.loaders import load_task


class PromptError(ValueError):
    """A prompt template cannot be filled from a dataset row."""


def template_fields(template: str) -> list[str]:
    """Column names a ``str.format`` template uses (``{question}`` -> ["question"])."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def format_prompt(row: dict[str, Any], template: str, tokenizer=None, use_chat_template: bool = False,
                  system_prompt: str = "") -> str:
    """Fill the template from the row; optionally wrap it as a chat user turn."""
    try:
        text = template.format(**row)
    except (KeyError, IndexError) as err:
        raise PromptError(f"prompt template needs column {err} which the row lacks ({sorted(row)})") from None
    if not use_chat_template:
        return text
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise PromptError("data.use_chat_template is true but the tokenizer has no chat template")
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": text}
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class PromptSampler:
    """Epochs over the train split in a seeded shuffled order; its state survives a resume."""

    def __init__(self, dataset: datasets.Dataset, seed: int) -> None:
        if len(dataset) == 0:
            raise PromptError("the train split is empty")
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> list[int]:
        order = list(range(len(self.dataset)))
        random.Random(f"{self.seed}-{epoch}").shuffle(order)
        return order

    def next_rows(self, n: int) -> list[dict[str, Any]]:
        rows = []
        while len(rows) < n:
            if self.position == len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._shuffled(self.epoch)
            rows.append(self.dataset[self._order[self.position]])
            self.position += 1
        return rows

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._shuffled(self.epoch)


@dataclass
class Task:
    """The prompts of both splits, formatted once."""

    sampler: PromptSampler
    test_prompts: list[str]
    test_rows: list[dict]
    skipped: dict = field(default_factory=dict)


def prompt_for(cfg: Config, row: dict, tokenizer) -> str:
    """The prompt of a dataset row as the recipe formats it (template, chat template, system prompt)."""
    return format_prompt(row, cfg.data.prompt_template, tokenizer, cfg.data.use_chat_template, cfg.data.system_prompt)


def prepare_task(cfg: Config, tokenizer) -> Task:
    """Load the recipe's dataset: a resumable sampler over the train split and the formatted test prompts."""
    data = load_task(cfg.data)
    missing = [f for f in template_fields(cfg.data.prompt_template) if f not in data.train.column_names]
    if missing:
        raise ValueError(f"data.prompt_template uses column(s) {missing} that the dataset lacks "
                         f"(it has {data.train.column_names})")
    test_rows = [data.test[i] for i in range(len(data.test))]
    if cfg.data.num_test:
        test_rows = test_rows[: cfg.data.num_test]
    test_prompts = [prompt_for(cfg, row, tokenizer) for row in test_rows]
    return Task(PromptSampler(data.train, cfg.data.seed), test_prompts, test_rows, data.skipped)
