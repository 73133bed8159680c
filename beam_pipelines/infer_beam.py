"""`sarchat infer-beam`: the vLLM inference stage as a Beam RunInference pipeline (Dataflow GPU workers).

    sarchat infer-beam --dataset GENERATED_OUT --split test --output OUT \
        --model Qwen/Qwen2-VL-7B-Instruct [--adapter qwen2-vl] [sampling / vllm flags] [Beam flags]

The flags shared with `sarchat infer` come from inference/config.py (one declaration, one
InferenceConfig; each is also accepted with underscores, e.g. --max_tokens, like Beam's own); the
ones below are RunInference's batching and engine sharing. Everything else goes to Beam's
PipelineOptions. The handler and the pipeline graph live in inference/beam_handler.py.
"""
import importlib
import sys

from sarchat.beam_pipelines import flags
from sarchat.beam_pipelines.beam_options import launch, make_pipeline
from sarchat.inference import beam_handler
from sarchat.inference.config import (InferenceConfig, OneLineParser, add_dataset_flags, add_model_flags,
                                      add_sampling_flags, add_vllm_flags, non_negative_int, positive_int)
from sarchat.inference.dataset import dataset_version, read_manifest, resolve_image_root
from sarchat.transforms import fileio, ownership
from sarchat.transforms.errors import UsageError

COMMAND = "infer-beam"


def build_parser():
    p = OneLineParser(prog="sarchat infer-beam", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    add_dataset_flags(p, underscore_aliases=True,
                      output_help="folder for predictions/part-*.parquet and manifest.json (local or gs://)")
    add_model_flags(p, underscore_aliases=True, model_required=True)
    add_sampling_flags(p, underscore_aliases=True)
    add_vllm_flags(p, underscore_aliases=True)
    g = p.add_argument_group("RunInference")
    g.add_argument("--min-batch-size", "--min_batch_size", type=positive_int, default=1,
                   help="fewest dialogues per RunInference batch (default %(default)s)")
    g.add_argument("--max-batch-size", "--max_batch_size", type=positive_int, default=64,
                   help="most dialogues per RunInference batch, one llm.chat call (default %(default)s)")
    g.add_argument("--no-share-model", "--no_share_model", action="store_true",
                   help="load one engine per SDK process instead of one per VM (large_model=False)")
    g.add_argument("--model-copies", "--model_copies", type=non_negative_int, default=None,
                   help="engines per VM (e.g. one per GPU with --tensor-parallel-size 1)")
    g.add_argument("--engine-factory", "--engine_factory", default=None, metavar="MODULE:CALLABLE",
                   help="build the engine with this callable instead of vllm.LLM (tests, custom engines)")
    return flags.add_progress_flag(p)


def load_callable(spec: str):
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise UsageError(f"--engine-factory {spec!r}: expected package.module:callable")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--engine-factory {spec}: {type(exc).__name__}: {exc}") from None


def run(argv=None, test=None):
    """Entry point; `test(predictions_pcoll, manifest_pcoll)` may add assertions inside the pipeline."""
    args, beam_argv = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    args.backend = "vllm"
    flags.apply_progress_flag(args)
    config = InferenceConfig.from_args(args)
    factory = load_callable(args.engine_factory) if args.engine_factory else None
    reading = ownership.reading(config.dataset)  # one dataset version, checked again at the end
    dataset_manifest = read_manifest(config.dataset)
    handler = beam_handler.SarchatVLMModelHandler(
        config, resolve_image_root(config.dataset, config.image_root, dataset_manifest), engine_factory=factory,
        min_batch_size=args.min_batch_size, max_batch_size=args.max_batch_size,
        large_model=not args.no_share_model, model_copies=args.model_copies)
    manifest = beam_handler.beam_run_manifest(config, dataset_version(config.dataset, dataset_manifest))
    p = make_pipeline(beam_argv)
    predictions, written = beam_handler.build(p, config, handler, manifest, dataset_manifest)
    if test is not None:
        test(predictions, written)
    # one writer per output folder, which holds nothing but this command's own earlier output
    # (the marker's list, removed first: nothing stale); an object store has no lock (docs/cli.md)
    with ownership.claim(config.output, COMMAND, keep_on_failure=False) as claim:
        claim.remove_previous()
        _, finished = launch(p, ("sarchat infer-beam: answering", "infer.samples", None, "samples"))
        if finished:
            reading.verify()
    where = fileio.join_path(config.output, "manifest.json")
    print(f"sarchat infer-beam: {'wrote' if finished else 'submitted; the job writes'} "
          f"{fileio.join_path(config.output, 'predictions', 'part-*.parquet')} and {where} "
          f"(run key {manifest['run_key']})")
    return 0


if __name__ == "__main__":
    sys.exit(run())
