"""Packaging: what the code imports is declared, floors match the APIs used, optional trackers are
extras; the code sandbox says plainly when seccomp is absent (non-x86-64)."""

from __future__ import annotations

import ast
import logging
import re
import sys
import tomllib
from pathlib import Path

import pytest

from verifiers.code.pool import SandboxUnavailable, choose_layers

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CORE = {re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0].lower(): dep for dep in PROJECT["dependencies"]}
# distribution name of each third-party module the package imports at module level or lazily
_DIST = {"yaml": "pyyaml", "sklearn": "scikit-learn"}


def _imported_modules() -> set[str]:
    names = set()
    for folder in ("verifrl", "verifiers"):
        for file in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_is_declared():
    # modules of the package itself, also those a sandbox script imports by its bare name
    local = {"verifrl", "verifiers", "data", "tests"} | {p.stem for folder in ("verifrl", "verifiers")
                                                        for p in (ROOT / folder).rglob("*.py")}
    third_party = {n for n in _imported_modules() - local if n not in sys.stdlib_module_names and n != "__future__"}
    extras = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for deps in PROJECT["optional-dependencies"].values()
              for d in deps}
    undeclared = [m for m in sorted(third_party)
                  if _DIST.get(m, m).replace("_", "-") not in set(CORE) | extras and m != "human_eval"]  # human-eval: a bench extra by URL
    assert not undeclared, f"imported but not declared: {undeclared}"
    assert "numpy" in CORE and "safetensors" in CORE


def test_floors_match_the_apis_used_and_wandb_is_an_extra():
    floor = tuple(int(x) for x in re.search(r">=([\d.]+)", CORE["transformers"]).group(1).split("."))
    assert floor >= (4, 56)  # from_pretrained(dtype=...)
    assert "wandb" not in CORE and any(d.startswith("wandb") for d in PROJECT["optional-dependencies"]["wandb"])


def test_full_on_another_architecture_runs_without_seccomp_and_says_so(caplog):
    available = ["rlimits", "namespaces", "landlock"]  # what the probe finds on aarch64: no seccomp filter
    with caplog.at_level(logging.WARNING, logger="verifiers.code"):
        level, layers = choose_layers("full", available, machine="aarch64")
    assert level == "full" and layers == ("rlimits", "namespaces", "landlock")
    assert len(caplog.records) == 1 and "WITHOUT seccomp on aarch64" in caplog.records[0].getMessage()
    assert choose_layers("auto", available, machine="aarch64")[0] == "full"  # not a drop to portable
    with pytest.raises(SandboxUnavailable, match="seccomp"):  # on x86-64 a missing seccomp is a failure
        choose_layers("full", available, machine="x86_64")
