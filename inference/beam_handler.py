"""The vLLM inference stage as a Beam `RunInference` step, for Dataflow GPU workers.

    python -m sarchat.inference.beam_handler --dataset GENERATED_OUT --split test --output OUT \
        --model Qwen/Qwen2-VL-7B-Instruct [--adapter qwen2-vl] [sampling / vllm flags] [Beam flags]

Same prompts, adapters and prediction rows as `sarchat infer --backend vllm` (inference/run.py):
the model handler drives `sarchat.inference.backends.vllm_backend.VllmBackend` (the adapter's chat
messages with the image as a base64 `image_url` part, batch bisection on engine errors, a
failed image or prompt becomes that sample's `error`), so a prediction written here and one
written by `sarchat infer` for the same run key are the same. Beam's own
`apache_beam.ml.inference.vllm_inference` handlers send text only and start an OpenAI server
per worker; this one calls `vllm.LLM.chat` in process with the image.

Differences from `sarchat infer`: images are read through Beam's FileSystems (gs:// on Dataflow
workers); there is no append-only store (a failed bundle is retried by the runner, a failed job is
rerun whole); the output is OUT/predictions/part-*.parquet (PREDICTION_SCHEMA) and OUT/manifest.json
(model, adapter, box format, sampling, run key, versions), written after the predictions.

On Dataflow: one GPU per worker VM, `large_model` (default) shares one engine per VM across the SDK
processes (Beam's multi_process_shared); see docs/dataflow.md for the GPU image and flags.
The engine is injectable (`engine_factory`, `--engine-factory module:callable`), which is how the
tests run this without vLLM.
"""
import argparse
import datetime as _dt
import importlib
import json
import platform
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from sarchat.transforms.adapters import ADAPTERS, get_adapter, guess_adapter
from sarchat.inference.backends.base import Result, Sample
from sarchat.inference.backends.vllm_backend import VllmBackend
from sarchat.inference.dataset import (BASE_COLUMNS, ImageError, image_data_url, image_location, parse_tasks,
                               resolve_image_root)
from sarchat.inference.fingerprint import run_key as make_run_key
from sarchat.inference.fingerprint import stable_hash
from sarchat.transforms.schema import PREDICTION_SCHEMA

METRICS_NAMESPACE = "sarchat.inference"


@dataclass
class BeamInferenceConfig:
    """The settings VllmBackend reads (the same names as `sarchat infer`'s flags)."""

    model: str
    model_name: Optional[str] = None
    adapter: Optional[str] = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0
    revision: Optional[str] = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: Optional[float] = None
    max_model_len: Optional[int] = None
    trust_remote_code: bool = False
    engine_arg: list = field(default_factory=list)
    chat_template: Optional[str] = None
    io_workers: int = 8
    no_format_hint: bool = False

    @property
    def display_name(self) -> str:
        return self.model_name or self.model


def resolve_adapter(config: BeamInferenceConfig):
    return get_adapter(config.adapter or guess_adapter(config.model or ""))


def read_image_bytes(location: str) -> bytes:
    """An image's bytes through Beam's FileSystems (local, gs://, ...); ImageError when unreadable."""
    try:
        with FileSystems.open(location) as fh:
            return fh.read()
    except Exception as exc:  # FileSystems raises BeamIOError / IOError / FileNotFoundError
        if not FileSystems.exists(location):
            raise ImageError(f"missing image: {location}") from exc
        raise ImageError(f"cannot read image {location}: {exc}") from exc


class FileSystemsVllmBackend(VllmBackend):
    """VllmBackend reading images through FileSystems (the rest, prompts included, is inherited)."""

    def _conversation(self, sample):
        data = read_image_bytes(sample.image_location)
        url = image_data_url(data, sample.image_location, self.adapter.pad_to_multiple)
        return self.adapter.build_messages(sample.row, url, use_hint=self.use_hint)


def prediction_row(sample_id: str, result: Result, model_name: str) -> dict:
    """One row of PREDICTION_SCHEMA, as inference/store.py's merge writes it."""
    ok = result.error is None
    return {
        "id": sample_id,
        "prediction": result.prediction if ok else (result.prediction or ""),
        "model": model_name,
        "error": None if ok else str(result.error),
        "latency_s": None if result.latency_s is None else round(float(result.latency_s), 6),
    }


def _load_callable(spec: str) -> Callable:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"expected package.module:callable, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


