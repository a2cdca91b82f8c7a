"""collect: download a dataset (demo, local folder, URL, TCIA, Kaggle, NIH) into ``raw/<dataset>/``."""
