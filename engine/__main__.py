"""`python -m engine`: the `berth` command without a console-script shim (used by the benchmark)."""

from engine.cli import main

main()
