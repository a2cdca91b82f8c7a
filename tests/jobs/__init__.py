"""Tests of the stages, mirroring jobs/."""
