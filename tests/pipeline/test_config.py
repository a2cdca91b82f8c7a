"""The deployment configuration: the committed files load, and each bad value fails naming its key."""

from __future__ import annotations

import pytest

from jobs.core.errors import UsageError
from pipeline.config import DeploymentConfig, ImageRef, from_mapping, load_config, to_mapping
from tests.support.argo_schema import REPO_ROOT


@pytest.mark.parametrize("path", ["irmsia.yaml", "manifests/overlays/gpu/irmsia.yaml"])
def test_committed_configurations_load(path):
    config = load_config(REPO_ROOT / path)
    assert config.service_account != "default"
    assert from_mapping(DeploymentConfig, to_mapping(config)) == config


def test_image_reference_is_registry_entrypoint_tag():
    assert ImageRef(registry="ghcr.io/x/", tag="1.2").build("irmsia-train") == "ghcr.io/x/irmsia-train:1.2"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"serviceAccount": "default"}, "dedicated service account"),
        ({"namespce": "x"}, r"unknown keys \['namespce'\]"),
        ({"images": {"tag": "latest"}}, "images.tag 'latest'"),
        ({"store": {"uri": "/data"}}, "store.uri '/data'"),
        ({"store": {"endpoint": "minio:9000"}}, "store.endpoint"),
        ({"resources": {"trian": {}}}, r"resources \['trian'\]"),
        ({"resources": {"train": {"limits": {"cpu": "1"}}}}, "limits.memory is required"),
        ({"resources": {"train": {"requests": {"cpu": "lots"}}}}, "requests.cpu 'lots'"),
        ({"resources": {"train": {"activeDeadlineSeconds": "1h"}}}, "activeDeadlineSeconds: expected an integer"),
        ({"gpuPool": {"enabled": "yes"}}, "gpuPool.enabled: expected true or false"),
        ({"gpuPool": {"tolerations": [{"key": "k", "operator": "Equals"}]}}, "operator 'Equals'"),
        ({"retry": {"backoff": {"duration": "30"}}}, "retry.backoff.duration '30'"),
        ({"security": {"runAsUser": 0}}, "non-root"),
        ({"schedules": [{"name": "n", "schedules": ["@daily"], "target": "index"}]}, "five-field"),
        ({"schedules": [{"name": "n", "schedules": ["0 1 * * *"], "target": "deploy"}]}, "target 'deploy'"),
        ({"schedules": [{"name": "n", "schedules": ["0 1 * * *"], "target": "index", "parameters": {"x": "1"}}]},
         "not pipeline parameters"),
        ({"schedules": [{"name": "n", "target": "index"}]}, "schedules"),
        ({"mirrors": {"tcia": "tcia.example"}}, r"mirrors.tcia 'tcia.example': use an http"),
        ({"mirrors": {"nhi": ""}}, r"unknown keys \['nhi'\]"),
        ({"localData": {"claimName": "My_Data"}}, "localData.claimName"),
        ({"localData": {"claimName": "data", "mountPath": "/tmp"}}, "localData.mountPath '/tmp'"),
        ({"trainCache": {"size": "big"}}, "trainCache.size 'big'"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key(data, match):
    with pytest.raises(UsageError, match=match):
        from_mapping(DeploymentConfig, data)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_config(tmp_path / "irmsia.yaml")


def test_every_schema_constraint_names_a_configuration_field():
    import dataclasses

    from pipeline import config as config_module
    from pipeline.argo.chart_values import CONSTRAINTS

    for where in CONSTRAINTS:
        cls_name, field_name = where.split(".")
        cls = getattr(config_module, cls_name)
        assert field_name in {f.name for f in dataclasses.fields(cls)}, where
