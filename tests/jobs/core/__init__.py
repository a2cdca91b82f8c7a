"""Tests of jobs/core."""
