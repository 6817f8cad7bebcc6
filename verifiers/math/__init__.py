"""Math final-answer verification: extraction, LaTeX/plain-text parsing to sympy, equivalence.

Public API (other code depends on these names):

- :func:`extract_answer` -- the final answer in a completion (``\\boxed``, ``Answer:``, ``####``...).
- :func:`answers_equal` -- whether two answer strings are equivalent under a policy.
- :class:`MathVerifier` -- registered as ``"math"``; ``__call__``, ``verify_batch``, ``close``.

Modules, in data-flow order: ``extract`` -> ``fastpath`` (plain numbers, in-process) or ``guard``
(worker processes with deadlines) -> ``core`` -> ``reading`` (``normalize``, ``lexer``, ``parse``)
-> ``compare`` (``units``); options and defaults in ``policy``. Importing this package does not
import sympy; the workers do.
"""

from verifiers.math.extract import extract_answer
from verifiers.math.policy import DEFAULT_POLICY, Policy
from verifiers.math.verifier import MathVerifier, answers_equal, check_answer, reference_answer

__all__ = ["extract_answer", "answers_equal", "check_answer", "reference_answer", "MathVerifier",
           "Policy", "DEFAULT_POLICY"]
