"""Tests of the pipeline package (DAG, runner, CLI)."""
