"""Beyond one process: the three pipelines on a real dask.distributed cluster, and each built as an
offline Dataflow job whose staged pipeline is replayed here, byte for byte against the in-process
FnApiRunner (docs/runners.md).

Run by `.ci/engine_checks.sh`, which starts a scheduler and two worker processes on 127.0.0.1 and
sets SARCHAT_ENGINE_CHECKS=1, SARCHAT_DASK_ADDRESS and SOURCE_DATE_EPOCH (the date the score report
prints; the workers read it too). Skipped in the normal suite.

Beam's DaskRunner fails silently when a pipeline uses what it gets wrong (a multi-output step, a
second sink, a side input of a step that writes files; transforms/steps.py), so the
comparison is the test: the same set of files under each output folder, every byte the same. The
last tests run deliberately broken tiny pipelines on the same cluster and show the comparison
catches both failures.
"""
import json
import os

import pytest

from sarchat.transforms import ownership

ENGINE_CHECKS = os.environ.get("SARCHAT_ENGINE_CHECKS") == "1"
pytestmark = pytest.mark.skipif(not ENGINE_CHECKS, reason="engine checks: run by .ci/engine_checks.sh "
                                                         "(a Dask cluster on 127.0.0.1, offline Dataflow builds)")

IMAGES = "24"             # synthetic images, train + test
IMAGES_PER_SHARD = "4"    # several shards per split: the workers share them
SCORE_FLAGS = ["--num-buckets", "8", "--bootstrap", "50"]


def tree_differences(expected, actual, ignore=()):
    """What differs between two output folders: files only in one, files whose bytes differ.
    [] when every file and byte is the same (files named in `ignore`, relative paths, aside)."""
    def files(root):
        out = {}
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.relpath(path, root) not in ignore:
                    out[os.path.relpath(path, root)] = path
        return out

    want, got = files(expected), files(actual)
    diffs = [f"missing: {p}" for p in sorted(set(want) - set(got))]
    diffs += [f"extra: {p}" for p in sorted(set(got) - set(want))]
    for p in sorted(set(want) & set(got)):
        with open(want[p], "rb") as a, open(got[p], "rb") as b:
            if a.read() != b.read():
                diffs.append(f"differs: {p}")
    return diffs


TIMES = {}  # (pipeline, where) -> seconds, written to $SARCHAT_ENGINE_TIMES (the CI log prints them)


def sarchat(*argv, timed=None):
    import time

    from sarchat.beam_pipelines import cli

    t0 = time.perf_counter()
    rc = cli.main([str(a) for a in argv])
    assert rc == 0, f"sarchat {' '.join(map(str, argv))} exited {rc}"
    if timed is not None:
        TIMES[f"{argv[0]} {timed}"] = round(time.perf_counter() - t0, 1)
        if os.environ.get("SARCHAT_ENGINE_TIMES"):
            with open(os.environ["SARCHAT_ENGINE_TIMES"], "w") as f:
                json.dump(TIMES, f, indent=1)


def _corrupt(annotations_path):
    """Records the generator must reject: a duplicated annotation id, an unknown category, an
    annotation of an unknown image (so rejects/*.jsonl and the manifest's counts are compared too)."""
    with open(annotations_path) as f:
        data = json.load(f)
    first = dict(data["annotations"][0])
    data["annotations"] += [dict(first), dict(first, id=10 ** 6, category_id=999),
                            dict(first, id=10 ** 6 + 1, image_id=10 ** 6)]
    with open(annotations_path, "w") as f:
        json.dump(data, f)


