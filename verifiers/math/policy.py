"""Equivalence policy: the knobs of the math verifier and their documented defaults.

Place: read by :mod:`verifiers.math.compare` (what counts as equal), :mod:`verifiers.math.guard`
(time and memory bounds) and :class:`verifiers.math.verifier.MathVerifier` (constructor kwargs).

Defaults (the behaviour ``answers_equal(pred, gold)`` has with no options):

* ``rel_tol = 1e-6`` -- relative tolerance used when either side was written with a decimal
  point (``0.0833333`` vs ``\\frac1{12}`` is equal, ``0.333`` vs ``\\frac13`` is not). Exact
  answers on both sides are compared exactly (numerically at 40 digits with 1e-15 slack, which
  only absorbs evaluation noise).
* ``rounding = "irrational"`` -- a decimal prediction of an exact reference that is provably
  irrational (``40\\pi``, ``\\sqrt3``, ``e``, ``\\ln 2``: sympy decides; when it cannot, no
  rounding) is accepted when that decimal literal shows at least ``irrational_digits = 4``
  significant digits and is the reference rounded or truncated to its last shown place
  (``125.663`` / ``125.664`` for ``40\\pi``, ``1.732`` for ``\\sqrt3``; not ``3.14`` for
  ``\\pi``, not ``3.143``). Why irrational only: such a value has no finite decimal form, so a
  decimal answer can only be an approximation and four correct significant digits show the value
  was found; a rational reference has an exact form (``\\frac13``, ``0.\\overline3``), so
  ``0.333`` or ``0.3333`` for ``\\frac13`` is a different number and stays wrong (only ``rel_tol``
  applies). Only the prediction is rounded (a decimal reference ``3.14`` is not matched by
  ``\\pi``), only a decimal literal written as such counts (not ``2 \\cdot 1.732``), and never
  for an integer reference. ``"none"``: no rounding at all beyond ``rel_tol``.
  ``"pred"``: a decimal prediction is also accepted when it equals any exact reference (rational
  too) rounded or truncated to the digits the prediction shows (at least ``min_rounding_digits``
  significant ones). ``"both"``: the same in both directions. Rounding never applies when the
  reference is an integer: an integer reference needs an integer-valued prediction.
* ``percent = True`` -- ``p\\%`` on one side equals ``p`` or ``p/100`` on the other; two bare
  numbers are never rescaled by 100.
* ``degrees = True`` -- ``d^\\circ`` equals ``d`` or ``d*pi/180`` on the other side; inside a
  trigonometric function degrees are always converted.
* ``units = True`` -- a unit on only one side is ignored (``5\\text{ cm}`` = ``5``); units on
  both sides must agree after conversion (``100 cm`` = ``1 m``, ``5 kg`` != ``5 g``).
* ``ordered_lists = False`` -- a bare list ``1, 2, 3`` (the usual way to give several solutions)
  is compared as a multiset; tuples ``(1,2)``, vectors and matrices are always ordered, sets
  ``\\{1,2\\}`` never.
* ``interval_vs_inequality = True`` -- an inequality and the interval it describes are equal in
  both directions (Math-Verify only accepts an interval prediction for an inequality reference;
  set False for that asymmetric behaviour).
* ``strict_names = False`` -- ``x = 3`` equals ``3`` and ``y = 3``; with True the assigned names
  must match when both sides name them.
* ``timeout = 3.0`` seconds per symbolic check; ``max_memory_mb = 1024`` for the worker process
  that runs symbolic checks; ``max_answer_chars = 2000`` (longer answers are unparseable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


ROUNDING_MODES = ("none", "irrational", "pred", "both")


@dataclass(frozen=True)
class Policy:
    rel_tol: float = 1e-6
    rounding: str = "irrational"
    min_rounding_digits: int = 3
    irrational_digits: int = 4
    percent: bool = True
    degrees: bool = True
    units: bool = True
    ordered_lists: bool = False
    interval_vs_inequality: bool = True
    strict_names: bool = False
    timeout: float = 3.0
    max_memory_mb: int = 1024
    max_answer_chars: int = 2000

    def __post_init__(self) -> None:
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDING_MODES))}, "
                             f"got {self.rounding!r}")
        if not (0 <= self.rel_tol < 1):
            raise ValueError(f"rel_tol must be in [0, 1), got {self.rel_tol}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "Policy":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown math policy option(s): {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(names))}")
        return cls(**kwargs)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_POLICY = Policy()
