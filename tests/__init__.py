"""IRMSIA Pipeline tests; the folder tree mirrors the code (tests/jobs/core ↔ jobs/core)."""
