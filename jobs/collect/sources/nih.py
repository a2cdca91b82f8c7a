"""``--source nih``: NIH ChestX-ray14 (112,120 frontal chest X-rays, 14 findings + "No Finding", multi-label).

Collected: the 12 image archives (``images_001.tar.gz`` … ``images_012.tar.gz``; ``--archives 1,2`` for a
subset), each verified against NIH's published MD5 and unpacked to ``images/<Image Index>.png``; the labels CSV
``Data_Entry_2017_v2020.csv``; the official split lists ``train_val_list.txt`` and ``test_list.txt``. From these
the collector writes ``labels.csv`` (``path,label,patient_id,official_split``: the image's path under
``raw/<dataset>/``, its findings joined by ``|`` as NIH spells them, NIH's Patient ID, and ``train`` (from
``train_val_list.txt``) or ``test``) so the index and split stages (``--split-from official``) need no
NIH-specific parsing.

Archive links and MD5s are NIH's published list (the Box "static" links). NIH gives the CSV and split lists no
direct link: pass ``--path DIR`` holding them (downloaded once from https://nihcc.app.box.com/v/ChestXray-NIHCC),
or point ``IRMSIA_NIH_URL`` at a mirror that serves every file under one base URL.
"""

from __future__ import annotations

import csv
import io
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.collect.sources.base import ArchiveOptions, CollectReport, RawSink, Source
from jobs.collect.sources.url import http_client, store_download
from jobs.collect.transfer import HttpClient, TransferStats
from jobs.core.errors import DataError, UsageError
from jobs.core.hashing import sha256_file
from jobs.core.settings import option

log = logging.getLogger("irmsia.collect")

# (archive name, path under the NIH base URL, MD5), from NIH's batch_download_zips.py and its MD5 list.
ARCHIVES: tuple[tuple[str, str, str], ...] = (
    ("images_001.tar.gz", "vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz", "fe8ed0a6961412fddcbb3603c11b3698"),
    ("images_002.tar.gz", "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1.gz", "ab07a2d7cbe6f65ddd97b4ed7bde10bf"),
    ("images_003.tar.gz", "f1t00wrtdk94satdfb9olcolqx20z2jp.gz", "2301d03bde4c246388bad3876965d574"),
    ("images_004.tar.gz", "0aowwzs5lhjrceb3qp67ahp0rd1l1etg.gz", "9f1b7f5aae01b13f4bc8e2c44a4b8ef6"),
    ("images_005.tar.gz", "v5e3goj22zr6h8tzualxfsqlqaygfbsn.gz", "1861f3cd0ef7734df8104f2b0309023b"),
    ("images_006.tar.gz", "asi7ikud9jwnkrnkj99jnpfkjdes7l6l.gz", "456b53a8b351afd92a35bc41444c58c8"),
    ("images_007.tar.gz", "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n.gz", "1075121ea20a137b87f290d6a4a5965e"),
    ("images_008.tar.gz", "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j.gz", "b61f34cec3aa69f295fbb593cbd9d443"),
    ("images_009.tar.gz", "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj.gz", "442a3caa61ae9b64e61c561294d1e183"),
    ("images_010.tar.gz", "l6nilvfa9cg3s28tqv1qc1olm3gnz54p.gz", "09ec81c4c31e32858ad8cf965c494b74"),
    ("images_011.tar.gz", "hhq8fkdgvcari67vfhs7ppg2w6ni4jze.gz", "499aefc67207a5a97692424cf5dbeed5"),
    ("images_012.tar.gz", "ioqwiy20ihqwyr8pf4c24eazhh281pbu.gz", "dc9fda1757c2de0032b63347a7d2895c"),
)
LABELS_CSV = "Data_Entry_2017_v2020.csv"
# official list -> the split stage's name for it (its --split-from official carves val out of train)
SPLIT_LISTS = {"train_val_list.txt": "train", "test_list.txt": "test"}
METADATA = (LABELS_CSV, *SPLIT_LISTS)
FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis", "Hernia",
    "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax", "No Finding",
)  # fmt: skip
LABELS_OUT = "labels.csv"
LICENSE = "NIH Clinical Center: unrestricted use with attribution (CC0-1.0 on public mirrors)"
LICENSE_TEXT = """NIH ChestX-ray14 (ChestX-ray8), NIH Clinical Center.
There are no restrictions on the use of the images, with these attribution requirements:
- provide a link to the NIH download site: https://nihcc.app.box.com/v/ChestXray-NIHCC
- cite: Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale Chest X-ray Database
  and Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases. CVPR 2017.
- acknowledge that the NIH Clinical Center is the data provider.
"""
NIH_URL = "https://nihcc.box.com/shared/static/"
# Archives are ~4 GB each: at most this many are downloaded and unpacked at once, whatever --workers says.
MAX_PARALLEL_ARCHIVES = 3


