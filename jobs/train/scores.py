"""Classification scores for the train stage: re-exported from ``jobs.ml.scores``, where register (the paired
promotion test) can read them too."""

from jobs.ml.scores import HEADLINE, binary_auc, classification_metrics, confusion_matrix, flat_metrics

__all__ = ["HEADLINE", "binary_auc", "classification_metrics", "confusion_matrix", "flat_metrics"]
