"""Rewrite speed against the YAML parser itself.

Prints, for a Kubeflow render (default: the shipped 26.03 one), the wall time of
`kferry rewrite FILE --to harbor.example.com:8443/kubeflow -o OUT` (a whole CLI process:
interpreter start, load, discovery, rewrite, default fixes, the re-parse that checks the
output, atomic write) divided by the time PyYAML's libyaml CSafeLoader takes to load all
documents of the same file (inside its process). Medians of alternating runs; peak RSS of
each. Target: ratio <= 2.0.

    python bench/rewrite.py [RENDER.yaml[.gz]] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import DEFAULT_RENDER, libyaml_load, plain_render, run_child  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("render", nargs="?", default=str(DEFAULT_RENDER))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    src = Path(args.render)
    with tempfile.TemporaryDirectory() as tmp:
        plain = plain_render(src, Path(tmp))
        size = plain.stat().st_size
        out = Path(tmp) / "out.yaml"
        walls, loads, rss, base_rss = [], [], [], []
        for _ in range(args.runs):
            m = run_child(
                [
                    sys.executable,
                    "-m",
                    "kferry",
                    "rewrite",
                    str(plain),
                    "--to",
                    "harbor.example.com:8443/kubeflow",
                    "-o",
                    str(out),
                ]
            )
            walls.append(m.wall)
            rss.append(m.peak_rss_mib)
            load, load_rss = libyaml_load(plain)
            loads.append(load)
            base_rss.append(load_rss)
    k, b0 = statistics.median(walls), statistics.median(loads)
    print(f"render: {src.name} ({size / 1e6:.1f} MB), {args.runs} runs each")
    print(f"kferry rewrite (whole process)        : {k:.3f} s  peak RSS {max(rss):.0f} MiB")
    print(f"yaml.load_all CSafeLoader (load only) : {b0:.3f} s  peak RSS {max(base_rss):.0f} MiB")
    print(f"ratio kferry / libyaml load           : {k / b0:.2f}  (target <= 2.0)")


if __name__ == "__main__":
    main()
