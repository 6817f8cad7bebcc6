"""Named plug-in points: the single source of the names an option may take.

Every option whose value names an algorithm or a component (``advantage.estimator``,
``loss.type``, ``loss.objective``, ``loss.importance_level``, ``loss.kl_estimator``,
``rollout.engine``...) reads its names from one :class:`Registry`, filled by decorators next to
the implementations; config validation reads the same registries, so a new estimator or loss is
one decorated function and an unknown name fails when the config loads, before any model does.
"""

from __future__ import annotations

import difflib
from typing import Callable, TypeVar

T = TypeVar("T")


class Registry(dict):
    """``name -> implementation``, in registration order, with one-line errors for unknown names.

    Args:
        kind: what the entries are, for messages (``"advantage estimator"``).
        option: the config key whose values they are (``"advantage.estimator"``).
    """

    def __init__(self, kind: str, option: str) -> None:
        super().__init__()
        self.kind = kind
        self.option = option

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``fn`` under ``name``; a name is registered once."""

        def decorator(fn: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = fn
            return fn

        return decorator

    def unknown(self, name: object) -> str:
        """One-line message for a name that is not registered, with the closest match."""
        close = difflib.get_close_matches(str(name), [str(k) for k in self], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; valid: {', '.join(sorted(self))}"

    def lookup(self, name: str):
        """The entry for ``name``; ``ValueError`` with :meth:`unknown`'s message otherwise."""
        if name not in self:
            raise ValueError(self.unknown(name))
        return self[name]
