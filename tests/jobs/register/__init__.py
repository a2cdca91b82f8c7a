"""Tests of the register stage, mirroring jobs/register/."""
