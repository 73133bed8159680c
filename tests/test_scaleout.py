"""Scale-out checks without credentials: the pipelines' graphs build for DataflowRunner (dry run) with
a custom container and --setup_file, pickle cleanly, and only submit (no waiting) when launched from
a Flex Template; the Flex Template metadata names parameters the pipelines accept."""
import glob
import importlib
import json
import os
import re

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from sarchat.beam_pipelines import flags, generate, regenerate
from sarchat.beam_pipelines.beam_options import submits_only
from sarchat.beam_pipelines.regenerate_publish import PublishFn
from tests.helpers import known_dataset, write_coco

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "us-central1-docker.pkg.dev/sarchat-ci/sarchat/sarchat:test"
DATAFLOW = ["--runner=DataflowRunner", "--project=sarchat-ci", "--region=us-central1",
            "--temp_location=gs://sarchat-ci-bucket/tmp", "--dry_run=True", f"--sdk_container_image={IMAGE}"]
TEMPLATES = os.path.join(REPO, "beam_pipelines", "flex_templates")


@pytest.fixture
def root(tmp_path):
    images, annotations = known_dataset()
    root = tmp_path / "data"
    write_coco(str(root), "test", images, annotations)
    return root


def _unpickle_all(proto):
    """Every pickled DoFn / CombineFn of the portable graph loads back (what a worker does)."""
    n = 0
    for t in proto.components.transforms.values():
        if t.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
            if payload.do_fn.urn == "beam:dofn:pickled_python_info:v1":
                pickler.loads(payload.do_fn.payload)
                n += 1
        elif t.spec.urn == common_urns.composites.COMBINE_PER_KEY.urn:
            payload = beam_runner_api_pb2.CombinePayload.FromString(t.spec.payload)
            pickler.loads(payload.combine_fn.payload)
            n += 1
    return n


def test_generate_graph_builds_for_dataflow(root):
    config = flags.parse_config(generate.build_parser(), [
        "--input", str(root), "--output", "gs://sarchat-ci-bucket/out", "--splits", "test",
        *DATAFLOW, f"--setup_file={os.path.join(REPO, 'setup.py')}"], generate.GenerateConfig, beam=True)
    formats, splits, manifest_base = generate.prepare(config)
    p = beam.Pipeline(options=PipelineOptions(list(config.beam_args)))
    generate.build(p, config, config.output, formats, splits, manifest_base)
    assert submits_only(p.options)
    result = p.run()  # DataflowRunner with --dry_run: translates and builds the job, submits nothing
    job = result.job
    proto = job.proto_pipeline
    names = {t.unique_name for t in proto.components.transforms.values()}
    for step in ("Generate/ReadCoco", "Generate/GroupByShard", "Generate/WriteShards", "Generate/Finalize"):
        assert step in names
    assert _unpickle_all(proto) >= 4
    (env,) = proto.components.environments.values()
    assert env.urn == common_urns.environments.DOCKER.urn
    assert beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image == IMAGE
    staged = {beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
              for d in env.dependencies}
    assert "workflow.tar.gz" in staged  # --setup_file built an sdist of this package for the workers
    json.loads(job.json())  # the Dataflow job request serialises


def test_clis_only_submit_on_dataflow(root, tmp_path, capsys):
    """With DataflowRunner (dry run here, a Flex Template launch in production) the commands return
    after submission instead of waiting and reading the outputs back."""
    out = tmp_path / "never-written"
    assert generate.run(["--input", str(root), "--output", str(out), "--splits", "test", *DATAFLOW]) == 0
    assert "submitted" in capsys.readouterr().out and not out.exists()
    base = tmp_path / "base"
    assert regenerate.run(["--input", str(root), "--output-base", str(base), "--splits", "test", *DATAFLOW]) == 0
    assert "submitted" in capsys.readouterr().out
    assert regenerate.read_latest(str(base)) is None and not glob.glob(str(base / "v-*"))


def test_regenerate_graph_has_publish_step(root, tmp_path):
    config = flags.parse_config(regenerate.build_parser(), ["--input", str(root), "--output-base",
                                "gs://sarchat-ci-bucket/versions", "--splits", "test", *DATAFLOW],
                                generate.GenerateConfig, beam=True)
    formats, splits, manifest_base = generate.prepare(config)
    p = beam.Pipeline(options=PipelineOptions(list(config.beam_args)))
    manifest, _ = generate.build(p, config, "gs://sarchat-ci-bucket/versions/.tmp-x", formats, splits, manifest_base)
    _ = manifest | "Publish" >> beam.ParDo(PublishFn("gs://sarchat-ci-bucket/versions",
                                                     "gs://sarchat-ci-bucket/versions/.tmp-x",
                                                     "v-x", manifest_base["config_hash"]))
    proto = p.run().job.proto_pipeline
    assert "Publish" in {t.unique_name for t in proto.components.transforms.values()}
    assert _unpickle_all(proto) >= 5


