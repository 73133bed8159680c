"""`sarchat export lmms-eval`: write a SARChat-Bench task folder for lmms-eval.

    sarchat export lmms-eval --dataset GENERATED_OUT --output DIR [--adapter NAME] [--split test]
                             [--image-root ROOT] [--no-format-hint] [--max-tokens 512] [--no-progress]
    lmms-eval --model vllm --model_args model=CKPT --include_path DIR --tasks sarchat_bench --log_samples --output_path LOGS
    sarchat score --dataset GENERATED_OUT --predictions LOGS/<model>/*_samples_sarchat_*.jsonl --output SCORES

DIR holds one lmms-eval task per Table 3 task/subset (sarchat_classify, sarchat_count,
sarchat_grounding_single, ...), the group sarchat_bench over them, and a utils.py whose
process_results and aggregations call this toolkit's parsers and metrics, so lmms-eval reports the
numbers `sarchat score` gives on the same responses. The data is the dataset's local Parquet split
(the files its manifest.json lists, absolute paths); images are read from --image-root (default:
the manifest's input_root). --adapter is the model family the tasks prompt (its box format in the
questions, its box-format sentence) and read the answers of; one folder per family. lmms-eval
must be able to import `sarchat` (install the toolkit there or put it on PYTHONPATH).
docs/scoring.md, "lmms-eval", says what differs from `sarchat infer` + `sarchat score`.

    sarchat export vlmevalkit --dataset GENERATED_OUT --output DIR [--name SARChatBench] [--adapter NAME]
                              [--split test] [--image-root ROOT] [--no-format-hint]
    ln -s DIR/SARChatBench.tsv ~/LMUData/ && PRED_FORMAT=tsv python run.py --data SARChatBench --model M --mode infer
    sarchat score --dataset GENERATED_OUT --predictions outputs/M/*/M_SARChatBench.tsv --adapter NAME --output SCORES

DIR/<NAME>.tsv is the test split as a VLMEvalKit custom image-VQA dataset (index = our sample id,
base64 images, the adapter's questions; sarchat.transforms.score.vlmeval_export), DIR/README.md
says how to register and run it; docs/scoring.md, "VLMEvalKit".
"""
import argparse
import dataclasses
import sys
from typing import Optional

from sarchat.beam_pipelines import flags
from sarchat.transforms.errors import SarchatError, UsageError

