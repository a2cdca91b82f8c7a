"""``--source local --path DIR``: copy a local folder tree into ``raw/<dataset>/``, keeping relative paths.

Hidden files and folders (names starting with ``.``) are skipped. The cache key holds a fingerprint of the
tree (every file's relative path, size and modification time), so any change to the folder recollects it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.collect.sources.base import CollectReport, RawSink, Source, SourceOptions
from jobs.core.errors import UsageError
from jobs.core.hashing import sha256_json
from jobs.core.settings import option
from jobs.core.store import check_key

LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt")


def scan_directory(root: Path) -> list[tuple[str, Path, os.stat_result]]:
    """Every visible regular file under ``root``: ``(relative posix path, path, stat)``, sorted by path."""
    found: list[tuple[str, Path, os.stat_result]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(folder) / name
            try:
                stat = path.stat()
            except OSError as exc:
                raise UsageError(f"--path {root}: cannot read {path}: {exc.strerror}; fix its permissions") from exc
            if not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            try:
                check_key(rel)
            except UsageError as exc:
                raise UsageError(f"--path {root}: file name {rel!r} cannot be a store key; rename it") from exc
            found.append((rel, path, stat))
    return sorted(found, key=lambda item: item[0])


def license_of(root: Path) -> str | None:
    """The first line of the tree's top-level LICENSE file, if it has one."""
    for name in LICENSE_NAMES:
        path = root / name
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                if line.strip():
                    return line.strip()[:200]
    return None


@dataclass(frozen=True, kw_only=True)
class LocalOptions(SourceOptions):
    """``--source local``: the folder to copy."""

    path: str = option(
        parameter="path",
        help="the local folder to copy into the store (--source local); in a pod, a folder on the data volume",
    )


class LocalSource(Source[LocalOptions]):
    """A folder on this machine (or a mounted volume)."""

    name = "local"
    options_type = LocalOptions

    def _root(self, options: LocalOptions) -> Path:
        root = Path(options.path).expanduser()
        if not root.is_dir():
            raise UsageError(f"--path {options.path!r} is not a folder; give an existing folder to copy")
        return root.resolve()

    def params(self, options: LocalOptions) -> dict[str, Any]:
        root = self._root(options)
        files = scan_directory(root)
        if not files:
            raise UsageError(f"--path {options.path!r} holds no files (hidden ones are skipped); give a data folder")
        fingerprint = sha256_json([[rel, st.st_size, st.st_mtime_ns] for rel, _, st in files])
        return {"path": str(root), "tree_sha256": fingerprint, "files": len(files)}

    def collect(self, options: LocalOptions, sink: RawSink) -> CollectReport:
        root = self._root(options)
        sink.put_many((rel, path) for rel, path, _ in scan_directory(root))
        return CollectReport(license=license_of(root))


SOURCE = LocalSource()
