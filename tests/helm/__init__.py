"""Tests for helm."""
