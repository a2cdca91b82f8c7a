"""Tests of pipeline/: the DAG, the local runner, the CLI."""