FORMATS = ("lmms-eval", "vlmevalkit")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The settings of `sarchat export FORMAT`, one field per flag (--name: vlmevalkit only,
    --max-tokens: lmms-eval only)."""
    dataset: str
    output: str
    format: str = "lmms-eval"
    name: str = "SARChatBench"
    adapter: str = "sarchat"
    split: str = "test"
    image_root: Optional[str] = None
    no_format_hint: bool = False
    max_tokens: int = 512
    no_progress: bool = False


_D = flags.defaults(ExportConfig)


VLMEVALKIT_DESCRIPTION = "`sarchat export vlmevalkit`: write the test split as a VLMEvalKit custom dataset table."
USAGE = ("usage: sarchat export FORMAT [options]\n\nformats:\n"
         "  lmms-eval   a task folder for `lmms-eval --include_path DIR --tasks sarchat_bench`\n"
         "  vlmevalkit  a custom dataset table for VLMEvalKit's `run.py --data SARChatBench`\n\n"
         "`sarchat export FORMAT --help` lists its options.")


def build_parser(fmt="lmms-eval"):
    description = VLMEVALKIT_DESCRIPTION if fmt == "vlmevalkit" else __doc__.split("\n\n")[0]
    p = flags.ArgumentParser(prog=f"sarchat export {fmt}", description=description,
                             epilog="The folder's files are listed in DIR/sarchat_export.json; a rerun into DIR "
                                    "replaces exactly those.")
    p.add_argument("--dataset", required=True, help="a `sarchat generate` output folder (its manifest.json lists the Parquet files)")
    p.add_argument("--output", required=True, type=flags.output_folder("--output"),
                   help="the task folder to write" if fmt == "lmms-eval" else "the folder to write the dataset table into")
    if fmt == "vlmevalkit":
        p.add_argument("--name", default=_D["name"],
                       help="the VLMEvalKit dataset name: the table's file name and run.py's --data (default %(default)s)")
    p.add_argument("--adapter", default=_D["adapter"], type=adapter_name,
                   help="model family prompted and read (sarchat.transforms.adapters, e.g. qwen2-vl, llava-1.5, "
                        "qwen2-vl:canonical; default %(default)s: canonical boxes, no hint)")
    p.add_argument("--split", default=_D["split"], help="split of the dataset to export (default %(default)s)")
    p.add_argument("--image-root", "--image_root", default=None,
                   help="folder the rows' image_path is relative to (default: the dataset manifest's input_root)")
    p.add_argument("--no-format-hint", action="store_true",
                   help="do not append the adapter's box-format sentence to box-task questions")
    if fmt == "lmms-eval":
        p.add_argument("--max-tokens", "--max_tokens", type=flags.positive_int, default=_D["max_tokens"],
                       help="most tokens generated per answer, as `sarchat infer --max-tokens`; lmms-eval's "
                            "max_new_tokens (default %(default)s)")
        p.add_renamed("--max-new-tokens", "--max-tokens")
    flags.add_progress_flag(p)  # the export is quick and shows none; accepted like every command's
    return p


def adapter_name(text):
    """--adapter: a known model family (transforms/adapters.py), checked while parsing so an unknown
    one is a usage error (exit 2) here as in `sarchat infer` and `sarchat score`."""
    from sarchat.transforms.adapters import get_adapter

    try:
        get_adapter(text)
    except (SarchatError, ValueError, KeyError) as e:
        raise argparse.ArgumentTypeError(str(e).splitlines()[0] if str(e) else f"unknown adapter {text!r}") from e
    return text


def export(config: ExportConfig) -> dict:
    """The export stage: config.format's files for config.dataset's split in config.output; returns
    them ({file name: text or writer})."""
    from sarchat.transforms import ownership
    from sarchat.transforms.fileio import check_no_overlap
    from sarchat.transforms.score import lmms_eval_export, vlmeval_export

    check_no_overlap([("the dataset (--dataset)", config.dataset),
                      ("the image root (--image-root)", config.image_root)], config.output)  # None: skipped
    reading = ownership.reading(config.dataset)  # one dataset version, checked again before writing
    hint = not config.no_format_hint
    if config.format == "vlmevalkit":
        files = vlmeval_export.plan_export(config.dataset, config.output, config.split, config.adapter,
                                           config.image_root, hint, config.name)
    else:
        files = lmms_eval_export.plan_export(config.dataset, config.split, config.adapter, config.image_root, hint,
                                             config.max_tokens)
    reading.verify()
    with ownership.claim(config.output, "export", legacy=lmms_eval_export.own_older_export) as claim:
        # a half-written export of ours too
        lmms_eval_export.write_export(config.output, files, f"sarchat export {config.format}", also_ours=claim.previous)
    return files


def run(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # like `sarchat` alone: the usage, and the exit status of a bad command line
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    fmt = argv[0]
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)} (see `sarchat export --help`)")
    config = dataclasses.replace(flags.parse_config(build_parser(fmt), argv[1:], ExportConfig), format=fmt)
    files = export(config)
    if fmt == "vlmevalkit":
        from sarchat.transforms.score import vlmeval_export as V

        print(f"sarchat export: wrote {V.tsv_name(config.name)} to {config.output} (adapter {config.adapter}); "
              f"register it as VLMEvalKit's dataset {config.name}: {config.output}/{V.README} says how")
    else:
        print(f"sarchat export: wrote {len(files)} files to {config.output}: lmms-eval --include_path {config.output} "
              f"--tasks sarchat_bench (adapter {config.adapter})")
    return 0


if __name__ == "__main__":
    sys.exit(run())
