"""Environment of a stage's container: store, its own image, workflow id, log format, result file, source
mirrors, train's cache folder, credentials.

Credentials come only from Secrets through ``secretKeyRef``; no key ever appears in a manifest.
"""

from __future__ import annotations

from hera.workflows.models import EnvVar, EnvVarSource, SecretKeySelector

from pipeline.argo.volumes import CACHE_DIR, RESULT_FILE, TRAIN_CACHE_DIR, uses_train_cache
from pipeline.config import DeploymentConfig
from pipeline.dag import StageSpec

S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
KAGGLE_SECRET_KEYS = ("KAGGLE_USERNAME", "KAGGLE_KEY")
DICOMWEB_SECRET_KEYS = ("IRMSIA_DICOMWEB_TOKEN", "IRMSIA_DICOMWEB_USER", "IRMSIA_DICOMWEB_PASSWORD")
"""``--source dicomweb``'s credentials, which it reads from the environment only (a test checks the names)."""
DEID_SECRET_KEYS = ("IRMSIA_DEID_SECRET",)
"""The key of ``--deidentify``'s pseudonyms: from a Secret only, never a workflow parameter."""
MIRROR_ENV = {"kaggle": "IRMSIA_KAGGLE_ENDPOINT", "nih": "IRMSIA_NIH_URL", "tcia": "IRMSIA_TCIA_URL"}
"""``mirrors.<key>`` of the configuration -> the variable collect reads it from (sorted: the chart sorts too); a
test checks that a source option reads each of these variables."""


def _secret(name: str, secret: str, *, optional: bool = False) -> EnvVar:
    return EnvVar(
        name=name,
        value_from=EnvVarSource(secret_key_ref=SecretKeySelector(name=secret, key=name, optional=optional or None)),
    )


FIXED_ENV = {
    "IRMSIA_WORKFLOW_ID": "{{workflow.name}}",
    "IRMSIA_LOG_FORMAT": "json",
    "IRMSIA_RESULT_FILE": RESULT_FILE,
    # The root filesystem is read-only: caches and configs go to the cache emptyDir.
    "HOME": CACHE_DIR,
    "XDG_CACHE_HOME": CACHE_DIR,
    "MPLCONFIGDIR": f"{CACHE_DIR}/matplotlib",
    "KAGGLE_CONFIG_DIR": f"{CACHE_DIR}/kaggle",
    "PYTHONDONTWRITEBYTECODE": "1",
}
"""Variables that do not depend on the configuration (the Helm chart reads them from its generated data file)."""


def stage_environment(stage: StageSpec, config: DeploymentConfig) -> list[EnvVar]:
    """The variables every stage reads (see docs/contract.md), plus the caches a read-only image needs."""
    plain = {"IRMSIA_STORE": config.store.uri, "AWS_REGION": config.store.region}
    if config.store.endpoint:
        plain["AWS_ENDPOINT_URL"] = config.store.endpoint
    # register records it in the model's metadata
    plain["IRMSIA_IMAGE"] = config.images.for_stage(stage, gpu=config.gpu_pool.enabled)
    if config.metrics.pushgateway:
        plain["IRMSIA_PUSHGATEWAY"] = config.metrics.pushgateway
    if stage.downloads:
        plain.update(
            {var: getattr(config.mirrors, key) for key, var in MIRROR_ENV.items() if getattr(config.mirrors, key)}
        )
    if uses_train_cache(stage, config):
        plain["IRMSIA_CACHE_DIR"] = TRAIN_CACHE_DIR  # decoded images on the run's PVC survive a retried pod
    plain.update(FIXED_ENV)
    env = [EnvVar(name=k, value=v) for k, v in plain.items()]
    env += [_secret(k, config.store.credentials_secret) for k in S3_SECRET_KEYS]
    if stage.stage in config.kaggle.stages:
        env += [_secret(k, config.kaggle.credentials_secret, optional=True) for k in KAGGLE_SECRET_KEYS]
    if stage.downloads:  # the stages that store collected files, which --deidentify screens
        env += [_secret(k, config.dicomweb.credentials_secret, optional=True) for k in DICOMWEB_SECRET_KEYS]
        env += [_secret(k, config.deidentification.key_secret, optional=True) for k in DEID_SECRET_KEYS]
    return env
