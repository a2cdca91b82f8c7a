"""``irmsia menu``: a full-screen Textual menu over the Python API (``pipeline.api``)."""
