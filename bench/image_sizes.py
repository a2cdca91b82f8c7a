"""Stage image sizes, each against the base image it is built on, measured in the same run; and build times.

Builds (or reuses) the debootstrap base and every CPU stage image exactly as the ``docker`` tests do, then prints
each image's size, what it adds over the base, and the layers it shares with the other images. Run from the
repository root as root (it may install docker.io and run debootstrap):

    PYTHONPATH=$PWD python bench/image_sizes.py [--tag bench]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.docker_engine import CPU_TARGETS, build_stage_images  # noqa: E402


def inspect(docker: str, ref: str) -> dict:
    out = subprocess.run([docker, "image", "inspect", ref], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="bench")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        images = build_stage_images(Path(logs), tag=args.tag)
    base = inspect(images.docker, images.base_image)
    base_layers = set(base["RootFS"]["Layers"])
    print(f"build: {json.dumps({k: round(v, 1) for k, v in images.timings.items()})}")
    print(f"{'image':<18} {'size MB':>8} {'over base MB':>13} {'x base':>7}")
    print(f"{'base (debootstrap)':<18} {base['Size'] / 1e6:>8.0f} {0:>13.0f} {1:>7.2f}")
    layers: dict[str, set[str]] = {}
    for target in CPU_TARGETS:
        info = inspect(images.docker, images.ref(target))
        layers[target] = set(info["RootFS"]["Layers"]) - base_layers
        added = info["Size"] - base["Size"]
        print(f"{target:<18} {info['Size'] / 1e6:>8.0f} {added / 1e6:>13.0f} {info['Size'] / base['Size']:>7.2f}")
    shared = set.intersection(*layers.values())
    print(f"layers over the base shared by all {len(CPU_TARGETS)} images: {len(shared)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
