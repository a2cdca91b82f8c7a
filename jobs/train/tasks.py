"""What each task trains and how it is judged: outputs, loss, prediction and scores, one class per task.

- ``classification``: one logit per class, cross-entropy (optionally class-weighted, label smoothing), softmax;
  scores in ``jobs.ml.scores``.
- ``multilabel``: one logit per finding, binary cross-entropy (optionally ``pos_weight`` = negatives/positives per
  finding), sigmoid; per-finding AUC and thresholds chosen on val (``jobs.train.multilabel_scores``).
- ``segmentation``: one logit map per label value, Dice + cross-entropy (MONAI's ``DiceCELoss``), argmax;
  inference by sliding windows of ``--patch-size`` (MONAI's ``sliding_window_inference``) when patches are used;
  Dice and HD95 per case (``jobs.train.segmentation_scores``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from jobs.ml import scores
from jobs.ml.networks import CLASSIFIER, SEGMENTER
from jobs.train import multilabel_scores, segmentation_scores
from jobs.train.cache import ImageSet

if TYPE_CHECKING:
    from jobs.train.loop import Trainer


class Task:
    """Base: the task's name, network kind, headline metrics and the three operations the loop needs."""

    name: ClassVar[str]
    kind: ClassVar[str] = CLASSIFIER
    headline: ClassVar[tuple[str, ...]]

    def outputs(self, classes: tuple[str, ...]) -> int:
        return len(classes)

    def loss_weight(self, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
        """The loss's class weighting for ``--class-weights`` (inverse frequency), from the training labels."""
        return None

    def loss(self, logits: torch.Tensor, target: torch.Tensor, trainer: Trainer) -> torch.Tensor:
        raise NotImplementedError

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """The labels as the loss takes them."""
        return y

    def predict(self, trainer: Trainer, split: str) -> tuple[Any, float]:
        """The model's outputs on ``split`` (probabilities, or label maps) and its mean loss there."""
        raise NotImplementedError

    def evaluate(self, trainer: Trainer, split: str, thresholds: list[float] | None = None) -> dict[str, Any]:
        raise NotImplementedError


def _share(trainer: Trainer, split: str) -> ImageSet:
    """This process's contiguous share of ``split`` (all of it for one process)."""
    images = trainer.sets[split]
    lo, hi = trainer.world.share(len(images))
    if (lo, hi) == (0, len(images)):
        return images
    spacing = images.spacing[lo:hi] if images.spacing else ()
    return ImageSet(images.images[lo:hi], images.labels[lo:hi], images.keys[lo:hi], spacing)


def _batches(trainer: Trainer, split: str):
    """This process's share of ``split`` in order, batch by batch, on the device."""
    from jobs.train.loop import make_loader

    loader = make_loader(_share(trainer, split), trainer.settings.batch_size * 2, hardware=trainer.hardware, workers=0)
    for x_cpu, y_cpu in loader:
        yield trainer.to_device(x_cpu, y_cpu)


def _gathered(trainer: Trainer, local: Any, loss_sum: float) -> tuple[list[Any], float]:
    """Every process's share of the predictions in rank order (= the split's order) and the summed loss: each
    item scored exactly once, whatever the number of processes."""
    parts = trainer.world.gather((local, loss_sum))
    return [p for p, _ in parts], sum(loss for _, loss in parts)


class Classification(Task):
    name = "classification"
    headline = scores.HEADLINE

    def loss_weight(self, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
        from jobs.train.loop import class_weight_tensor

        return class_weight_tensor(labels, num_classes)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, trainer: Trainer) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(), target, weight=trainer.loss_weight, label_smoothing=trainer.settings.label_smoothing
        )

    @torch.inference_mode()
    def predict(self, trainer: Trainer, split: str) -> tuple[np.ndarray, float]:
        """Class probabilities ``(N, K)`` and the mean cross-entropy on ``split``."""
        trainer.model.eval()
        probs, losses = [], []
        for x, y in _batches(trainer, split):
            logits = trainer.forward(x).float()
            losses.append(F.cross_entropy(logits, y, reduction="sum").item())
            probs.append(torch.softmax(logits, dim=1).cpu().numpy())
        k = len(trainer.classes)
        local = np.concatenate(probs) if probs else np.zeros((0, k), np.float32)
        shares, loss_sum = _gathered(trainer, local, sum(losses))
        return np.concatenate(shares), loss_sum / max(1, len(trainer.sets[split]))

    def evaluate(self, trainer: Trainer, split: str, thresholds: list[float] | None = None) -> dict[str, Any]:
        probs, loss = self.predict(trainer, split)
        metrics = scores.classification_metrics(trainer.sets[split].labels, probs, trainer.classes)
        metrics["loss"] = loss
        return metrics


