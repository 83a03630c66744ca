"""How fast ``kferry --help`` (and ``kferry --version``) answer: a whole CLI process each.

Prints the median wall time of N runs of ``python -m kferry --help`` and ``--version``, and,
for comparison, of ``python -c pass`` (the interpreter's own start).

    python bench/help.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import run_child  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "kferry --help": [sys.executable, "-m", "kferry", "--help"],
        "kferry --version": [sys.executable, "-m", "kferry", "--version"],
        "kferry images --help": [sys.executable, "-m", "kferry", "images", "--help"],
    }
    for name, cmd in cases.items():
        walls = [run_child(cmd).wall for _ in range(args.runs)]
        print(f"{name:22} median {statistics.median(walls):.3f} s  (min {min(walls):.3f})")


if __name__ == "__main__":
    main()
