"""The pipeline layer: the DAG as data, the local runner, the ``irmsia`` CLI (never imports torch or monai)."""
