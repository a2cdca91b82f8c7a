"""The recommended datasets (what ``irmsia datasets list`` prints) and search across Kaggle and TCIA.

Each entry says where the data lives, what it holds and the exact command that collects it. Sizes are the
publishers' figures, rounded. Search asks Kaggle's ``ListDatasets`` (needs credentials) and filters TCIA's
collection names (``getCollectionValues``, no login).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.collect.sources.kaggle import kaggle_credentials
from jobs.collect.sources.tcia import TCIA_URL
from jobs.collect.transfer import HttpClient, RetryPolicy


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    """One recommended dataset."""

    name: str
    """Suggested ``--dataset`` name (the store folder ``raw/<name>/``)."""
    source: str
    """The collect source: demo, kaggle, nih, tcia."""
    ref: str
    """Source-specific id: Kaggle ``owner/slug``, TCIA collection, or ``-``."""
    modality: str
    size: str
    classes: str
    """Class names as the dataset spells them (what the index stage's labels will be)."""
    license: str
    extra_flags: str = ""

    @property
    def command(self) -> str:
        ref = {"kaggle": f" --ref {self.ref}", "tcia": f" --collection {self.ref}"}.get(self.source, "")
        return f"irmsia-collect --source {self.source} --dataset {self.name}{ref}{self.extra_flags}"


RECOMMENDED: tuple[CatalogEntry, ...] = (
    CatalogEntry(name="demo", source="demo", ref="-", modality="CR/DX (synthetic DICOM)", size="≈10 MB, 300 images",
                 classes="normal, nodule", license="CC0-1.0"),
    CatalogEntry(name="chest-xray-pneumonia", source="kaggle", ref="paultimothymooney/chest-xray-pneumonia",
                 modality="X-ray (JPEG)", size="≈1.2 GB, 5,863 images", classes="NORMAL, PNEUMONIA",
                 license="CC BY 4.0"),
    CatalogEntry(name="covid19-radiography", source="kaggle", ref="tawsifurrahman/covid19-radiography-database",
                 modality="X-ray (PNG)", size="≈0.8 GB, 21,165 images",
                 classes="COVID, Lung_Opacity, Normal, Viral Pneumonia",
                 license="see the dataset page (original authors)"),
    CatalogEntry(name="lgg-mri-segmentation", source="kaggle", ref="mateuszbuda/lgg-mri-segmentation",
                 modality="MRI FLAIR (TIFF + masks)", size="≈0.7 GB, 3,929 images, 110 patients",
                 classes="tumour masks (tumour / no tumour per slice)", license="CC BY-NC-SA 4.0"),
    CatalogEntry(name="nih-chestxray14", source="nih", ref="-", modality="X-ray (PNG)", size="≈42 GB, 112,120 images",
                 classes="14 findings + No Finding (multi-label)",
                 license="NIH Clinical Center, unrestricted with attribution", extra_flags=" --path DIR-WITH-CSVS"),
    CatalogEntry(name="lidc-idri", source="tcia", ref="LIDC-IDRI", modality="CT, DX/CR (DICOM)",
                 size="≈125 GB, 1,010 patients", classes="from your labels CSV (PatientID or SeriesInstanceUID)",
                 license="CC BY 3.0", extra_flags=" --modality CT --max-patients 20"),
)  # fmt: skip


def search_tcia(text: str, env: Mapping[str, str], client: HttpClient | None = None) -> list[dict[str, Any]]:
    """TCIA collections whose name contains ``text`` (case-insensitive)."""
    from jobs.collect.sources.tcia import NbiaApi

    api = NbiaApi(env.get("IRMSIA_TCIA_URL") or TCIA_URL, client or HttpClient(RetryPolicy(attempts=3)))
    needle = text.lower()
    return [{"source": "tcia", "ref": name, "title": name, "command":
             f"irmsia-collect --source tcia --dataset {name.lower()[:63]} --collection {name}"}
            for name in api.collections() if needle in name.lower()]  # fmt: skip


def search_kaggle(text: str, env: Mapping[str, str], client: HttpClient | None = None) -> list[dict[str, Any]]:
    """Kaggle datasets matching ``text``; ``UsageError`` without credentials."""
    from jobs.collect.sources.kaggle import KaggleDatasets

    api = KaggleDatasets(kaggle_credentials(env), env.get("IRMSIA_KAGGLE_ENDPOINT") or None,
                         client or HttpClient(RetryPolicy(attempts=3)))  # fmt: skip
    return [{"source": "kaggle", **hit, "command":
             f"irmsia-collect --source kaggle --dataset {hit['ref'].split('/')[-1].lower()[:63]} --ref {hit['ref']}"}
            for hit in api.search(text)]  # fmt: skip