def labels_csv(entries: bytes, split_lists: dict[str, bytes], images: set[str]) -> bytes:
    """``labels.csv`` rows (path, label, patient_id, official_split) for the collected images, sorted by path."""
    split_of: dict[str, str] = {}
    for name, data in split_lists.items():
        for line in data.decode(errors="replace").splitlines():
            if line.strip():
                split_of[line.strip()] = SPLIT_LISTS[name]
    reader = csv.DictReader(io.StringIO(entries.decode("utf-8-sig", errors="replace")))
    needed = {"Image Index", "Finding Labels", "Patient ID"}
    if not needed <= set(reader.fieldnames or ()):
        raise DataError(f"{LABELS_CSV}: missing columns {sorted(needed - set(reader.fieldnames or ()))}; "
                        "use NIH's original file")  # fmt: skip
    by_name = {Path(p).name: p for p in images}
    rows = []
    unknown: set[str] = set()
    for row in reader:
        path = by_name.get(row["Image Index"].strip())
        if path is None:
            continue
        label = "|".join(f.strip() for f in row["Finding Labels"].split("|") if f.strip())
        unknown.update(set(label.split("|")) - set(FINDINGS))
        rows.append((path, label, row["Patient ID"].strip(), split_of.get(row["Image Index"].strip(), "")))
    if unknown:
        log.warning("%s: findings outside NIH's 15 labels: %s", LABELS_CSV, sorted(unknown))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "label", "patient_id", "official_split"])
    writer.writerows(sorted(rows))
    return out.getvalue().encode()


def _archives(values: tuple[int, ...], flag: str) -> None:
    if not values or any(not 1 <= a <= len(ARCHIVES) for a in values):
        raise UsageError(f"{flag} {values}: use numbers between 1 and {len(ARCHIVES)}, e.g. 1,2")


@dataclass(frozen=True, kw_only=True)
class NihOptions(ArchiveOptions):
    """``--source nih``: which archives, where the label CSVs are, and where NIH's files are served."""

    path: str | None = option(
        None,
        parameter="path",
        help="folder holding NIH's label CSV and split lists (--source nih), which NIH serves without direct links",
    )
    archives: tuple[int, ...] = option(
        tuple(range(1, len(ARCHIVES) + 1)),
        check=_archives,
        result=True,
        parameter="archives",
        help="NIH image archives to collect (1-12), e.g. 1,2 for a quick look",
    )
    nih_url: str = option(
        NIH_URL, flag=None, env="IRMSIA_NIH_URL", help="base URL of the NIH ChestX-ray14 files (a mirror, tests)"
    )


class NihSource(Source[NihOptions]):
    """NIH ChestX-ray14 from NIH's Box links (or a mirror)."""

    name = "nih"
    options_type = NihOptions

    def result_params(self, options: NihOptions) -> dict[str, Any]:
        metadata = None
        if options.path:
            folder = Path(options.path)
            missing = [n for n in METADATA if not (folder / n).is_file()]
            if missing:
                raise UsageError(f"--path {options.path!r}: missing {', '.join(missing)}; download them from "
                                 "https://nihcc.app.box.com/v/ChestXray-NIHCC")  # fmt: skip
            metadata = {n: sha256_file(folder / n) for n in METADATA}
        return {"archives": list(options.archives), "metadata": metadata}

    def _metadata(self, options: NihOptions, client: HttpClient, workdir: Path) -> dict[str, Path]:
        if options.path:
            return {n: Path(options.path) / n for n in METADATA}
        files = {}
        for name in METADATA:
            try:
                files[name] = client.fetch(options.nih_url.rstrip("/") + "/" + name, workdir / name, what=name).path
            except UsageError as exc:
                hint = "download it from https://nihcc.app.box.com/v/ChestXray-NIHCC and pass --path DIR"
                raise UsageError(f"{exc}. NIH gives {name} no direct link: {hint}") from exc
        return files

    def _archive(
        self, entry: tuple[str, str, str], options: NihOptions, client: HttpClient, sink: RawSink
    ) -> list[str]:
        name, rel, md5 = entry
        unit_id, validator = f"nih:{name}", {"md5": md5}
        if (record := sink.reuse_unit(unit_id, validator)) is not None:
            return [f["name"] for f in record["files"]]
        url = options.nih_url.rstrip("/") + "/" + rel
        got = client.fetch(url, sink.workdir / "archives" / name, md5=md5, what=f"NIH {name}")
        records, _ = store_download(sink, unit_id, validator, got.path, name, options)
        return [r.key.removeprefix(sink.prefix) for r in records]

    def collect(self, options: NihOptions, sink: RawSink) -> CollectReport:
        stats = TransferStats()
        client = http_client(options, stats)
        metadata = self._metadata(options, client, sink.workdir / "metadata")
        for name, path in metadata.items():
            sink.put_file(name, path)
        chosen = [ARCHIVES[i - 1] for i in sorted(options.archives)]
        images: set[str] = set()
        with ThreadPoolExecutor(max_workers=min(sink.workers, MAX_PARALLEL_ARCHIVES)) as pool:
            futures = [pool.submit(self._archive, a, options, client, sink) for a in chosen]
            try:
                for future in as_completed(futures):
                    images.update(n for n in future.result() if n.lower().endswith(".png"))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        split_lists = {n: metadata[n].read_bytes() for n in SPLIT_LISTS}
        sink.put_bytes(LABELS_OUT, labels_csv(metadata[LABELS_CSV].read_bytes(), split_lists, images))
        sink.put_bytes("LICENSE", LICENSE_TEXT.encode())
        log.info(
            "NIH transfer: %s; %d archives reused from an earlier run",
            stats.as_dict(),
            sink.units_reused,
            extra={"fields": {"transfer": stats.as_dict()}},
        )
        # NIH's own MD5 of every archive collected (each download was checked against it): the release, exactly
        details = {"archives": [a[0] for a in chosen], "archive_md5": {a[0]: a[2] for a in chosen}}
        return CollectReport(license=LICENSE, details={**details, "images": len(images)})


SOURCE = NihSource()
