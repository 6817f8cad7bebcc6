"""Tools the policy calls mid-rollout: a registry, the built-in sandboxed ``python`` tool, transcripts.

Place in the data flow: prompts -> **rollouts (tool calls inside)** -> verifier results -> ...

Call syntax: the model writes a fenced block whose language is the tool's name and closes it::

    ```python
    x = 48 * 37
    x + 25
    ```

The sampler (``verifrl.samplers.sample_loop``) pauses that row at the closing fence, the tool
turns the block's text into an observation text, and the observation is spliced into the row as
a ```` ```output ```` block of tokens (:mod:`verifrl.tool_session`) before the row resumes.

Defining a tool is as short as defining a verifier: ``@register_tool("name")`` on a function
``text -> observation text`` (an exception becomes the observation and counts as an error), or on
a class whose instances have ``run_batch(calls) -> results`` (many calls at once, e.g. one sandbox
batch, with the completion's earlier calls for notebook-like state).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

from verifrl.registry import Registry

OUTPUT_OPEN = "```output\n"
OUTPUT_CLOSE = "\n```\n"
TRUNCATION_MARKER = "\n...[output truncated]"


@dataclass
class ToolCall:
    """One call: the block's text, and the earlier calls of the same completion (oldest first)."""

    code: str
    history: list[str] = field(default_factory=list)


@dataclass
class ToolResult:
    text: str
    """The observation (before the output fences are added)."""
    error: bool = False
    """The call raised, timed out, crashed or was cut off (counted in tool/error_rate)."""
    keep_in_history: bool = True
    """Later calls of the completion see this one (python: it ran to the end or raised; a
    timed-out cell is not replayed)."""


TOOLS: Registry = Registry("tool", "rollout.tools")


