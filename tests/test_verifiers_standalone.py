"""`verifiers` stands alone: it imports nothing from verifrl, and loading it needs neither torch
nor transformers (a TRL/verl user's reward process pays for sympy only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_verifiers_loads_neither_torch_transformers_nor_verifrl():
    code = ("import sys, verifiers, verifiers.math, verifiers.code, verifiers.steps, verifiers.segments\n"
            "from verifiers.math import answers_equal, extract_answer, MathVerifier\n"
            "from verifiers import VerifyResult, register\n"
            "assert answers_equal('1/2', '0.5')\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'verifrl'))\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_no_verifiers_source_file_names_verifrl_in_an_import():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "verifiers").rglob("*.py")
                 if any(line.lstrip().startswith(("import verifrl", "from verifrl"))
                        for line in p.read_text().splitlines())]
    assert offenders == []