class SarchatVLMModelHandler(ModelHandler[dict, PredictionResult, VllmBackend]):
    """RunInference handler: dialogue rows (dicts with BASE_COLUMNS) -> PredictionResult whose
    `inference` is a PREDICTION_SCHEMA row; `example` is the input row.

    load_model() builds the vllm backend (vllm.LLM unless `engine_factory` gives an engine with
    LLM.chat's interface) once per process, or once per VM with large_model=True / model_copies.
    """

    def __init__(self, config: BeamInferenceConfig, image_root: str, *,
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
        self.adapter_name = resolve_adapter(config).name
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
        backend = FileSystemsVllmBackend(self.config, get_adapter(self.adapter_name), engine=engine,
                                         sampling_params_cls=sp_cls)
        backend.setup()
        return backend

    def run_inference(self, batch: Sequence[dict], model: VllmBackend,
                      inference_args: Optional[dict] = None) -> Iterable[PredictionResult]:
        samples = [Sample(row, image_location(self.image_root, row["image_path"])) for row in batch]
        name = self.config.display_name
        try:
            results = list(model.predict(model.prepare(samples)))
            if len(results) != len(samples):
                raise RuntimeError(f"backend returned {len(results)} results for {len(samples)} samples")
        except Exception as exc:  # the whole batch failed: record it per sample, as `sarchat infer` does
            results = [Result.failure(f"batch failed: {type(exc).__name__}: {exc}")] * len(samples)
        for row, res in zip(batch, results):
            if not isinstance(res, Result):
                res = Result.failure(f"bad result {res!r}")
            yield PredictionResult(example=row, inference=prediction_row(row["id"], res, name), model_id=name)

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(str(r.get("question", ""))) + len(str(r.get("image_path", ""))) for r in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def validate_inference_args(self, inference_args: Optional[dict]):
        if inference_args:
            raise ValueError("SarchatVLMModelHandler takes no inference_args; sampling is part of the "
                             f"config (the run key), got {sorted(inference_args)}")


def run_manifest(config: BeamInferenceConfig, dataset: str, split: str, tasks=None) -> dict:
    """What the run's manifest.json records: the same keys as `sarchat infer`'s base manifest."""
    from sarchat.inference.run import package_version

    adapter = resolve_adapter(config)
    backend = VllmBackend(config, adapter)  # identity only: no engine is built
    try:
        fingerprint, sampling = backend.fingerprint(), backend.sampling()
    finally:
        backend.close()
    versions = {"python": platform.python_version(), "sarchat-bench": package_version("sarchat-bench"),
                "apache-beam": beam.__version__, "vllm": package_version("vllm"),
                "torch": package_version("torch"), "transformers": package_version("transformers"),
                "pyarrow": package_version("pyarrow"), "pillow": package_version("pillow")}
    return {
        "tool": "sarchat.inference.beam_handler (RunInference)",
        "model": config.display_name,
        "model_path": config.model,
        "model_fingerprint": fingerprint,
        "adapter": adapter.name,
        "box_format": adapter.box_format.spec,
        "prompt_spec": adapter.spec,
        "backend": VllmBackend.name,
        "sampling": sampling,
        "sampling_hash": stable_hash(sampling),
        "run_key": make_run_key(VllmBackend.name, fingerprint, adapter.spec, sampling),
        "dataset": dataset,
        "split": split,
        "tasks": tasks,
        "versions": versions,
    }


def dialogue_files(dataset: str, split: str):
    pattern = FileSystems.join(dataset, "parquet", split, "dialogues-*.parquet")
    files = sorted(m.path for mr in FileSystems.match([pattern]) for m in mr.metadata_list)
    if not files:
        raise FileNotFoundError(f"no dialogue shards match {pattern}")
    return files


def _selected(row, wanted) -> bool:
    return wanted is None or (row["task"], None) in wanted or (row["task"], row.get("subset")) in wanted


class _WriteManifestFn(beam.DoFn):
    def __init__(self, output, manifest):
        self.output, self.manifest = output, manifest

    def process(self, stats):
        manifest = dict(self.manifest)
        manifest["predictions"] = {"parquet_glob": "predictions/part-*.parquet", "rows": stats["rows"],
                                   "errors": stats["errors"], "files": sorted(stats["files"])}
        manifest["finished_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with FileSystems.create(FileSystems.join(self.output, "manifest.json")) as fh:
            fh.write((json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
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


def build(p, dataset, split, output, handler, manifest, tasks=None):
    """Read the split's dialogues, infer, write OUT/predictions/part-*.parquet then OUT/manifest.json."""
    wanted = parse_tasks(tasks)
    columns = list(BASE_COLUMNS)
    rows = (p
            | "DialogueFiles" >> beam.Create(dialogue_files(dataset, split))
            | "ReadDialogues" >> beam.io.ReadAllFromParquet(columns=columns)
            | "SelectTasks" >> beam.Filter(_selected, wanted))
    predictions = rows | "Infer" >> InferDialogues(handler)
    written = predictions | "WritePredictions" >> beam.io.WriteToParquet(
        FileSystems.join(output, "predictions", "part"), PREDICTION_SCHEMA, file_name_suffix=".parquet")
    total = predictions | "CountAll" >> beam.combiners.Count.Globally()
    errors = (predictions
              | "Failed" >> beam.Filter(lambda r: r["error"] is not None)
              | "CountFailed" >> beam.combiners.Count.Globally())
    stats = (written
             | "Files" >> beam.combiners.ToList()
             | "Stats" >> beam.Map(lambda files, n, e: {"files": [FileSystems.split(f)[1] for f in files],
                                                         "rows": n, "errors": e},
                                   n=beam.pvalue.AsSingleton(total), e=beam.pvalue.AsSingleton(errors)))
    return predictions, stats | "WriteManifest" >> beam.ParDo(_WriteManifestFn(output, manifest))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m sarchat.inference.beam_handler", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="output folder of `sarchat generate` (local or gs://)")
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True, help="folder for predictions/part-*.parquet and manifest.json")
    p.add_argument("--model", required=True, help="checkpoint path or hub id, as for vllm.LLM(model=...)")
    p.add_argument("--model-name", "--model_name", default=None, help="name written in the model column")
    p.add_argument("--adapter", default=None, help=f"{', '.join(ADAPTERS)} or NAME:BOXFORMAT; default: guessed")
    p.add_argument("--tasks", nargs="*", default=None, help="tasks to run (TASK or TASK_single / TASK_multi)")
    p.add_argument("--image-root", "--image_root", default=None,
                   help="dataset root for image_path (default: manifest input_root)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", "--top_p", type=float, default=1.0)
    p.add_argument("--max-tokens", "--max_tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-format-hint", "--no_format_hint", action="store_true")
    p.add_argument("--revision", default=None)
    p.add_argument("--tensor-parallel-size", "--tensor_parallel_size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", "--gpu_memory_utilization", type=float, default=None)
    p.add_argument("--max-model-len", "--max_model_len", type=int, default=None)
    p.add_argument("--trust-remote-code", "--trust_remote_code", action="store_true")
    p.add_argument("--engine-arg", "--engine_arg", action="append", default=[], metavar="KEY=JSON")
    p.add_argument("--chat-template", "--chat_template", default=None, help="jinja chat template file")
    p.add_argument("--io-workers", "--io_workers", type=int, default=8, help="threads reading images per engine")
    p.add_argument("--min-batch-size", "--min_batch_size", type=int, default=1)
    p.add_argument("--max-batch-size", "--max_batch_size", type=int, default=64,
                   help="dialogues per RunInference batch (one llm.chat call)")
    p.add_argument("--no-share-model", "--no_share_model", action="store_true",
                   help="load one engine per SDK process instead of one per VM (large_model=False)")
    p.add_argument("--model-copies", "--model_copies", type=int, default=None,
                   help="engines per VM (e.g. one per GPU with --tensor-parallel-size 1)")
    p.add_argument("--engine-factory", "--engine_factory", default=None, metavar="MODULE:CALLABLE",
                   help="build the engine with this callable instead of vllm.LLM (tests, custom engines)")
    return p


def config_from_args(args) -> BeamInferenceConfig:
    return BeamInferenceConfig(
        model=args.model, model_name=args.model_name, adapter=args.adapter, temperature=args.temperature,
        top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed, revision=args.revision,
        tensor_parallel_size=args.tensor_parallel_size, gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=args.max_model_len, trust_remote_code=args.trust_remote_code,
        engine_arg=list(args.engine_arg), chat_template=args.chat_template, io_workers=args.io_workers,
        no_format_hint=args.no_format_hint)


def run(argv=None, test=None):
    """Entry point; `test(predictions_pcoll, manifest_pcoll)` may add assertions inside the pipeline."""
    from sarchat.beam_pipelines.beam_options import launch, make_pipeline

    args, beam_argv = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config = config_from_args(args)
        factory = _load_callable(args.engine_factory) if args.engine_factory else None
        handler = SarchatVLMModelHandler(
            config, resolve_image_root(args.dataset, args.image_root), engine_factory=factory,
            min_batch_size=args.min_batch_size, max_batch_size=args.max_batch_size,
            large_model=not args.no_share_model, model_copies=args.model_copies)
        manifest = run_manifest(config, args.dataset, args.split, args.tasks)
        p = make_pipeline(beam_argv)
        predictions, written = build(p, args.dataset, args.split, args.output, handler, manifest, args.tasks)
    except (ValueError, FileNotFoundError, ImportError, AttributeError) as exc:
        print(f"sarchat.inference.beam_handler: error: {exc}", file=sys.stderr)
        return 2
    if test is not None:
        test(predictions, written)
    _, finished = launch(p)
    where = FileSystems.join(args.output, "manifest.json")
    print(f"sarchat.inference.beam_handler: {'wrote' if finished else 'submitted; the job writes'} "
          f"{FileSystems.join(args.output, 'predictions', 'part-*.parquet')} and {where} "
          f"(run key {manifest['run_key']})")
    return 0


if __name__ == "__main__":
    sys.exit(run())
