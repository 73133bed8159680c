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
import sys

from sarchat.beam_pipelines import flags
from sarchat.transforms.errors import UsageError

FORMATS = ("lmms-eval", "vlmevalkit")


def _description(fmt):
    if fmt == "vlmevalkit":
        return "`sarchat export vlmevalkit`: write the test split as a VLMEvalKit custom dataset table."
    return __doc__.split("\n\n")[0]


def build_parser(fmt="lmms-eval"):
    p = flags.ArgumentParser(prog=f"sarchat export {fmt}", description=_description(fmt),
                             epilog="The folder's files are listed in DIR/sarchat_export.json; a rerun into DIR "
                                    "replaces exactly those.")
    p.add_argument("--dataset", required=True, help="a `sarchat generate` output folder (its manifest.json lists the Parquet files)")
    p.add_argument("--output", required=True, type=flags.output_folder("--output"),
                   help="the task folder to write" if fmt == "lmms-eval" else "the folder to write the dataset table into")
    if fmt == "vlmevalkit":
        p.add_argument("--name", default="SARChatBench",
                       help="the VLMEvalKit dataset name: the table's file name and run.py's --data (default %(default)s)")
    p.add_argument("--adapter", default="sarchat", type=adapter_name,
                   help="model family prompted and read (sarchat.transforms.adapters, e.g. qwen2-vl, llava-1.5, "
                        "qwen2-vl:canonical; default %(default)s: canonical boxes, no hint)")
    p.add_argument("--split", default="test", help="split of the dataset to export (default %(default)s)")
    p.add_argument("--image-root", "--image_root", default=None,
                   help="folder the rows' image_path is relative to (default: the dataset manifest's input_root)")
    p.add_argument("--no-format-hint", action="store_true",
                   help="do not append the adapter's box-format sentence to box-task questions")
    if fmt == "lmms-eval":
        p.add_argument("--max-tokens", "--max_tokens", type=flags.positive_int, default=512,
                       help="most tokens generated per answer, as `sarchat infer --max-tokens`; lmms-eval's "
                            "max_new_tokens (default %(default)s)")
        p.add_renamed("--max-new-tokens", "--max-tokens")
    flags.add_progress_flag(p)  # the export is quick and shows none; accepted like every command's
    return p


def adapter_name(text):
    """--adapter: a known model family (transforms/adapters.py), checked while parsing so an unknown
    one is a usage error (exit 2) here as in `sarchat infer` and `sarchat score`."""
    from sarchat.transforms.adapters import get_adapter
    from sarchat.transforms.errors import SarchatError

    try:
        get_adapter(text)
    except (SarchatError, ValueError, KeyError) as e:
        raise argparse.ArgumentTypeError(str(e).splitlines()[0] if str(e) else f"unknown adapter {text!r}") from e
    return text


def usage() -> str:
    return ("usage: sarchat export FORMAT [options]\n\nformats:\n"
            "  lmms-eval   a task folder for `lmms-eval --include_path DIR --tasks sarchat_bench`\n"
            "  vlmevalkit  a custom dataset table for VLMEvalKit's `run.py --data SARChatBench`\n\n"
            "`sarchat export FORMAT --help` lists its options.")


def run(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # like `sarchat` alone: the usage, and the exit status of a bad command line
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    fmt, rest = argv[0], argv[1:]
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)} (see `sarchat export --help`)")
    args = build_parser(fmt).parse_args(rest)
    from sarchat.transforms.fileio import check_no_overlap
    from sarchat.transforms.score.lmms_eval_export import plan_export, write_export

    check_no_overlap([("the dataset (--dataset)", args.dataset)], args.output)
    if args.image_root:
        check_no_overlap([("the image root (--image-root)", args.image_root)], args.output)
    from sarchat.transforms import ownership
    from sarchat.transforms.score.lmms_eval_export import own_older_export

    reading = ownership.reading(args.dataset)  # one dataset version, checked again before writing
    if fmt == "vlmevalkit":
        return _vlmevalkit(args, reading)
    files = plan_export(args.dataset, args.split, args.adapter, args.image_root, not args.no_format_hint,
                        args.max_tokens)
    reading.verify()
    with ownership.claim(args.output, "export", legacy=own_older_export) as claim:
        write_export(args.output, files, also_ours=claim.previous)  # a half-written export of ours too
    print(f"sarchat export: wrote {len(files)} files to {args.output}: lmms-eval --include_path {args.output} "
          f"--tasks sarchat_bench (adapter {args.adapter})")
    return 0


def _vlmevalkit(args, reading):
    from sarchat.transforms import ownership
    from sarchat.transforms.score import vlmeval_export as V
    from sarchat.transforms.score.lmms_eval_export import own_older_export, write_export

    files = V.plan_export(args.dataset, args.output, args.split, args.adapter, args.image_root,
                          not args.no_format_hint, args.name)
    reading.verify()
    with ownership.claim(args.output, "export", legacy=own_older_export) as claim:
        write_export(args.output, files, "sarchat export vlmevalkit", also_ours=claim.previous)
    print(f"sarchat export: wrote {V.tsv_name(args.name)} to {args.output} (adapter {args.adapter}); register it as "
          f"VLMEvalKit's dataset {args.name}: {args.output}/{V.README} says how")
    return 0


if __name__ == "__main__":
    sys.exit(run())
