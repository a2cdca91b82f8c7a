"""Tests for pipeline/argo."""
