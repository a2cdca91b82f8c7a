"""The run's two pictures: training curves per epoch and the confusion matrices of the best model (PNG bytes)."""

from __future__ import annotations

import io
from typing import Any


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
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_loss.legend()
    for name in ("accuracy", "balanced_accuracy", "auc"):
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
    import numpy as np

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
