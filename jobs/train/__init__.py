"""train: a MONAI 2D classifier trained on a split, written to ``runs/<run-id>/``."""
