"""The Python API: collect, index, split, train, register and load models from a script or a notebook, with typed
results instead of printed lines. Every call runs the stage's own code (``STAGE.execute(settings)`` with the
settings its command line would build), in this process or as the stage's process (``mode="process"``).

    from pipeline.api import TCIACollector, DatasetManager, TrainingPipeline, load_model

    TCIACollector("./irmsia-data").download_collection("COVID-19-AR", max_patients=10, modality="CT")
    datasets = DatasetManager("./irmsia-data")
    datasets.scan_directory("covid-19-ar", labels="labels.csv")
    datasets.create_train_val_test_split("covid-19-ar", ratios=(0.7, 0.15, 0.15))
    run = TrainingPipeline("covid-19-ar", "./irmsia-data", model="densenet121").train(num_epochs=50)
    version = TrainingPipeline("covid-19-ar", "./irmsia-data").register("covid-classifier", run_id=run.run_id)
    model = load_model("covid-classifier", "champion", store="./irmsia-data")

The three workflows of the seed, rewritten for this API, are in ``docs/api.md`` and run by
``tests/pipeline/api/test_workflows.py``.
"""

from pipeline.api.collectors import (
    COLLECTORS,
    DemoCollector,
    KaggleCollector,
    LocalCollector,
    NIHCollector,
    TCIACollector,
    URLCollector,
    dataset_name_for,
)
from pipeline.api.datasets import DatasetManager
from pipeline.api.execution import MODES, StageFailed
from pipeline.api.models import LoadedModel, list_models, load_model, model_versions, promote, show_model
from pipeline.api.pipelines import pipeline_values, run_pipeline
from pipeline.api.results import (
    CollectResult,
    DatasetStatistics,
    IndexResult,
    PipelineResult,
    Registration,
    SplitResult,
    StageRun,
    TrainResult,
)
from pipeline.api.training import TrainingPipeline, register
from pipeline.explain import explain
from pipeline.status import store_status

__all__ = [
    "COLLECTORS",
    "MODES",
    "CollectResult",
    "DatasetManager",
    "DatasetStatistics",
    "DemoCollector",
    "IndexResult",
    "KaggleCollector",
    "LoadedModel",
    "LocalCollector",
    "NIHCollector",
    "PipelineResult",
    "Registration",
    "SplitResult",
    "StageFailed",
    "StageRun",
    "TCIACollector",
    "TrainResult",
    "TrainingPipeline",
    "URLCollector",
    "dataset_name_for",
    "explain",
    "list_models",
    "load_model",
    "model_versions",
    "pipeline_values",
    "promote",
    "register",
    "run_pipeline",
    "show_model",
    "store_status",
]
