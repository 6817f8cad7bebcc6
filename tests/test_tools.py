"""The tool registry and the sandboxed python tool: notebook semantics, limits, hostile cells."""

import os

import pytest

from verifrl.config import ConfigError
from verifrl.config_loading import load_config
from verifrl.embedded import cache_key
from verifrl.tools import TOOLS, ToolCall, build_tool, register_tool


@pytest.fixture(scope="module")
def python_tool():
    tool = build_tool("python", timeout=2.0, memory_mb=256, max_output_bytes=2048)
    yield tool
    tool.close()


def test_stdout_final_expression_and_notebook_state(python_tool):
    first, second, third = python_tool.run_batch([
        ToolCall("x = 48 * 37\nprint('product', x)\nx + 25"),
        ToolCall("y = x + 25\ny", ["x = 48 * 37\nprint('product', x)\nx + 25"]),  # sees the earlier cell
        ToolCall("z = 1"),  # a final statement that is not an expression: no value
    ])
    assert first.text == "product 1776\n1801\n" and not first.error
    assert second.text == "1801\n"  # the replayed cell's output is not shown again
    assert third.text == "" and not third.error


def test_an_exception_gives_its_last_traceback_line_and_stays_in_history(python_tool):
    (result,) = python_tool.run_batch([ToolCall("a = 1\nb = a / 0")])
    assert result.text == "ZeroDivisionError: division by zero\n" and result.error and result.keep_in_history
    # a replayed cell that raised does not stop the later ones
    (later,) = python_tool.run_batch([ToolCall("a + 1", ["a = 1\nb = a / 0"])])
    assert later.text == "2\n" and not later.error


def test_hostile_cells_are_bounded_and_become_observations(python_tool, tmp_path):
    outside = tmp_path / "written-by-the-policy"
    hang, flood, bomb, write, memory, crash, after = python_tool.run_batch([
        ToolCall("while True:\n    pass"),
        ToolCall("print('x' * 10_000_000)"),
        ToolCall("import os\nwhile True:\n    os.fork()"),
        ToolCall(f"open({str(outside)!r}, 'w').write('pwned')"),
        ToolCall("blob = bytearray(2 * 1024 ** 3)"),
        ToolCall("import ctypes\nctypes.string_at(0)"),  # a segfault
        ToolCall("6 * 7"),
    ])
    assert hang.error and "TimeoutError" in hang.text and not hang.keep_in_history
    assert flood.error and flood.text.endswith("[output truncated]") and len(flood.text) < 3000
    assert bomb.error and write.error and memory.error and crash.error
    assert "MemoryError" in memory.text
    assert not outside.exists() and os.path.isdir(tmp_path)
    assert after.text == "42\n" and not after.error  # the tool still works after all that
    (again,) = python_tool.run_batch([ToolCall("1 + 1")])
    assert again.text == "2\n"


def test_identical_cells_of_a_batch_run_once(python_tool, monkeypatch):
    runs = []
    original = python_tool.pool.run_many
    monkeypatch.setattr(python_tool.pool, "run_many", lambda batch: runs.append(len(batch)) or original(batch))
    results = python_tool.run_batch([ToolCall("2 ** 10")] * 5 + [ToolCall("3 ** 3")])
    assert runs == [2] and [r.text for r in results] == ["1024\n"] * 5 + ["27\n"]


def test_function_tools_register_in_one_line_and_their_errors_are_observations():
    @register_tool("shout_test")
    def shout(text: str) -> str:
        if not text:
            raise ValueError("nothing to shout")
        return text.upper()

    try:
        tool = build_tool("shout_test")
        ok, bad = tool.run_batch([ToolCall("hi"), ToolCall("")])
        assert ok.text == "HI" and not ok.error
        assert bad.text == "ValueError: nothing to shout" and bad.error
        with pytest.raises(ValueError, match="already registered"):
            register_tool("shout_test")(shout)
    finally:
        del TOOLS["shout_test"]


@pytest.mark.parametrize("override, message", [
    ("rollout.tools=[pyton]", "rollout.tools: unknown tool 'pyton' (did you mean 'python'?); valid: python"),
    ("rollout.engine=hf", "rollout.tools needs rollout.engine=loop"),
    ("rollout.max_tool_calls=0", "rollout.max_tool_calls must be >= 1"),
    ("rollout.max_observation_tokens=4", "rollout.max_observation_tokens must be >= 16"),
    ("rollout.tool_options={python: {timout: 2}}", "unknown option(s) ['timout']"),
    ("reward.tool_error_penalty=-1", "reward.tool_error_penalty must be >= 0"),
])
def test_tool_settings_are_checked_at_load(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("recipes/tiny-arith-tool.yaml", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_default_recipe_has_no_tools_and_the_default_model_key_is_unchanged():
    cfg = load_config("recipes/tiny-arith.yaml")
    assert cfg.rollout.tools == [] and cfg.reward.tool_error_penalty == 0.0
    assert cache_key(cfg.model.embedded) == "6b48f543a63415e5"  # the main job's model, built before tools
