"""The run's pictures (PNG bytes): training curves per epoch, and the best model's task picture: confusion
matrices (classification), per-finding AUC (multilabel) or overlays of a few val cases (segmentation)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _figure_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    # No timestamps or version strings in the file: same run, same bytes.
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def training_curves(history: list[dict[str, Any]], monitor: str) -> bytes:
    """Loss (train and val) and validation metrics against epoch; the best epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="o", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    shown = [
        k[4:] for k in (history[0] if history else {}) if k.startswith("val_") and k not in ("val_loss", "val_hd95")
    ]
    for name in shown:
        values = [h.get(f"val_{name}") for h in history]
        ax_metric.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", label=name)
    ax_metric.set(xlabel="epoch", ylim=(0, 1.02), title="validation")
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        for ax in (ax_loss, ax_metric):
            ax.axvline(best[-1], color="grey", linestyle="--", linewidth=1, label=f"best ({monitor})")
    ax_metric.legend(loc="lower right")
    fig.tight_layout()
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def confusion_matrices(details: dict[str, dict[str, Any]]) -> bytes:
    """One panel per split (``{"val": details, "test": details}``), counts written in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in ("val", "test") if s in details and details[s]["n"]]
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(5 * max(1, len(splits)), 4.5), squeeze=False)
    for ax, split in zip(axes[0], splits, strict=False):
        cm = np.asarray(details[split]["confusion_matrix"])
        classes = details[split]["classes"]
        ax.imshow(cm, cmap="Blues")
        ax.set(
            xticks=range(len(classes)),
            yticks=range(len(classes)),
            xticklabels=classes,
            yticklabels=classes,
            xlabel="predicted",
            ylabel="true",
            title=f"{split} (n={cm.sum()})",
        )
        limit = cm.max() / 2 if cm.size else 0
        for (t, p), count in np.ndenumerate(cm):
            ax.text(p, t, str(count), ha="center", va="center", color="white" if count > limit else "black")
    fig.tight_layout()
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def finding_aucs(details: dict[str, dict[str, Any]]) -> bytes:
    """Per-finding ROC AUC of val and test as grouped bars, the mean in each title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in ("val", "test") if s in details and details[s]["n"]]
    classes = details[splits[0]]["classes"] if splits else []
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(classes) + 2), 4.5))
    width = 0.8 / max(1, len(splits))
    for n, split in enumerate(splits):
        aucs = [details[split]["per_class"][c]["auc"] for c in classes]
        ax.bar(np.arange(len(classes)) + n * width, [a if a is not None else 0 for a in aucs], width, label=split)
    ax.set(xticks=np.arange(len(classes)) + width * (len(splits) - 1) / 2, ylim=(0, 1.02), ylabel="ROC AUC",
           title="AUC per finding")  # fmt: skip
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


def overlays(cases: list[tuple[str, Any, Any, Any]]) -> bytes:
    """One panel per case ``(name, image, truth, prediction)``: the image (a volume's middle slice) in grey, the
    truth outlined in green and the prediction in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = max(1, len(cases))
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.6), squeeze=False)
    for ax, (name, image, truth, pred) in zip(axes[0], cases, strict=False):
        if image.ndim == 3:  # a volume: the slice with the most truth, else the middle one
            counts = (truth > 0).reshape(truth.shape[0], -1).sum(axis=1)
            index = int(np.argmax(counts)) if counts.any() else image.shape[0] // 2
            image, truth, pred = image[index], truth[index], pred[index]
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        for mask, colour in ((truth, "lime"), (pred, "red")):
            if (mask > 0).any() and not (mask > 0).all():
                ax.contour(mask > 0, levels=[0.5], colors=colour, linewidths=1)
        ax.set_title(name.rsplit("/", 1)[-1][:28], fontsize=8)
        ax.axis("off")
    fig.suptitle("val cases: truth (green), prediction (red)")
    fig.tight_layout()
    data = _figure_bytes(fig)
    plt.close(fig)
    return data


OVERLAY_CASES = 4


def task_picture(trainer: Any, details: dict[str, dict[str, Any]]) -> tuple[str, bytes]:
    """The run's picture for its task: ``(file name, PNG bytes)``."""
    task = trainer.task.name
    if task == "multilabel":
        return "finding_auc.png", finding_aucs(details)
    if task == "segmentation":
        images = trainer.sets["val"]
        preds = trainer.task.predict_cases(trainer, "val", OVERLAY_CASES)
        cases = [(images.keys[i], np.asarray(images.images[i][0], dtype=float), np.asarray(images.labels[i]), preds[i])
                 for i in range(len(preds))]  # fmt: skip
        return "overlays.png", overlays(cases)
    return "confusion_matrix.png", confusion_matrices(details)
