"""A labels CSV: which class each file, series or patient belongs to, and optionally its patient.

Columns are matched case-insensitively, ignoring spaces and underscores. A file column (``key``,
``filename``, ``path``, ``file``, ``image``, ``Image Index``) matches a row to a file by store key, path under
the dataset, or file name; ``SeriesInstanceUID`` and ``PatientID`` match rows to DICOM headers. The label
column is ``label`` (or ``class``, ``Finding Labels``); a ``PatientID``/``Patient ID`` column also gives the
patient of non-DICOM files, and a ``split`` column the dataset's own split (``train_val`` counts as ``train``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from jobs.core.errors import DataError

FILE_COLUMNS = ("key", "filename", "path", "file", "image", "imageindex", "imagepath")
PATIENT_COLUMNS = ("patientid", "patient")
SERIES_COLUMNS = ("seriesinstanceuid", "seriesuid", "series")
LABEL_COLUMNS = ("label", "class", "findinglabels", "labels", "diagnosis")
SPLIT_COLUMNS = ("officialsplit", "split")
SPLIT_NAMES = {"train": "train", "train_val": "train", "trainval": "train", "val": "val", "validation": "val",
               "test": "test"}  # fmt: skip
"""A split column's values, as datasets spell them, -> the index's ``official_split`` (``train``/``val``/``test``)."""


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _pick(fieldnames: Iterable[str], candidates: tuple[str, ...]) -> str | None:
    by_norm = {_norm(f): f for f in fieldnames}
    for cand in candidates:
        if cand in by_norm:
            return by_norm[cand]
    return None


@dataclass(frozen=True)
class LabelTable:
    """Labels looked up by file, series UID or patient ID; built once in the main process."""

    source: str
    """Where the CSV came from (a store key or a local path), for messages."""
    by_file: dict[str, str] = field(default_factory=dict)
    by_series: dict[str, str] = field(default_factory=dict)
    by_patient: dict[str, str] = field(default_factory=dict)
    patient_of_file: dict[str, str] = field(default_factory=dict)
    split_of_file: dict[str, str] = field(default_factory=dict)
    has_file_column: bool = False
    label_column: str = ""
    """The CSV's label column as spelled there (``label``, ``Finding Labels``)."""

    @classmethod
    def parse(cls, data: bytes, source: str) -> LabelTable:
        """Parse CSV bytes; ``DataError`` naming the file if it has no label column or contradicts itself."""
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"labels CSV {source}: not UTF-8 text ({exc}); save it as UTF-8") from exc
        reader = csv.DictReader(io.StringIO(text))
        names = reader.fieldnames or []
        label_col = _pick(names, LABEL_COLUMNS)
        file_col = _pick(names, FILE_COLUMNS)
        patient_col = _pick(names, PATIENT_COLUMNS)
        series_col = _pick(names, SERIES_COLUMNS)
        split_col = _pick(names, SPLIT_COLUMNS)
        if label_col is None:
            raise DataError(f"labels CSV {source}: no label column in {names}; name one 'label'")
        if not (file_col or patient_col or series_col):
            raise DataError(
                f"labels CSV {source}: no column saying what each label belongs to in {names}; "
                "add 'key' (or filename/path), 'PatientID' or 'SeriesInstanceUID'"
            )
        table = cls(source=source, has_file_column=file_col is not None, label_column=label_col)
        for line, row in enumerate(reader, start=2):
            label = (row.get(label_col) or "").strip()
            if not label:
                continue
            patient = (row.get(patient_col) or "").strip() if patient_col else ""
            if file_col and (name := (row.get(file_col) or "").strip()):
                table._put(table.by_file, name, label, line)
                if patient:
                    table.patient_of_file[name] = patient
                if split_col and (split := (row.get(split_col) or "").strip()):
                    if split.lower() not in SPLIT_NAMES:
                        raise DataError(
                            f"labels CSV {source} line {line}: {split_col} {split!r} is not one of "
                            f"{', '.join(SPLIT_NAMES)}; fix it or drop the column"
                        )
                    table.split_of_file[name] = SPLIT_NAMES[split.lower()]
            elif series_col and (series := (row.get(series_col) or "").strip()):
                table._put(table.by_series, series, label, line)
            elif patient:
                table._put(table.by_patient, patient, label, line)
        if not (table.by_file or table.by_series or table.by_patient):
            raise DataError(f"labels CSV {source}: no rows with a label; fill the '{label_col}' column")
        return table

    def _put(self, mapping: dict[str, str], key: str, label: str, line: int) -> None:
        old = mapping.setdefault(key, label)
        if old != label:
            raise DataError(f"labels CSV {self.source} line {line}: {key!r} labelled both {old!r} and {label!r}")

    def _file_entry(self, mapping: dict[str, str], key: str, rel: str) -> str | None:
        name = rel.rsplit("/", 1)[-1]
        for candidate in (key, rel, name):
            if candidate in mapping:
                return mapping[candidate]
        return None

    def label_for(self, key: str | None, rel: str | None, series_uid: str | None, patient_id: str | None) -> str | None:
        """The label of a file: by file (unless ``key`` is ``None``), then by its series, then by its patient."""
        if key is not None and rel is not None and (label := self._file_entry(self.by_file, key, rel)) is not None:
            return label
        if series_uid and series_uid in self.by_series:
            return self.by_series[series_uid]
        if patient_id and patient_id in self.by_patient:
            return self.by_patient[patient_id]
        return None

    def split_for(self, key: str, rel: str) -> str | None:
        """The dataset's own split a file row names, if the CSV has a split column."""
        return self._file_entry(self.split_of_file, key, rel)

    def patient_for(self, key: str, rel: str) -> str | None:
        """The patient a file row names, if the CSV has a patient column beside its file column."""
        return self._file_entry(self.patient_of_file, key, rel)
