"""Names in the store layout are validated once, with messages that name the flag."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from jobs.core.paths import check_dns_label, index_prefix, manifest_key, raw_prefix, registry_prefix, run_prefix


def test_prefixes():
    assert raw_prefix("chest-xray") == "raw/chest-xray/"
    assert index_prefix("nih_cxr14") == "index/nih_cxr14/"
    assert run_prefix("demo-1a2b") == "runs/demo-1a2b/"
    assert registry_prefix("demo-classifier") == "registry/demo-classifier/"
    assert manifest_key("index/d/") == "index/d/_SUCCESS.json"


@pytest.mark.parametrize("name", ["", "Demo", "-x", "x-", "a/b", "a b", "x" * 64, ".x"])
def test_bad_dataset_names(name):
    with pytest.raises(UsageError, match="--dataset"):
        raw_prefix(name)


@pytest.mark.parametrize(("name", "ok"), [("model-1", True), ("model_1", False), ("m.1", False), ("M", False)])
def test_model_names_are_dns_labels(name, ok):
    if ok:
        assert check_dns_label(name, "--model-name") == name
    else:
        with pytest.raises(UsageError, match="DNS-1123"):
            registry_prefix(name)