class Multilabel(Task):
    name = "multilabel"
    headline = multilabel_scores.HEADLINE

    def loss_weight(self, labels: np.ndarray, num_classes: int) -> torch.Tensor | None:
        positives = np.asarray(labels, np.float64).sum(axis=0)
        negatives = len(labels) - positives
        return torch.tensor(negatives / np.maximum(positives, 1), dtype=torch.float32)

    def target(self, y: torch.Tensor) -> torch.Tensor:
        return y.float()

    def loss(self, logits: torch.Tensor, target: torch.Tensor, trainer: Trainer) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target, pos_weight=trainer.loss_weight)

    @torch.inference_mode()
    def predict(self, trainer: Trainer, split: str) -> tuple[np.ndarray, float]:
        """Finding probabilities ``(N, K)`` and the mean BCE on ``split``."""
        trainer.model.eval()
        probs, loss_sum = [], 0.0
        for x, y in _batches(trainer, split):
            logits = trainer.forward(x).float()
            loss_sum += F.binary_cross_entropy_with_logits(logits, y.float(), reduction="sum").item() / y.shape[1]
            probs.append(torch.sigmoid(logits).cpu().numpy())
        k = len(trainer.classes)
        local = np.concatenate(probs) if probs else np.zeros((0, k), np.float32)
        shares, total = _gathered(trainer, local, loss_sum)
        return np.concatenate(shares), total / max(1, len(trainer.sets[split]))

    def evaluate(self, trainer: Trainer, split: str, thresholds: list[float] | None = None) -> dict[str, Any]:
        probs, loss = self.predict(trainer, split)
        labels = trainer.sets[split].labels
        cuts = thresholds if thresholds is not None else multilabel_scores.choose_thresholds(labels, probs)
        metrics = multilabel_scores.multilabel_metrics(labels, probs, trainer.classes, cuts)
        metrics["loss"] = loss
        return metrics


class Segmentation(Task):
    name = "segmentation"
    kind = SEGMENTER
    headline = segmentation_scores.HEADLINE

    def __init__(self) -> None:
        from monai.losses import DiceCELoss

        self._loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def target(self, y: torch.Tensor) -> torch.Tensor:
        return y.long()

    def loss(self, logits: torch.Tensor, target: torch.Tensor, trainer: Trainer) -> torch.Tensor:
        return self._loss(logits.float(), target.unsqueeze(1))

    def infer(self, trainer: Trainer, x: torch.Tensor) -> torch.Tensor:
        """Logits for whole inputs: one pass, or sliding windows of ``--patch-size`` with a quarter overlap."""
        patch = trainer.settings.patch_size
        if not patch or all(side <= patch for side in x.shape[2:]):
            return trainer.forward(x).float()
        from monai.inferers import sliding_window_inference

        roi = (patch,) * (x.dim() - 2)
        logits = sliding_window_inference(x, roi, sw_batch_size=4, predictor=trainer.forward, overlap=0.25)
        return torch.as_tensor(logits).float()

    @torch.inference_mode()
    def predict(self, trainer: Trainer, split: str) -> tuple[list[np.ndarray], float]:
        """Class-index maps per case and the mean Dice+CE loss on ``split``."""
        trainer.model.eval()
        preds: list[np.ndarray] = []
        loss_sum = 0.0
        for x, y in _batches(trainer, split):
            logits = self.infer(trainer, x)
            loss_sum += self._loss(logits, y.long().unsqueeze(1)).item() * len(y)
            preds.extend(logits.argmax(dim=1).to(torch.uint8).cpu().numpy())
        shares, total = _gathered(trainer, preds, loss_sum)
        return [p for share in shares for p in share], total / max(1, len(trainer.sets[split]))

    @torch.inference_mode()
    def predict_cases(self, trainer: Trainer, split: str, count: int) -> list[np.ndarray]:
        """Class-index maps of the first ``count`` cases of ``split`` (for the overlay picture)."""
        trainer.model.eval()
        images = trainer.sets[split]
        preds = []
        for i in range(min(count, len(images))):
            x = torch.from_numpy(np.array(images.images[i : i + 1])).to(trainer.hardware.device).float()
            preds.append(self.infer(trainer, x).argmax(dim=1)[0].to(torch.uint8).cpu().numpy())
        return preds

    def evaluate(self, trainer: Trainer, split: str, thresholds: list[float] | None = None) -> dict[str, Any]:
        preds, loss = self.predict(trainer, split)
        images = trainer.sets[split]
        trues = [np.asarray(images.labels[i]) for i in range(len(images))]
        spacing = list(images.spacing) if images.spacing else [None] * len(images)
        metrics = segmentation_scores.segmentation_metrics(preds, trues, images.keys, spacing, trainer.classes)
        metrics["loss"] = loss
        return metrics


TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Classification, Multilabel, Segmentation)}


def task_for(name: str) -> Task:
    return TASKS[name]()
