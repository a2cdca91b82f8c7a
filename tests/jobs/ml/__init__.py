"""Tests of jobs.ml: networks, preprocessing, GPU probes."""