def test_inference_graph_builds_for_dataflow(tmp_path):
    from sarchat.inference import beam_handler as bh
    from sarchat.inference.config import InferenceConfig
    from tests.fixture_dataset import write_fixture_dataset

    generated, image_root, _ = write_fixture_dataset(str(tmp_path), n_images=1, seed=1)
    config = InferenceConfig(dataset=generated, output="gs://sarchat-ci-bucket/preds", model="Qwen/Qwen2-VL-7B-Instruct")
    handler = bh.SarchatVLMModelHandler(config, "gs://sarchat-ci-bucket/images")
    manifest = bh.beam_run_manifest(config, "v-test")
    p = beam.Pipeline(options=PipelineOptions(DATAFLOW + ["--machine_type=g2-standard-8",
        "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]))
    bh.build(p, config, handler, manifest)
    proto = p.run().job.proto_pipeline
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert any(n.startswith("Infer/RunInference") for n in names)
    assert _unpickle_all(proto) >= 3


def test_template_location_means_submit_only():
    opts = PipelineOptions(["--runner=DataflowRunner",
                            "--template_location=gs://b/staging/template_launches/123/job_object"])
    assert submits_only(opts)
    assert not submits_only(PipelineOptions([]))
    assert submits_only(PipelineOptions(["--no_wait_until_finish"]))


# ---- Flex Template metadata ---------------------------------------------------------------------

EXAMPLES = {  # a valid value per parameter, checked against the metadata's regexes
    "input": "gs://bucket/sardet100k", "output": "gs://bucket/out", "output_base": "gs://bucket/versions",
    "dataset": "gs://bucket/out/v-0123", "predictions": "gs://bucket/runs/qwen/predictions.parquet",
    "splits": "train,test", "formats": "parquet,swift", "seed": "3", "identify_variants": "7",
    "images_per_shard": "4000", "annotations": "test=gs://bucket/ann/test.json",
    "image_dir": "test=JPEGImages/test", "image_root": "/mnt/sardet", "category_map": "vessel=ship,plane=aircraft", "plots": "svg",
    "adapter": "qwen2-vl", "split": "test", "bootstrap": "0", "box_source": "gt", "exact_cap": "500",
    "num_buckets": "16",
}


def _templates():
    paths = sorted(glob.glob(os.path.join(TEMPLATES, "*.json")))
    assert {os.path.basename(p) for p in paths} >= {"generate.json", "stats.json", "score.json", "regenerate.json"}
    return paths


@pytest.mark.parametrize("path", _templates(), ids=os.path.basename)
def test_flex_template_metadata_matches_the_pipeline(path):
    from google.cloud.dataflow_v1beta3.types import TemplateMetadata

    text = open(path).read()
    TemplateMetadata.from_json(text)  # strict: an unknown or misspelt field is an error
    meta = json.loads(text)
    module = importlib.import_module("beam_pipelines." + os.path.basename(path)[:-len(".json")])
    parser = module.build_parser()
    by_option = {opt: action for action in parser._actions for opt in action.option_strings}
    required = {a.dest for a in parser._actions if a.required}
    seen = set()
    for param in meta["parameters"]:
        name = param["name"]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{name}: Flex Template parameter names use underscores"
        action = by_option.get(f"--{name}")
        assert action is not None, f"{path}: --{name} is not an option of {module.__name__}"
        assert action.nargs != 0, f"{name}: flags without a value cannot be template parameters"
        seen.add(action.dest)
        assert bool(param.get("isOptional", False)) == (not action.required), name
        assert param["label"] and param["helpText"]
        regexes = [re.compile(r) for r in param.get("regexes", [])]
        assert regexes, f"{name}: give a regex"
        values = [EXAMPLES[name]]
        if "defaultValue" in param:
            assert param["defaultValue"] == str(action.default), f"{name}: default differs from the parser's"
            values.append(param["defaultValue"])
        if action.choices:
            assert [o["value"] for o in param.get("enumOptions", [])] == list(action.choices)
        for value in values:
            assert all(r.fullmatch(value) for r in regexes), (name, value)
            parsed = parser.parse_args(_required_argv(meta, name) + [f"--{name}={value}"])
            assert parsed is not None
        assert not any(r.fullmatch("bad\nvalue") for r in regexes)
    assert required <= seen, f"{path}: required flags {required - seen} are not template parameters"


def _required_argv(meta, skip):
    return [f"--{p['name']}={EXAMPLES[p['name']]}" for p in meta["parameters"]
            if not p.get("isOptional") and p["name"] != skip]


def test_every_submit_only_spelling_is_recognised():
    # one submits_only (beam_options) serves generate, stats, regenerate and the RunInference handler
    assert not submits_only(PipelineOptions([]))
    for argv in (["--no_wait_until_finish"], ["--dry_run=True"], ["--template_location=gs://b/t/job_object"]):
        assert submits_only(PipelineOptions(argv)), argv
