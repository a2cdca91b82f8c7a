"""index: hash every raw object, read its headers, derive labels, write ``index/<dataset>/index.parquet``."""
