"""A local stand-in for NIH's ChestX-ray14 download site: image archives and metadata under one base URL.

Archives are served at the same relative paths as NIH's Box "static" links, so the collector's published table
is exercised as is; only the MD5 column differs (these archives are synthetic), which tests substitute.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field

from tests.support.http_server import FaultyHttpServer

PNG = b"\x89PNG\r\n\x1a\n"


def png_bytes(name: str, size: int = 2048) -> bytes:
    """Deterministic PNG-signed bytes (the collector never decodes them)."""
    seed = hashlib.sha256(name.encode()).digest()
    return PNG + (seed * (size // len(seed) + 1))[:size]


def images_tar_gz(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in names:
            data = png_bytes(name)
            info = tarfile.TarInfo(f"images/{name}")
            info.size, info.mtime = len(data), 0
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class NihServer(FaultyHttpServer):
    """Serves ``archives`` (index 1-12 -> image names) and the three metadata files."""

    archive_images: dict[int, list[str]] = field(default_factory=dict)
    md5s: dict[int, str] = field(default_factory=dict)

    def publish(self, table, archives: dict[int, list[str]], findings: dict[str, str],
                test_images: set[str]) -> tuple[tuple[str, str, str], ...]:  # fmt: skip
        """Serve archives and metadata; returns the collector's table with these archives' MD5s."""
        patched = list(table)
        for index, names in archives.items():
            name, rel, _ = table[index - 1]
            data = images_tar_gz(names)
            self.add_file("/" + rel, data)
            self.archive_images[index] = names
            patched[index - 1] = (name, rel, hashlib.md5(data).hexdigest())
        all_names = sorted(n for names in archives.values() for n in names)
        rows = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"]  # fmt: skip
        for n in all_names:
            patient = str(int(n.split("_")[0]))
            rows.append(f"{n},{findings.get(n, 'No Finding')},0,{patient},50,M,PA,2500,2048,0.143,0.143")
        rows.append("99999999_000.png,Hernia,0,99999999,40,F,AP,2500,2048,0.143,0.143")  # not collected
        self.add_file("/Data_Entry_2017_v2020.csv", ("\n".join(rows) + "\n").encode())
        self.add_file("/test_list.txt", "".join(f"{n}\n" for n in all_names if n in test_images).encode())
        self.add_file("/train_val_list.txt", "".join(f"{n}\n" for n in all_names if n not in test_images).encode())
        return tuple(patched)
