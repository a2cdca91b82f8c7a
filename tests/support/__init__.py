"""Test support: real servers started on loopback (SeaweedFS S3) and small data builders."""
