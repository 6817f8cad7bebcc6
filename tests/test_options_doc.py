"""docs/options.md documents every config option, and its generated reference is up to date."""

import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

from verifrl.config import Config

ROOT = Path(__file__).resolve().parents[1]


def _keys(cls, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _keys(tp, f"{prefix}{f.name}.")
            continue
        yield prefix + f.name
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            yield from _keys(typing.get_args(tp)[0], f"{prefix}{f.name}[].")


def test_every_config_option_is_in_docs_options_md():
    text = (ROOT / "docs" / "options.md").read_text()
    keys = list(_keys(Config))
    assert len(keys) > 80
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"not in docs/options.md (run python docs/make_options.py): {missing}"


def test_the_generated_reference_matches_the_dataclasses():
    result = subprocess.run([sys.executable, "docs/make_options.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
