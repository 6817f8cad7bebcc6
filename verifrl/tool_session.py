"""Tool calls inside one sampling call: detect closed blocks, run them, queue the observation ids.

Place in the data flow: prompts -> **rollouts (tool calls inside)** -> verifier results -> ...

Token in, token out: :class:`ToolSession` never decodes a row to rebuild it. It decodes only the
row's own tail since its last observation, to see whether the token just sampled closed a tool
block; the observation is tokenized on its own and its ids are fed to the model one per step
(teacher-forced through the same KV-cache loop, so other rows keep decoding meanwhile), and the
training sequence is exactly the sampled ids with those observation ids between them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from verifrl.tools import OUTPUT_CLOSE, OUTPUT_OPEN, TRUNCATION_MARKER, ToolCall, build_tool, completed_call


@dataclass
class ToolSet:
    """The tools of a run and their budgets (``rollout.tools``, ``max_tool_calls``, ``max_observation_tokens``)."""

    tools: dict
    """name -> tool object with ``run_batch(calls)`` and ``close()``."""
    max_calls: int = 4
    max_observation_tokens: int = 256

    @classmethod
    def build(cls, names: list[str], max_calls: int, max_observation_tokens: int,
              options: dict | None = None) -> "ToolSet":
        options = options or {}
        return cls({name: build_tool(name, **options.get(name, {})) for name in names}, max_calls,
                   max_observation_tokens)

    def close(self) -> None:
        for tool in self.tools.values():
            tool.close()


def backtick_token_ids(tokenizer) -> list[int]:
    """Ids of every token whose text contains a backtick: only these can close a block."""
    cached = getattr(tokenizer, "_verifrl_backtick_ids", None)
    if cached is None:
        cached = sorted(i for piece, i in tokenizer.get_vocab().items() if "`" in piece)
        tokenizer._verifrl_backtick_ids = cached
    return cached


def encode_observation(tokenizer, text: str) -> list[int]:
    """Ids of observation text; special-token strings in tool output stay plain text (never an EOS)."""
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]


@dataclass
class ToolSession:
    """Tool-use state of the rows of one ``sample_loop`` call (rows are chunk-local indices)."""

    toolset: ToolSet
    tokenizer: object
    n_rows: int
    max_new_tokens: int
    pending: list[list[int]] = field(default_factory=list)  # observation ids still to feed, per row
    segment_start: list[int] = field(default_factory=list)  # column after the row's last observation
    history: list[list[str]] = field(default_factory=list)  # earlier cells of the row (python replay)
    model_tokens: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    observation_tokens: list[int] = field(default_factory=list)
    seconds: float = 0.0
    tool_mask: torch.Tensor | None = None  # (n_rows, T) set by the caller once sampling is done

    def __post_init__(self) -> None:
        n = self.n_rows
        self.pending, self.segment_start, self.history = [[] for _ in range(n)], [0] * n, [[] for _ in range(n)]
        self.model_tokens, self.calls, self.errors, self.observation_tokens = [0] * n, [0] * n, [0] * n, [0] * n
        self.names = sorted(self.toolset.tools)
        self._trigger = torch.tensor(backtick_token_ids(self.tokenizer), dtype=torch.long)

    @property
    def width(self) -> int:
        """Columns a row may need: its own tokens plus every observation it may receive."""
        return self.max_new_tokens + self.toolset.max_calls * self.toolset.max_observation_tokens

    def forced(self, rows: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(running,) bool: rows fed an observation token this step; (running,) those tokens."""
        ids = [self.pending[r][0] if self.pending[r] else -1 for r in rows.tolist()]
        ids = torch.tensor(ids, dtype=torch.long, device=device)
        return ids >= 0, ids.clamp(min=0)

    def after_token(self, tokens: torch.Tensor, rows: torch.Tensor, sampled: torch.Tensor, forced: torch.Tensor,
                    t: int) -> torch.Tensor:
        """Account the token written at column ``t``; run the calls it closed. Returns (running,) bool:
        rows whose own-token budget is spent."""
        row_list = rows.tolist()
        forced_list = forced.tolist()
        for r, was_forced in zip(row_list, forced_list):
            if was_forced:
                self.pending[r].pop(0)
            else:
                self.model_tokens[r] += 1
        candidates = (~forced) & torch.isin(sampled, self._trigger.to(sampled.device))
        spent = torch.tensor([self.model_tokens[r] >= self.max_new_tokens for r in row_list], device=sampled.device)
        if bool(candidates.any()):
            self._run_calls(tokens, [row_list[i] for i in candidates.nonzero().squeeze(1).tolist()], t)
        return spent

    def _run_calls(self, tokens: torch.Tensor, rows: list[int], t: int) -> None:
        found: dict[str, list[tuple[int, str, str]]] = {}
        for r in rows:
            if self.calls[r] >= self.toolset.max_calls or self.model_tokens[r] >= self.max_new_tokens:
                continue
            tail = self.tokenizer.decode(tokens[r, self.segment_start[r]: t + 1].tolist(), skip_special_tokens=True)
            call = completed_call(tail, self.names)
            if call is not None:
                found.setdefault(call[0], []).append((r, call[1], tail))
        if not found:
            return
        start = time.perf_counter()
        for name, items in found.items():  # the rows that closed a block at this token: one batch per tool
            results = self.toolset.tools[name].run_batch([ToolCall(code, list(self.history[r]))
                                                          for r, code, _ in items])
            for (r, code, tail), result in zip(items, results):
                ids = self._observation_ids(result.text, tail)
                self.pending[r] = ids
                self.segment_start[r] = t + 1 + len(ids)
                self.calls[r] += 1
                self.errors[r] += int(result.error)
                self.observation_tokens[r] += len(ids)
                if result.keep_in_history:
                    self.history[r].append(code)
        self.seconds += time.perf_counter() - start

    def _observation_ids(self, result: str, tail: str) -> list[int]:
        """The output block's ids, the body cut so the block fits ``max_observation_tokens``."""
        lead = "" if tail.endswith("\n") else "\n"
        head = encode_observation(self.tokenizer, lead + OUTPUT_OPEN)
        close = encode_observation(self.tokenizer, OUTPUT_CLOSE)
        body = encode_observation(self.tokenizer, result.rstrip("\n"))
        room = self.toolset.max_observation_tokens - len(head) - len(close)
        if len(body) > room:
            marker = encode_observation(self.tokenizer, TRUNCATION_MARKER)
            body = (body[: max(0, room - len(marker))] + marker)[: max(0, room)]  # the fences always stay
        return head + body + close


def tool_metrics(batch) -> dict[str, float]:
    """tool/calls_per_completion, call_rate, error_rate (per call), observation_tokens (per completion)."""
    if batch.tool_mask is None:
        return {}
    calls = batch.tool_calls.float()
    return {"tool/calls_per_completion": float(calls.mean()),
            "tool/call_rate": float((calls > 0).float().mean()),
            "tool/error_rate": float(batch.tool_errors.sum()) / max(1.0, float(calls.sum())),
            "tool/observation_tokens": float(batch.tool_mask.sum(1).float().mean())}
