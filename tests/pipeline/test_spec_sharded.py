"""A sharded spec (``sharded: true``): each dataset's index as a plan, one part per planned shard and a gather, run
as real stage processes; the same index as an unsharded run, a rerun that is all cache hits, and ``--plan``."""

from __future__ import annotations

import io
import os

import yaml

from jobs.core.manifest import read_manifest
from jobs.core.paths import index_prefix
from jobs.core.store import open_store
from pipeline.cli import main
from pipeline.cli.run import print_plan
from pipeline.dag import Pipeline
from pipeline.runner import ProcessExecutor, run_pipeline
from pipeline.spec import parse_spec, spec_pipeline
from tests.support.argo_schema import REPO_ROOT

SPEC = yaml.safe_load((REPO_ROOT / "examples/demo-merged.yaml").read_text(encoding="utf-8"))


def _collect_and_index(sharded: bool) -> Pipeline:
    """The example's DAG up to the indexes (what sharding changes), sharded or not."""
    pipeline = spec_pipeline(parse_spec({**SPEC, "sharded": sharded}))
    stages = tuple(s for s in pipeline.stages if s.stage in ("collect", "index"))
    return Pipeline(name=pipeline.name, parameters=pipeline.parameters, stages=stages)


def _run(pipeline: Pipeline, store: str, jobs: int = 2):
    env = {**os.environ, "IRMSIA_LOG_FORMAT": "json"}
    return run_pipeline(pipeline, pipeline.defaults(), store=store, env=env, executor=ProcessExecutor(), jobs=jobs)


def test_the_sharded_dag_plans_fans_out_and_gathers_each_index():
    pipeline = _collect_and_index(sharded=True)
    plan, part, gather = (pipeline.stage(f"index-{step}demo-a") for step in ("plan-", "part-", ""))
    assert plan.args[-2:] == ("--shard", "plan") and plan.depends == ("collect-demo-a",)
    assert (part.fan_out, part.args[-2:], part.depends) == (plan.name, ("--shard", "{shard}"), (plan.name,))
    assert gather.args[-2:] == ("--shard", "gather") and gather.depends == (part.name,)


def test_sharded_and_unsharded_runs_seal_the_same_indexes_and_a_rerun_is_all_cache_hits(tmp_path):
    # GIVEN the two datasets collected and indexed without shards, and with them, into two stores
    plain, sharded = str(tmp_path / "plain"), str(tmp_path / "sharded")
    assert [o.exit_code for o in _run(_collect_and_index(False), plain)] == [0] * 4
    outcomes = _run(_collect_and_index(True), sharded)
    # THEN every plan, part and gather ran (one part per planned shard), and each index is the same, byte for byte
    assert sorted(o.name for o in outcomes) == sorted(
        [f"{t}-demo-{d}" for d in "ab" for t in ("collect", "index-plan", "index")]
        + [f"index-part-demo-{d}-1" for d in "ab"]
    )
    assert {o.exit_code for o in outcomes} == {0}
    for dataset in ("demo-a", "demo-b"):
        a, b = (read_manifest(open_store(s), index_prefix(dataset)) for s in (plain, sharded))
        assert a is not None and b is not None
        assert (a.cache_key, a.outputs) == (b.cache_key, b.outputs)
    # AND nothing of the parts is left once gathered
    assert list(open_store(sharded).list("shards/")) == []
    # WHEN the sharded DAG runs again THEN every task is a cache hit
    again = _run(_collect_and_index(True), sharded)
    assert {o.name: bool((o.result or {}).get("cached")) for o in again} == {o.name: True for o in again}


def test_plan_prints_each_datasets_shards_once_collected_and_writes_nothing(tmp_path):
    store = str(tmp_path / "store")
    pipeline = spec_pipeline(parse_spec({**SPEC, "sharded": True}))
    env = {**os.environ, "IRMSIA_LOG_FORMAT": "json"}
    # GIVEN nothing collected: WHEN planned THEN each dataset is not planned yet, saying what to run
    out = io.StringIO()
    assert print_plan(pipeline, pipeline.defaults(), store=store, env=env, executor=ProcessExecutor(), jobs=1,
                      out=out) == 0  # fmt: skip
    assert out.getvalue().count("not planned: no _SUCCESS.json") == 2 and "run irmsia-collect first" in out.getvalue()
    # GIVEN one dataset collected
    collect = Pipeline(name="c", parameters=(), stages=(pipeline.stage("collect-demo-a"),))
    assert [o.exit_code for o in _run(collect, store)] == [0]
    before = sorted(o.key for o in open_store(store).list(""))
    # WHEN planned THEN its shards are shown, with the run's size against Argo's limits, and the store is unchanged
    out = io.StringIO()
    print_plan(pipeline, pipeline.defaults(), store=store, env=env, executor=ProcessExecutor(), jobs=1, out=out)
    text = out.getvalue()
    assert "index-part-demo-a        1 shard(s): 278 files" in text
    assert "index-part-demo-b        not planned" in text
    assert "far below Argo's limits" in text
    assert sorted(o.key for o in open_store(store).list("")) == before


def test_a_run_cannot_start_at_a_fan_out_without_its_plan(tmp_path, capsys):
    # GIVEN a sharded spec file
    path = tmp_path / "sharded.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "sharded": True}), encoding="utf-8")
    # WHEN a run starts at a part task THEN it is refused, naming the plan task to start at
    code = main(["run", "--spec", str(path), "--from", "index-part-demo-a", "--store", str(tmp_path / "s")])
    assert code == 2
    assert "start at index-plan-demo-a" in capsys.readouterr().err
