"""Discovery speed against the YAML parser itself.

Prints, for a Kubeflow render (default: the shipped 26.03 one), kferry's wall time for
`kferry images -o json FILE` (a whole CLI process: interpreter start, imports, load,
discovery, output) divided by the time PyYAML's libyaml CSafeLoader takes to load all
documents of the same file (measured inside its process, so without interpreter start).
Both run as child processes, alternately, several times; medians are compared. Also prints
the peak RSS of each. Target: ratio <= 1.5.

    python bench/inventory.py [RENDER.yaml[.gz]] [--runs N]
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

        kferry_walls: list[float] = []
        base_loads: list[float] = []
        kferry_rss: list[float] = []
        base_rss: list[float] = []
        images = 0
        for _ in range(args.runs):
            m = run_child([sys.executable, "-m", "kferry", "images", "-o", "json", str(plain)])
            kferry_walls.append(m.wall)
            kferry_rss.append(m.peak_rss_mib)
            images = m.out.count('"image":')
            load, load_rss = libyaml_load(plain)
            base_loads.append(load)
            base_rss.append(load_rss)

    k = statistics.median(kferry_walls)
    b = statistics.median(base_loads)
    print(f"render: {src.name} ({size / 1e6:.1f} MB), {images} images, {args.runs} runs each")
    print(f"kferry images -o json (whole process) : {k:.3f} s  peak RSS {max(kferry_rss):.0f} MiB")
    print(f"yaml.load_all CSafeLoader (load only) : {b:.3f} s  peak RSS {max(base_rss):.0f} MiB")
    print(f"ratio kferry / libyaml load           : {k / b:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
