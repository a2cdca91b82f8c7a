"""The index stage: hash, sniff and read every raw file, derive labels, write ``index/<dataset>/index.parquet``."""
