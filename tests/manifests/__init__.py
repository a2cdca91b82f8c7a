"""Tests for manifests."""
