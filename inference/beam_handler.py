"""The vLLM inference stage as a Beam `RunInference` step, for Dataflow GPU workers.

The entry point is `sarchat infer-beam` (beam_pipelines/infer_beam.py); this module holds the
model handler and the pipeline graph.

Same prompts, adapters, run key and prediction rows as `sarchat infer --backend vllm`
(inference/run.py): the model handler drives `sarchat.inference.backends.vllm_backend.VllmBackend`
with the run's InferenceConfig (the adapter's chat messages with the image as a base64 `image_url`
part, batch bisection on engine errors, a failed, mis-sized or oversized image or a failed prompt
becomes that sample's `error`), so a prediction written here and one written by `sarchat infer` for
the same run key are the same. Beam's own `apache_beam.ml.inference.vllm_inference` handlers send
text only and start an OpenAI server per worker; this one calls `vllm.LLM.chat` in process with the
image.

Differences from `sarchat infer`: images are read through Beam's FileSystems (gs:// on Dataflow
workers); there is no append-only store (a failed bundle is retried by the runner, a failed job is
rerun whole); the output is OUT/predictions/part-*.parquet (PREDICTION_SCHEMA, the dataset version
in each file's metadata) and OUT/manifest.json (inference/manifest.py's run manifest), written after
the predictions. The dialogue files are those the dataset's manifest.json lists (sizes checked).

On Dataflow: one GPU per worker VM, `large_model` (default) shares one engine per VM across the SDK
processes (Beam's multi_process_shared); see docs/dataflow.md for the GPU image and flags.
The engine is injectable (`engine_factory`, `--engine-factory module:callable`), which is how the
tests run this without vLLM.
"""
import datetime as _dt
import json
from typing import Any, Callable, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from sarchat.inference.backends.base import Sample, predict_batch
from sarchat.inference.backends.vllm_backend import VllmBackend
from sarchat.inference.config import InferenceConfig, parse_tasks
from sarchat.inference.dataset import (BASE_COLUMNS, MISSING_IMAGE_HINT, ImageError, image_location, selected,
                                       split_files)
from sarchat.inference.manifest import model_column, resolve_adapter, run_identity, run_manifest
from sarchat.inference.store import prediction_row, prediction_schema
from sarchat.transforms import fileio, progress

METRICS_NAMESPACE = "sarchat.inference"
TOOL = "sarchat infer-beam (RunInference)"


def read_image_bytes(location: str) -> bytes:
    """An image's bytes through Beam's FileSystems (local, gs://, ...); ImageError when unreadable."""
    try:
        with fileio.open_read(location) as fh:
            return fh.read()
    except Exception as exc:  # FileSystems raises BeamIOError / IOError / FileNotFoundError
        if not fileio.exists(location):
            raise ImageError(f"missing image: {location} ({MISSING_IMAGE_HINT})") from exc
        raise ImageError(f"cannot read image {location}: {exc}") from exc


class SarchatVLMModelHandler(ModelHandler[dict, PredictionResult, VllmBackend]):
    """RunInference handler: dialogue rows (dicts with BASE_COLUMNS) -> PredictionResult whose
    `inference` is a PREDICTION_SCHEMA row; `example` is the input row.

    load_model() builds the vllm backend (vllm.LLM unless `engine_factory` gives an engine with
    LLM.chat's interface) once per process, or once per VM with large_model=True / model_copies.
    """

    def __init__(self, config: InferenceConfig, image_root: str, *,
                 engine_factory: Optional[Callable[[], Any]] = None,
                 sampling_params_cls: Optional[Callable[..., Any]] = None,
                 min_batch_size: int = 1, max_batch_size: int = 64,
                 max_batch_duration_secs: Optional[int] = None,
                 large_model: bool = True, model_copies: Optional[int] = None,
                 env_vars: Optional[dict] = None):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size,
                         max_batch_duration_secs=max_batch_duration_secs, large_model=large_model,
                         model_copies=model_copies, env_vars=env_vars or {})
        self.config = config
        self.image_root = image_root
        # the Adapter itself travels to the workers (pickled): a user adapter file (--adapter PATH.json)
        # need not exist there
        self.adapter = resolve_adapter(config, VllmBackend)
        self.model_name = model_column(config, VllmBackend)
        self.engine_factory = engine_factory
        self.sampling_params_cls = sampling_params_cls

    def load_model(self) -> VllmBackend:
        self.set_environment_vars()
        engine, sp_cls = None, self.sampling_params_cls
        if self.engine_factory is not None:
            engine = self.engine_factory()
            if sp_cls is None:
                try:
                    from vllm import SamplingParams as sp_cls
                except ImportError:  # an injected engine without vLLM installed gets a plain dict
                    sp_cls = dict
        backend = VllmBackend(self.config, self.adapter, engine=engine,
                              sampling_params_cls=sp_cls, read_image=read_image_bytes)
        backend.setup()
        return backend

    def run_inference(self, batch: Sequence[dict], model: VllmBackend,
                      inference_args: Optional[dict] = None) -> Iterable[PredictionResult]:
        samples = [Sample(row, image_location(self.image_root, row["image_path"])) for row in batch]
        try:
            prepared = model.prepare(samples)
        except Exception as exc:
            prepared = exc
        results = list(predict_batch(model, samples, prepared))
        progress.worker_count("infer.samples", len(results))  # progress on the launcher's terminal
        for row, res in zip(batch, results):
            inference = prediction_row(row["id"], res.prediction, self.model_name, res.error, res.latency_s)
            yield PredictionResult(example=row, inference=inference, model_id=self.model_name)

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(str(r.get("question", ""))) + len(str(r.get("image_path", ""))) for r in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def validate_inference_args(self, inference_args: Optional[dict]):
        if inference_args:
            raise ValueError("SarchatVLMModelHandler takes no inference_args; sampling is part of the "
                             f"config (the run key), got {sorted(inference_args)}")


