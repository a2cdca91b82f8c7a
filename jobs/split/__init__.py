"""split: stratified train/val/test split grouped by patient, written to ``splits/<dataset>/``."""
