"""verifrl: reinforcement learning with verifiable rewards (GRPO, process supervision).

Python API (imported on first use, so ``import verifrl`` loads neither torch nor transformers)::

    from verifrl import load_config, train, evaluate
    summary = train(load_config("recipes/tiny-arith.yaml", ["trainer.steps=50"]))
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load_config": "verifrl.config_loading",
    "ConfigError": "verifrl.config",
    "train": "verifrl.api",
    "evaluate": "verifrl.api",
    "StopTraining": "verifrl.trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'verifrl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
