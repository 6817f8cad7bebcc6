"""``python -m verifrl ...`` (also what ``torchrun -m verifrl`` runs)."""

import sys

from verifrl.cli import main

sys.exit(main())
