"""Rule-based verifiers: they decide what is right, so the reward cannot be talked into a yes.

- ``verifiers.math``  final-answer equivalence by sympy (``answers_equal``, ``extract_answer``,
  ``MathVerifier`` registered as ``"math"``).
- ``verifiers.steps`` rule checks of each reasoning step (segment-level rewards).
- ``verifiers.code``  programs run against unit tests in a sandbox.

See :mod:`verifiers.base` for the protocol and the registry.
"""

from verifiers.base import (
    Verifier,
    VerifyResult,
    as_result,
    get_verifier,
    register,
    registered_names,
    verify_batch,
)

__all__ = [
    "Verifier",
    "VerifyResult",
    "as_result",
    "get_verifier",
    "register",
    "registered_names",
    "verify_batch",
]
