"""Sandboxed unit-test verifier for code RL, registered as ``"code"``.

Modules, in data-flow order:

- :mod:`verifiers.code.spec`      test suites (function calls, asserts, stdin/stdout cases) split
  into sandbox inputs and parent-only expectations;
- :mod:`verifiers.code.pool`      a pool of zygote processes that run programs concurrently;
- ``verifiers/code/sandbox/``     what runs in those processes (stdlib only): isolation layers,
  the supervisor, the in-child harness;
- :mod:`verifiers.code.compare`   the parent's judgement on values it rebuilt itself;
- :mod:`verifiers.code.verifier`  :class:`CodeVerifier`, tying them together;
- ``python -m verifiers.code``    one program against one ``tests.json``, one JSON line out.
"""

from verifiers.code.pool import LEVELS, Limits, SandboxPool, SandboxUnavailable
from verifiers.code.spec import SpecError, parse_suite
from verifiers.code.verifier import DEFAULT_PATTERN, CodeVerifier, extract_program

__all__ = ["CodeVerifier", "DEFAULT_PATTERN", "LEVELS", "Limits", "SandboxPool", "SandboxUnavailable",
           "SpecError", "extract_program", "parse_suite"]
