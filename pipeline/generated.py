"""Every generated file of the repository, in one registry: ``make generate`` writes them, ``--check`` finds drift.

``GENERATED`` maps a repo-relative path to the function returning that file's text; ``OWNED_DIRS`` are folders
whose every file is generated, so a file no generator produces any more (a deleted schedule) is stale too.
Register a new generated file by adding its path here (or with ``register``); never write files from tests.

    python -m pipeline.generated            # write every file (make generate)
    python -m pipeline.generated --check    # exit 1 naming each stale, missing or orphaned file

Generators that render the Helm chart need the ``dev`` extra (helm-python-sdk); they import it when called.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.generation import GENERATED, OWNED_DIRS, REPO_ROOT


def _load_providers() -> None:
    """Import the modules that register generated files (kept here so the registry sees all of them)."""
    import pipeline.argo.generated_files
    import pipeline.docs
    import pipeline.images  # noqa: F401


def expected_files() -> dict[str, str]:
    """Path -> expected text of every generated file."""
    _load_providers()
    return {path: generator() for path, generator in sorted(GENERATED.items())}


def stale_files(root: Path | None = None, expected: dict[str, str] | None = None) -> list[str]:
    """Paths whose committed text differs from the generated one, that are missing, or orphaned in an owned folder."""
    root = REPO_ROOT if root is None else root
    expected = expected_files() if expected is None else expected
    stale = []
    for path, text in expected.items():
        target = root / path
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(path)
    for folder in OWNED_DIRS:
        for file in sorted((root / folder).rglob("*")):
            if file.is_file() and file.relative_to(root).as_posix() not in expected:
                stale.append(file.relative_to(root).as_posix())
    return stale


def write_files(root: Path | None = None) -> list[str]:
    """Write every generated file that changed and remove orphans; returns the paths touched."""
    root = REPO_ROOT if root is None else root
    expected = expected_files()
    touched = stale_files(root, expected)
    for path in touched:
        target = root / path
        if path in expected:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expected[path], encoding="utf-8")
        else:
            target.unlink()
    return touched


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.generated", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if there are any")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run `make generate`)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_files():
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    # run the importable module's main: the generators register into pipeline.generated, not into __main__
    from pipeline.generated import main as _main

    sys.exit(_main())
