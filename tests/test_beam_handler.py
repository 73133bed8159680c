"""The RunInference model handler (inference/beam_handler.py) and `sarchat infer-beam`
(beam_pipelines/infer_beam.py) against a fake vllm.LLM: Beam's ModelHandler contract, images in the
prompts, per-sample failures, and a pipeline whose predictions, run key and dataset version equal
those of `sarchat infer --backend vllm` with the same engine."""
import base64
import glob
import hashlib
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import PredictionResult

from sarchat.beam_pipelines import infer_beam
from sarchat.inference import beam_handler as bh
from sarchat.inference import store
from sarchat.inference.backends.vllm_backend import VllmBackend
from sarchat.inference.config import InferenceConfig
from sarchat.inference.run import execute as infer_execute
from sarchat.inference.run import parse_config
from sarchat.transforms.adapters import get_adapter
from tests import fake_vllm
from tests.fake_vllm import FakeSamplingParams
from tests.fixture_dataset import write_fixture_dataset
from sarchat.transforms.schema import PREDICTION_SCHEMA


def answer_for(conv):
    """Deterministic answer derived from the prompt text (so two runs can be compared)."""
    text = conv[-1]["content"][1]["text"]
    return f"answer:{hashlib.sha1(text.encode()).hexdigest()[:10]}<|im_end|>"


class FakeLLM(fake_vllm.FakeLLM):
    """The shared fake vllm.LLM, answering with a hash of the prompt."""

    def __init__(self, poison=None):
        super().__init__(answer=answer_for, poison=poison)


def make_fake_engine():
    """Engine factory used by the CLI test (`--engine-factory tests.test_beam_handler:make_fake_engine`)."""
    return FakeLLM()


MODEL = "Qwen/Qwen2-VL-7B-Instruct"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("beamvlm")
    generated, image_root, rows = write_fixture_dataset(str(root), n_images=3, seed=5)
    return generated, image_root, rows["test"]


def _handler(image_root, engine, **kw):
    config = InferenceConfig(model=MODEL, seed=3, max_tokens=64)
    return bh.SarchatVLMModelHandler(config, image_root, engine_factory=lambda: engine,
                                     sampling_params_cls=FakeSamplingParams, **kw)


def test_model_handler_contract():
    h = _handler("/data", FakeLLM(), max_batch_size=8, large_model=False)
    assert h.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 8}
    assert not h.share_model_across_processes()
    assert h.get_metrics_namespace() == bh.METRICS_NAMESPACE
    shared = _handler("/data", FakeLLM())
    assert shared.share_model_across_processes() and shared.model_copies() == 1  # one engine per VM
    assert _handler("/data", FakeLLM(), model_copies=2).model_copies() == 2
    with pytest.raises(ValueError, match="no inference_args"):
        h.validate_inference_args({"temperature": 1.0})
    assert h.adapter.name == "qwen2-vl"  # guessed from the model name, as `sarchat infer` does
    import pickle

    pickle.loads(pickle.dumps(_handler("/data", None, large_model=False).config))