def register_tool(name: str) -> Callable:
    """Decorator registering a tool under ``name`` (the fence language and the ``rollout.tools`` entry)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"tool name {name!r} must be lowercase letters, digits and _ (it is a fence language)")

    return TOOLS.register(name)


def registered_tools() -> list[str]:
    return sorted(TOOLS)


class _FunctionTool:
    """A ``text -> text`` function as a batch tool (no state between calls)."""

    def __init__(self, fn: Callable[[str], str]) -> None:
        self.fn = fn

    def run_batch(self, calls: list[ToolCall]) -> list[ToolResult]:
        results = []
        for call in calls:
            try:
                results.append(ToolResult(str(self.fn(call.code))))
            except Exception as err:  # the tool's failure is the model's observation, never a crash
                results.append(ToolResult(f"{type(err).__name__}: {err}", error=True))
        return results

    def close(self) -> None:
        pass


def build_tool(name: str, **kwargs: Any):
    """An object with ``run_batch(calls)`` and ``close()`` for a registered tool name."""
    obj = TOOLS.lookup(name)
    if isinstance(obj, type):
        return obj(**kwargs)
    if kwargs:
        raise ValueError(f"tool {name!r} is a function and takes no options (got {sorted(kwargs)})")
    return _FunctionTool(obj)


# --------------------------------------------------------------------------- the python tool

_NOTEBOOK = '''
import ast, sys, traceback, io
_cells = {cells!r}
_ns = {{"__name__": "__main__"}}
for _i, _src in enumerate(_cells):
    _last = _i == len(_cells) - 1
    if not _last:  # earlier cells: replayed for their state, their output already seen
        _out, sys.stdout = sys.stdout, io.StringIO()
    try:
        _tree = ast.parse(_src, "<cell>", "exec")
        _expr = None
        if _last and _tree.body and isinstance(_tree.body[-1], ast.Expr):
            _expr = ast.Expression(_tree.body.pop().value)
        exec(compile(_tree, "<cell>", "exec"), _ns)
        if _expr is not None:
            _value = eval(compile(_expr, "<cell>", "eval"), _ns)
            if _value is not None:
                print(repr(_value))
    except SystemExit:
        pass
    except BaseException as _err:
        if _last:
            _lines = traceback.format_exception_only(type(_err), _err)
            sys.stdout.write("".join(_lines[-{tb_lines}:]))
            sys.stdout.flush()
            sys.exit(3)
    finally:
        if not _last:
            sys.stdout = _out
'''


@register_tool("python")
class PythonTool:
    """Runs the block in the code verifier's sandbox (``verifiers.code.pool.SandboxPool``).

    Notebook semantics by replay: each call runs the completion's earlier (non-timed-out) cells
    first, with their output discarded, in a fresh sandboxed process, then the new cell; the
    observation is its stdout plus the ``repr`` of a final bare expression (like a notebook), or the
    last line(s) of the traceback when it raises. Each call gets the verifier's isolation (rlimits,
    namespaces, Landlock, seccomp where available) and its own time, memory and output limits; a
    hang, a crash, an output flood or a fork bomb is bounded and becomes the observation.
    Identical calls (same cells) of one batch run once.
    """

    def __init__(self, timeout: float = 3.0, memory_mb: int = 512, max_output_bytes: int = 4096,
                 workers: int = 0, isolation: str = "auto", traceback_lines: int = 1) -> None:
        from verifiers.code.pool import Limits  # the verifier's sandbox, shared, not reimplemented

        self.limits = Limits(timeout=timeout, call_timeout=timeout, memory_mb=memory_mb, file_mb=1, disk_mb=8,
                             max_output_bytes=max_output_bytes)
        self.workers, self.isolation, self.traceback_lines = workers, isolation, traceback_lines
        self._pool = None

    @property
    def pool(self):
        if self._pool is None:  # started on the first call, so a config check costs nothing
            from verifiers.code.pool import SandboxPool

            self._pool = SandboxPool(self.workers, self.isolation)
        return self._pool

    def program(self, call: ToolCall) -> str:
        """The sandboxed program of one call: the notebook replay of its cells."""
        cells = [*call.history, call.code]
        return textwrap.dedent(_NOTEBOOK).format(cells=cells, tb_lines=max(1, self.traceback_lines))

    def run_batch(self, calls: list[ToolCall]) -> list[ToolResult]:
        from verifiers.code.pool import Run

        programs = [self.program(call) for call in calls]
        unique = list(dict.fromkeys(programs))
        outcomes = dict(zip(unique, self.pool.run_many([Run("stdio", p, limits=self.limits) for p in unique])))
        return [self._observation(outcomes[p]) for p in programs]

    def _observation(self, res) -> ToolResult:
        out = res.stdout.decode("utf-8", "replace")
        if res.error is not None:
            return ToolResult(f"SandboxError: {res.error}", error=True, keep_in_history=False)
        if res.timed_out:
            return ToolResult(out + f"TimeoutError: the cell ran longer than {self.limits.timeout:g} s",
                              error=True, keep_in_history=False)
        if res.output_limit:
            return ToolResult(out[: self.limits.max_output_bytes] + TRUNCATION_MARKER, error=True)
        if res.signal is not None:
            reason = "MemoryError (killed)" if res.signal == 9 else f"the cell was killed by signal {res.signal}"
            return ToolResult(out + reason, error=True, keep_in_history=False)
        if res.exit not in (0, None):
            if res.exit == 3:  # the notebook's own "the cell raised" status: the traceback is in out
                return ToolResult(out, error=True)
            err = res.stderr.decode("utf-8", "replace").strip().splitlines()
            return ToolResult(out + (err[-1] if err else f"exit status {res.exit}"), error=True,
                              keep_in_history=False)
        return ToolResult(out)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


# --------------------------------------------------------------------------- transcripts

def completed_call(text: str, names: list[str]) -> tuple[str, str] | None:
    """``(tool name, block text)`` when ``text`` (a row's text since its last observation) ends
    with the closing fence of a block in one of ``names``; None otherwise."""
    stripped = text.rstrip(" \t\n")
    if not stripped.endswith("```") or len(text) - len(stripped) > 1:
        return None
    body = stripped[:-3]
    for name in names:
        opener = f"```{name}\n"
        start = body.rfind(opener)
        if start >= 0 and "```" not in body[start + len(opener):]:
            return name, body[start + len(opener):].rstrip("\n")
    return None
