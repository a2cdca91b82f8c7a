"""register: a versioned, hash-chained model registry entry under ``registry/<model-name>/``."""
