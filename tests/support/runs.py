"""Build a sealed training run (and the collect/index/split manifests above it) directly in a store.

Register tests need runs without training one: this writes exactly what the contract says the train stage
leaves (``best_model.pt`` state dict of ``build_network``, ``config.json``, ``metrics.json``, a confusion matrix
image) and seals every prefix with ``StageWriter`` under the right stage names.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from jobs.core.hashing import pretty_json
from jobs.core.manifest import Manifest, StageWriter
from jobs.core.paths import index_prefix, raw_prefix, run_prefix, splits_prefix
from jobs.core.store import Store
from jobs.ml.preprocess import Preprocessing

CLASSES = ["normal", "abnormal"]
# A 1x1 PNG: enough to test that the image is carried into the bundle.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


@dataclass(frozen=True)
class Upstream:
    """The sealed collect, index and split manifests of one dataset."""

    raw: Manifest
    index: Manifest
    split: Manifest


def seal_dataset(store: Store, dataset: str = "demo", seed: int = 42) -> Upstream:
    """collect -> index -> split manifests for ``dataset`` (contents minimal, structure per the contract)."""
    w = StageWriter(store, "collect", raw_prefix(dataset), {"source": "demo"}, {})
    w.put_bytes("LICENSE.txt", b"CC-BY-4.0\n")
    raw = w.commit(summary={"source": "demo", "files": 1, "bytes": 10, "license": "CC-BY-4.0"})
    w = StageWriter(store, "index", index_prefix(dataset), {}, {raw.prefix: raw.content_sha256})
    w.put_bytes("quarantine.csv", b"key,reason\n")
    index = w.commit(summary={"rows": 40})
    w = StageWriter(store, "split", splits_prefix(dataset), {"seed": seed}, {index.prefix: index.content_sha256})
    rows, patients = {"train": 28, "val": 6, "test": 6}, {"train": 14, "val": 3, "test": 3}
    # the split stage's stats.json shape: per split rows and patients, plus totals
    stats = {"splits": {s: {"rows": rows[s], "patients": patients[s]} for s in rows}, "rows": 40, "seed": seed}
    w.put_bytes("stats.json", pretty_json(stats))
    split = w.commit(summary={"classes": CLASSES, "rows": rows, "patients": patients})
    return Upstream(raw, index, split)


def state_dict_bytes(seed: int = 0, model: str = "small-cnn", in_channels: int = 1, num_classes: int = 2) -> bytes:
    """A freshly initialised network's state dict, serialised as ``torch.save`` writes it."""
    import torch

    from jobs.ml.networks import build_network

    torch.manual_seed(seed)
    net = build_network(model, in_channels, num_classes)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue()


def predictions_of(quality: float, *, n: int = 120, seed: int = 0, noise_of: bytes | None = None) -> bytes:
    """A ``predictions.json`` of ``n`` val and test patients: a model whose positive score is shifted up by
    ``quality`` standard deviations for true positives; ``noise_of`` instead perturbs those predictions slightly
    (a model no better than that one)."""
    import numpy as np

    from jobs.ml.predictions import Scored, predictions_bytes, read_predictions

    rng = np.random.default_rng(seed)
    if noise_of is not None:
        _, base = read_predictions(noise_of, "base")
        noisy = {}
        for split, s in base.items():
            probs = np.clip(s.probs + rng.normal(0, 0.005, s.probs.shape), 1e-6, None)
            noisy[split] = Scored(s.keys, s.labels, probs / probs.sum(axis=1, keepdims=True), s.patients)
        return predictions_bytes(noisy, CLASSES)
    splits = {}
    for split in ("val", "test"):
        y = np.arange(n) % 2
        p1 = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + quality * (2 * y - 1))))
        keys = tuple(f"raw/demo/{split}/{i:04d}.dcm" for i in range(n))
        splits[split] = Scored(keys, y, np.stack([1 - p1, p1], axis=1), tuple(f"{split}-p{i}" for i in range(n)))
    return predictions_bytes(splits, CLASSES)


def seal_run(
    store: Store,
    run_id: str,
    *,
    upstream: Upstream | None = None,
    metrics: dict | None = None,
    seed: int = 0,
    model_bytes: bytes | None = None,
    image_size: int = 32,
    predictions: bytes | None = None,
    evaluation: dict | None = None,
    report: bytes | None = None,
    config: dict | None = None,
) -> Manifest:
    """A sealed ``runs/<run_id>/`` as the train stage leaves it, on top of ``upstream`` (built if ``None``);
    ``predictions`` is its ``predictions.json`` (none when ``None``), ``evaluation`` extra ``metrics.json``
    sections (``intervals``, ``calibration``…), ``report`` its ``report.html``, ``config`` keys of its
    ``config.json`` to add or replace (``task``…)."""
    upstream = upstream or seal_dataset(store)
    config = {
        "model": "small-cnn",
        "in_channels": 1,
        "num_classes": 2,
        "classes": CLASSES,
        "image_size": image_size,
        "epochs": 1,
        "seed": seed,
        "dataset": "demo",
        "preprocessing": Preprocessing(image_size=image_size).to_dict(),
        **(config or {}),
    }
    scores = {"val_accuracy": 0.9, "val_auc": 0.95, "test_accuracy": 0.88, "test_auc": 0.93, "best_epoch": 1}
    scores.update(metrics or {})
    scores["details"] = {"val": {"confusion_matrix": [[3, 0], [1, 2]]}}
    scores.update(evaluation or {})
    w = StageWriter(
        store, "train", run_prefix(run_id), {"seed": seed}, {upstream.split.prefix: upstream.split.content_sha256}
    )
    w.put_bytes("best_model.pt", model_bytes if model_bytes is not None else state_dict_bytes(seed))
    w.put_bytes("config.json", pretty_json(config))
    w.put_bytes("metrics.json", (json.dumps(scores, sort_keys=True, indent=2) + "\n").encode())
    w.put_bytes("confusion_matrix.png", PNG)
    if predictions is not None:
        w.put_bytes("predictions.json", predictions)
    if report is not None:
        w.put_bytes("report.html", report)
    return w.commit(summary={"val_auc": scores.get("val_auc")})