def test_run_inference_sends_images_and_isolates_failures(dataset, tmp_path):
    generated, image_root, rows = dataset
    images = tmp_path / "images"
    shutil.copytree(image_root, images)
    paths = sorted({r["image_path"] for r in rows})
    os.remove(images / paths[0])
    poison_b64 = base64.b64encode((images / paths[1]).read_bytes()).decode()[100:160]
    engine = FakeLLM(poison=poison_b64)
    handler = _handler(str(images), engine, large_model=False)
    model = handler.load_model()
    batch = rows[:]
    results = list(handler.run_inference(batch, model))
    assert len(results) == len(batch)
    assert all(isinstance(r, PredictionResult) and r.model_id == MODEL for r in results)
    assert [r.example["id"] for r in results] == [r["id"] for r in batch]
    adapter = get_adapter("qwen2-vl")
    for res in results:
        pred, row = res.inference, res.example
        assert list(pred) == PREDICTION_SCHEMA.names
        if row["image_path"] == paths[0]:
            assert pred["error"].startswith("missing image") and pred["prediction"] == ""
        elif row["image_path"] == paths[1]:
            assert "engine rejected" in pred["error"]  # bisected down to the poisoned prompts
        else:
            assert pred["error"] is None
            assert pred["prediction"] == answer_for([{"content": [None, {"text": adapter.user_text(row)}]}])[:-10]
    sent = [conv for call in engine.calls for conv in call["messages"]]
    first = sent[0][0]["content"]
    assert first[0]["type"] == "image_url" and first[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert first[1]["type"] == "text" and "<image>" not in first[1]["text"]
    sp = engine.calls[0]["sampling_params"]
    assert (sp.temperature, sp.seed, sp.max_tokens, sp.skip_special_tokens) == (0.0, 3, 64, False)


def _read_predictions(folder):
    files = sorted(glob.glob(os.path.join(folder, "predictions", "part-*.parquet")))
    assert files
    tables = [pq.read_table(f) for f in files]
    assert all(t.schema.equals(PREDICTION_SCHEMA) for t in tables)
    return {r["id"]: r for t in tables for r in t.to_pylist()}


@pytest.mark.parametrize("mode", ["in_process", "multi_processing"])
def test_pipeline_matches_sarchat_infer(dataset, tmp_path, mode):
    generated, image_root, rows = dataset
    out = tmp_path / "beam"
    extra = ["--no-share-model"] if mode == "in_process" else [
        "--direct_running_mode=multi_processing", "--direct_num_workers=2"]  # shared engine, 2 processes
    argv = ["--dataset", generated, "--split", "test", "--output", str(out), "--model", MODEL,
            "--tasks", "count", "refer", "grounding", "--max-batch-size", "4", "--seed", "3",
            "--engine-factory", "tests.test_beam_handler:make_fake_engine", *extra]
    assert infer_beam.run(argv) == 0
    if mode == "in_process":  # a rerun into its own folder replaces its own output
        first = sorted(os.listdir(out / "predictions"))
        assert infer_beam.run(argv) == 0
        assert sorted(os.listdir(out / "predictions")) == first
    beam_preds = _read_predictions(str(out))
    version = json.loads(open(os.path.join(generated, "manifest.json")).read())["dataset_version"]
    for f in glob.glob(os.path.join(str(out), "predictions", "part-*.parquet")):
        assert pq.read_schema(f).metadata[store.DATASET_VERSION_KEY.encode()] == version.encode()
    wanted = {r["id"] for r in rows if r["task"] in ("count", "refer", "grounding")}
    assert set(beam_preds) == wanted and len(wanted) < len(rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["predictions"]["rows"] == len(wanted) and manifest["predictions"]["errors"] == 0
    assert manifest["adapter"] == "qwen2-vl" and manifest["box_format"] == "qwen2-vl"

    # `sarchat infer --backend vllm` with the same engine and settings: same run key, same rows
    ref = tmp_path / "infer"
    cfg = parse_config(["--dataset", generated, "--output", str(ref), "--backend", "vllm",
                        "--model", MODEL, "--no-progress", "--seed", "3", "--tasks", "count", "refer", "grounding"])
    backend = VllmBackend(cfg, get_adapter("qwen2-vl"), engine=FakeLLM(), sampling_params_cls=dict)
    assert infer_execute(cfg, backend=backend) == 0
    ref_manifest = json.loads((ref / "manifest.json").read_text())
    assert manifest["run_key"] == ref_manifest["run_key"]
    for key in ("sampling", "engine", "dataset_version", "model_fingerprint", "prompt_spec", "tasks"):
        assert manifest[key] == ref_manifest[key], key
    assert manifest["dataset_version"] == version
    ref_preds = {p["id"]: p for p in pq.read_table(ref / "predictions.parquet").to_pylist()}
    strip = lambda p: {k: v for k, v in p.items() if k != "latency_s"}  # noqa: E731
    assert {i: strip(p) for i, p in beam_preds.items()} == {i: strip(p) for i, p in ref_preds.items()}


def test_infer_beam_is_a_sarchat_subcommand_with_the_shared_flags(dataset, tmp_path):
    from tests import cli_process

    generated, _, _ = dataset
    (tmp_path / "empty").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo)
    cases = [
        (["--max-tokens", "0"], 2, "sarchat infer-beam: error: argument --max-tokens/--max_tokens: expected a "
                                   "positive integer, got '0'"),
        (["--tasks", "countt"], 2, "argument --tasks: unknown task 'countt'"),
        (["--output", generated], 1, f"sarchat infer-beam: error: --output {generated} is the dataset folder"),
        (["--dataset", str(tmp_path / "empty")], 1, f"sarchat infer-beam: error: {tmp_path / 'empty'} has no "
                                                    "manifest.json"),
        (["--engine-factory", "nosuchmodule:make"], 2, "--engine-factory nosuchmodule:make: ModuleNotFoundError"),
        (["--output", str(tmp_path / "mine"), "--engine-factory", "tests.test_beam_handler:make_fake_engine"], 1,
         f"sarchat infer-beam: error: {tmp_path / 'mine'} is not empty and was not written by `sarchat infer-beam`"),
    ]
    for extra, code, message in cases:
        argv = ["--dataset", generated, "--output", str(tmp_path / "out"), "--model", MODEL]
        for k in range(0, len(extra), 2):  # later flags replace earlier ones
            if extra[k] in argv:
                argv[argv.index(extra[k]) + 1] = extra[k + 1]
            else:
                argv += extra[k:k + 2]
        done = cli_process.run_sarchat(["infer-beam", *argv], cwd=repo, env=env, timeout=120)
        assert done.returncode == code, (extra, done.stderr)
        assert message in done.stderr and done.stderr.count("\n") == 1, (extra, done.stderr)
    assert not (tmp_path / "out").exists()
    assert sorted(os.listdir(tmp_path / "mine")) == ["notes.txt"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's"
