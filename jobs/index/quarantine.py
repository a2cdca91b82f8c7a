"""``quarantine.csv``: every raw file the index could not use, with the reason, streamed to disk in key order.

Reasons read ``<kind>: <details>``; the kind (``truncated``, ``unknown VR``...) is what the summary counts and
what the stage's closing log lines name, one line per kind.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DUPLICATE_PREFIX = "duplicate of "


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """One file left out of the index: its store key and why."""

    key: str
    reason: str

    @property
    def kind(self) -> str:
        """A short category for the summary: the reason up to its first ':' or ' (' (``duplicate`` for duplicates)."""
        if self.reason.startswith(DUPLICATE_PREFIX):
            return "duplicate"
        return self.reason.split(":", 1)[0].split(" (", 1)[0].strip()


class QuarantineWriter:
    """Writes ``key,reason`` rows (RFC 4180 quoting, ``\\n`` line ends) and counts them by kind."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._fh, lineterminator="\n")
        self._csv.writerow(["key", "reason"])
        self.kinds: Counter[str] = Counter()
        self.first_of: dict[str, str] = {}
        """The first key quarantined for each kind: an example the summary names."""
        self.count = 0

    def add(self, record: QuarantineRecord) -> None:
        self._csv.writerow([record.key, " ".join(record.reason.split())])
        self.kinds[record.kind] += 1
        self.first_of.setdefault(record.kind, record.key)
        self.count += 1

    def summary_lines(self, where: str) -> list[str]:
        """One line per kind, most frequent first, naming an example; the reasons themselves are in ``where``."""
        return [
            f"quarantined {n} file(s): {kind} (e.g. {self.first_of[kind]}; details in {where})"
            for kind, n in sorted(self.kinds.items(), key=lambda item: (-item[1], item[0]))
        ]

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
