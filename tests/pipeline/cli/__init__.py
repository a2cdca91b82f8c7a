"""Tests for pipeline/cli."""
