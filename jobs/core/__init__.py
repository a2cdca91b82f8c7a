"""What every stage shares: the store, the stage contract (manifests, cache keys), errors, logs, settings."""
