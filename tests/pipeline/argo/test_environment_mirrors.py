"""The variables the Argo objects set are the ones the collect sources read (no name stated twice apart)."""

from __future__ import annotations

from jobs.collect.sources import options_types
from jobs.core.settings import options_of
from pipeline.argo.environment import MIRROR_ENV


def test_every_mirror_variable_is_read_by_its_source():
    # GIVEN the environment variable the pods get for each configured mirror
    read_by = {name: {o.env for o in options_of(group) if o.env} for name, group in options_types().items()}
    # THEN the source of that name reads exactly that variable
    for source, variable in MIRROR_ENV.items():
        assert variable in read_by[source], (source, variable, read_by[source])


def test_the_pacs_credential_variables_are_the_ones_dicomweb_reads_from_the_environment_only():
    from jobs.collect.sources.dicomweb import DicomwebOptions
    from pipeline.argo.environment import DICOMWEB_SECRET_KEYS

    environment_only = {o.env for o in options_of(DicomwebOptions) if o.env and o.flag is None}
    assert set(DICOMWEB_SECRET_KEYS) == environment_only