def _predictions(dataset, folder):
    """Predictions of two models from the test rows: `echo.jsonl`, the reference answers;
    `mixed.jsonl`, model `half` (the reference answer for every other row, nonsense otherwise, a
    duplicated id, an unknown id) and model `echo2` (every other row), and a malformed line, which,
    in a file of two models, is a reject of no model (the run's rejected.jsonl)."""
    import glob

    import pyarrow.parquet as pq

    rows = pq.read_table(sorted(glob.glob(os.path.join(dataset, "parquet", "test", "*.parquet"))),
                         columns=["id", "answer"]).sort_by("id").to_pylist()
    os.makedirs(folder)
    with open(os.path.join(folder, "echo.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "prediction": r["answer"], "model": "echo"}) + "\n")
    with open(os.path.join(folder, "mixed.jsonl"), "w") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": r["id"], "prediction": r["answer"] if i % 2 else "no idea", "model": "half"}) + "\n")
            if i % 2 == 0:
                f.write(json.dumps({"id": r["id"], "prediction": r["answer"], "model": "echo2"}) + "\n")
        f.write(json.dumps({"id": rows[0]["id"], "prediction": "again", "model": "half"}) + "\n")
        f.write(json.dumps({"id": "no-such-id", "prediction": "x", "model": "half"}) + "\n")
        f.write("not json\n")
    return [os.path.join(folder, "echo.jsonl"), os.path.join(folder, "mixed.jsonl")]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """The inputs and the in-process (FnApiRunner) outputs of generate, stats and score."""
    assert os.environ.get("SOURCE_DATE_EPOCH"), "set SOURCE_DATE_EPOCH for the launcher and the workers"
    base = tmp_path_factory.mktemp("engines")
    data = base / "data"
    sarchat("synth", "--output", data, "--images", IMAGES, "--workers", "1", "--no-progress", "--quiet")
    _corrupt(data / "Annotations" / "test.json")
    r = {"base": base, "data": data}
    r["generate"] = ["generate", "--input", data, "--images-per-shard", IMAGES_PER_SHARD, "--no-progress"]
    sarchat(*r["generate"], "--output", base / "generate", timed="in process")
    r["stats"] = ["stats", "--dataset", base / "generate", "--no-progress"]
    sarchat(*r["stats"], "--output", base / "stats", timed="in process")
    preds = _predictions(base / "generate", base / "predictions")
    r["score"] = ["score", "--dataset", base / "generate", "--predictions", *preds, *SCORE_FLAGS, "--no-progress"]
    sarchat(*r["score"], "--output", base / "score", timed="in process")
    return r


def test_reference_outputs_hold_what_is_compared(ref):
    """The comparison is only as good as what the in-process run wrote: rejects, several shards,
    every model, rejects of a model and of none, the stats plots."""
    base = ref["base"]
    with open(base / "generate" / "manifest.json") as f:
        manifest = json.load(f)
    assert manifest["num_shards"]["train"] > 1 and sum(manifest["rejects"]["test"].values()) >= 3
    with open(base / "score" / "leaderboard.json") as f:
        assert {m["model"] for m in json.load(f)} == {"echo", "echo2", "half"}
    assert (base / "score" / "rejected.jsonl").read_text().count("\n") == 1          # the malformed line
    assert (base / "score" / "half" / "rejected.jsonl").read_text().count("\n") == 2  # duplicate, unknown id
    assert list((base / "stats" / "plots").iterdir())


# ---------------------------------------------------------------------------------------------
# Dask: scheduler and two workers started by .ci/engine_checks.sh


@pytest.fixture(scope="module")
def dask_flags():
    address = os.environ.get("SARCHAT_DASK_ADDRESS")
    assert address, "SARCHAT_DASK_ADDRESS: the scheduler .ci/engine_checks.sh started"
    return ["--runner=DaskRunner", f"--dask_client_address={address}", "--dask_npartitions=2"]


def _executed_per_worker(address):
    from distributed import Client

    with Client(address, timeout=30) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)


@pytest.fixture(scope="module")
def dask_runs(ref, dask_flags):
    """generate, stats and score on the cluster, with the flags a user types; the tasks each worker
    ran meanwhile."""
    address = os.environ["SARCHAT_DASK_ADDRESS"]
    before = _executed_per_worker(address)
    out = ref["base"] / "dask"
    for name in ("generate", "stats", "score"):
        sarchat(*ref[name], "--output", out / name, *dask_flags, timed="on the Dask cluster")
    after = _executed_per_worker(address)
    return out, {w: after[w] - before.get(w, 0) for w in after}


@pytest.mark.parametrize("pipeline", ["generate", "stats", "score"])
def test_pipeline_on_dask_matches_in_process(ref, dask_runs, pipeline):
    out, _ = dask_runs
    assert tree_differences(ref["base"] / pipeline, out / pipeline) == []


def test_both_dask_workers_ran_tasks(dask_runs):
    _, executed = dask_runs
    assert len(executed) == 2 and all(n > 0 for n in executed.values()), executed


# Deliberately broken pipelines: what the DaskRunner gets wrong, caught by the same comparison.


def _run_both(build, base, dask_flags):
    """Run build(pipeline, out) in process and on the cluster; the differences of their outputs."""
    from sarchat.beam_pipelines.beam_options import launch, make_pipeline

    for name, flags in (("in-process", []), ("dask", dask_flags)):
        p = make_pipeline(flags)
        build(p, str(base / name))
        launch(p)
    return tree_differences(base / "in-process", base / "dask")


def _two_sinks(p, out):
    """Two independent sinks: the DaskRunner computes only the step applied last."""
    import apache_beam as beam

    from sarchat.transforms.fileio import write_bytes

    p | "A" >> beam.Create(["a"]) | "WriteA" >> beam.Map(lambda x: write_bytes(os.path.join(out, "a.txt"), x.encode()))
    p | "B" >> beam.Create(["b"]) | "WriteB" >> beam.Map(lambda x: write_bytes(os.path.join(out, "b.txt"), x.encode()))


def _two_sinks_joined(p, out):
    """The same two sinks, and a last step that depends on both (steps.py)."""
    import apache_beam as beam

    from sarchat.transforms.fileio import write_bytes
    from sarchat.transforms.steps import Gather

    a = p | "A" >> beam.Create(["a"]) | "WriteA" >> beam.Map(lambda x: write_bytes(os.path.join(out, "a.txt"), x.encode()))
    b = p | "B" >> beam.Create(["b"]) | "WriteB" >> beam.Map(lambda x: write_bytes(os.path.join(out, "b.txt"), x.encode()))
    ((a, b) | "Both" >> beam.Flatten() | "Gather" >> Gather()
     | "Done" >> beam.Map(lambda _: write_bytes(os.path.join(out, "done.txt"), b"done")))


def _write_numbers(out, name):
    from sarchat.transforms.fileio import write_bytes

    return lambda xs: write_bytes(os.path.join(out, f"{name}.txt"), " ".join(map(str, sorted(xs))).encode())


def _even_and_odd(p, out, single_output):
    """Even and odd numbers to two files: with a multi-output step (every output gets every element
    on the DaskRunner), or with `tagged` pairs and `select` (steps.py)."""
    import apache_beam as beam

    from sarchat.transforms.steps import Gather, select

    numbers = p | "Numbers" >> beam.Create(list(range(6)))
    if single_output:
        parts = numbers | "Parity" >> beam.Map(lambda n: ("odd" if n % 2 else "even", n))
        even, odd = parts | "Even" >> select("even"), parts | "Odd" >> select("odd")
    else:
        parts = numbers | "Parity" >> beam.FlatMap(
            lambda n: [beam.pvalue.TaggedOutput("odd", n)] if n % 2 else [n]).with_outputs("odd", main="even")
        even, odd = parts.even, parts.odd
    written = [pcoll | f"Gather{name}" >> Gather() | f"Write{name}" >> beam.Map(_write_numbers(out, name))
               for name, pcoll in (("even", even), ("odd", odd))]
    tuple(written) | "Both" >> beam.Flatten() | "GatherAll" >> Gather() | "Done" >> beam.Map(lambda _: None)


def test_comparison_catches_a_dropped_sink(tmp_path, dask_flags):
    assert _run_both(_two_sinks, tmp_path / "broken", dask_flags) == ["missing: a.txt"]
    assert _run_both(_two_sinks_joined, tmp_path / "joined", dask_flags) == []


def test_comparison_catches_a_duplicated_tagged_output(tmp_path, dask_flags):
    broken = _run_both(lambda p, out: _even_and_odd(p, out, single_output=False), tmp_path / "broken", dask_flags)
    assert broken == ["differs: even.txt", "differs: odd.txt"]
    assert (tmp_path / "broken" / "dask" / "even.txt").read_text() == "0 1 2 3 4 5"  # every element, both outputs
    fixed = _run_both(lambda p, out: _even_and_odd(p, out, single_output=True), tmp_path / "fixed", dask_flags)
    assert fixed == [] and (tmp_path / "fixed" / "dask" / "odd.txt").read_text() == "1 3 5"


# ---------------------------------------------------------------------------------------------
# Dataflow, offline: the job is built and staged to local files; its staged pipeline is replayed here


def _dataflow_flags(folder, repo_setup):
    return ["--runner=DataflowRunner", "--project=sarchat-offline", "--region=us-central1",
            f"--template_location={folder / 'template.json'}", f"--staging_location={folder / 'staging'}",
            f"--temp_location={folder / 'temp'}", "--no_auth",
            # a localhost endpoint: Beam then checks no bucket and calls no service
            "--dataflow_endpoint=http://localhost:9", f"--setup_file={repo_setup}"]


def replay_staged_pipeline(staging):
    """Run the pipeline proto the Dataflow runner staged (staging/pipeline.pb) on the in-process
    FnApiRunner, its container environment swapped for this process."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.portability import python_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    with open(os.path.join(staging, "pipeline.pb"), "rb") as f:
        proto = beam_runner_api_pb2.Pipeline.FromString(f.read())
    for env in proto.components.environments.values():
        env.urn, env.payload = python_urns.EMBEDDED_PYTHON, b""
        del env.dependencies[:]
    FnApiRunner().run_via_runner_api(proto, PipelineOptions([])).wait_until_finish()


@pytest.mark.parametrize("pipeline", ["generate", "stats", "score"])
def test_offline_dataflow_job_replays_byte_identical(ref, pipeline, capsys):
    import tarfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = ref["base"] / "dataflow" / pipeline
    for sub in ("staging", "temp"):
        (folder / sub).mkdir(parents=True)
    out = folder / "out"
    sarchat(*ref[pipeline], "--output", out, *_dataflow_flags(folder, os.path.join(repo, "setup.py")),
            timed="offline Dataflow build")
    assert "submitted" in capsys.readouterr().out     # built and staged, not run
    assert not out.exists() or not any(out.iterdir())  # nothing ran yet
    with open(folder / "template.json") as f:
        assert json.load(f)["type"] == "JOB_TYPE_BATCH"
    with tarfile.open(folder / "staging" / "workflow.tar.gz") as sdist:  # the package, for the workers
        names = sdist.getnames()
    assert any(n.endswith("/transforms/steps.py") for n in names) and any(n.endswith("/setup.py") for n in names)
    replay_staged_pipeline(folder / "staging")
    # the ownership marker is the launcher's (the CLI claims its folder), not the job's: a replayed
    # job has no launcher, so it writes everything but that file
    assert tree_differences(ref["base"] / pipeline, out, ignore={ownership.MARK}) == []
