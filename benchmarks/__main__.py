"""`python -m benchmarks NAME [args]`: run one benchmark runner (`python -m benchmarks` lists them)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).parent
    runners = sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")
    )
    if len(sys.argv) < 2 or sys.argv[1] not in runners:
        print("usage: python -m benchmarks RUNNER [args]\nrunners: " + ", ".join(runners))
        sys.exit(0 if len(sys.argv) < 2 else 2)
    module = importlib.import_module(f"benchmarks.{sys.argv[1]}")
    module.main(sys.argv[2:])


main()