def beam_run_manifest(config: InferenceConfig, dataset_version: str) -> dict:
    """The run manifest (inference/manifest.py) of a RunInference run: the same identity and run key
    as `sarchat infer --backend vllm` with the same flags."""
    backend = VllmBackend(config, resolve_adapter(config, VllmBackend))  # identity only: no engine is built
    try:
        return run_manifest(config, run_identity(backend, dataset_version), backend, TOOL,
                            extra_versions={"apache-beam": beam.__version__})
    finally:
        backend.close()


class _WriteManifestFn(beam.DoFn):
    def __init__(self, output, manifest):
        self.output, self.manifest = output, manifest

    def process(self, stats):
        manifest = dict(self.manifest)
        manifest["predictions"] = {"parquet_glob": "predictions/part-*.parquet", "rows": stats["rows"],
                                   "errors": stats["errors"], "files": sorted(stats["files"])}
        manifest["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        fileio.write_bytes(fileio.join_path(self.output, "manifest.json"),
                           (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        yield manifest


class InferDialogues(beam.PTransform):
    """Dialogue rows -> RunInference(SarchatVLMModelHandler) -> PREDICTION_SCHEMA rows."""

    def __init__(self, handler: SarchatVLMModelHandler):
        super().__init__()
        self.handler = handler

    def expand(self, rows):
        return (rows
                | "RunInference" >> RunInference(self.handler)
                | "PredictionRows" >> beam.Map(lambda r: r.inference))


def build(p, config: InferenceConfig, handler, manifest, dataset_manifest=None):
    """Read the split's dialogues (the files the dataset's manifest lists), infer, write
    OUT/predictions/part-*.parquet then OUT/manifest.json."""
    wanted = parse_tasks(config.tasks)
    files = split_files(config.dataset, config.split, dataset_manifest)
    rows = (p
            | "DialogueFiles" >> beam.Create(files)
            | "ReadDialogues" >> beam.io.ReadAllFromParquet(columns=list(BASE_COLUMNS))
            | "SelectTasks" >> beam.Filter(selected, wanted))
    predictions = rows | "Infer" >> InferDialogues(handler)
    written = predictions | "WritePredictions" >> beam.io.WriteToParquet(
        fileio.join_path(config.output, "predictions", "part"), prediction_schema(manifest["dataset_version"]),
        file_name_suffix=".parquet")
    total = predictions | "CountAll" >> beam.combiners.Count.Globally()
    errors = (predictions
              | "Failed" >> beam.Filter(lambda r: r["error"] is not None)
              | "CountFailed" >> beam.combiners.Count.Globally())
    stats = (written
             | "Files" >> beam.combiners.ToList()
             | "Stats" >> beam.Map(lambda files, n, e: {"files": [fileio.basename(f) for f in files],
                                                         "rows": n, "errors": e},
                                   n=beam.pvalue.AsSingleton(total), e=beam.pvalue.AsSingleton(errors)))
    return predictions, stats | "WriteManifest" >> beam.ParDo(_WriteManifestFn(config.output, manifest))
