"""`sarchat export lmms-eval`: write a SARChat-Bench task folder for lmms-eval.

    sarchat export lmms-eval --dataset GENERATED_OUT --output DIR [--adapter NAME] [--split test]
                             [--image-root ROOT] [--no-format-hint] [--max-new-tokens 512]
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
"""
import argparse
import sys

from sarchat.beam_pipelines import flags
from sarchat.transforms.errors import UsageError

FORMATS = ("lmms-eval",)


def build_parser():
    p = flags.ArgumentParser(prog="sarchat export lmms-eval", description=__doc__.split("\n\n")[0],
                             epilog="The folder's files are listed in DIR/sarchat_export.json; a rerun into DIR "
                                    "replaces exactly those.")
    p.add_argument("--dataset", required=True, help="a `sarchat generate` output folder (its manifest.json lists the Parquet files)")
    p.add_argument("--output", required=True, type=flags.output_folder("--output"), help="the task folder to write")
    p.add_argument("--adapter", default="sarchat",
                   help="model family prompted and read (sarchat.transforms.adapters, e.g. qwen2-vl, llava-1.5, "
                        "qwen2-vl:canonical; default %(default)s: canonical boxes, no hint)")
    p.add_argument("--split", default="test", help="split of the dataset to export (default %(default)s)")
    p.add_argument("--image-root", "--image_root", default=None,
                   help="folder the rows' image_path is relative to (default: the dataset manifest's input_root)")
    p.add_argument("--no-format-hint", action="store_true",
                   help="do not append the adapter's box-format sentence to box-task questions")
    p.add_argument("--max-new-tokens", type=flags.positive_int, default=512,
                   help="most tokens generated per answer, as `sarchat infer --max-tokens` (default %(default)s)")
    return p


def usage() -> str:
    return ("usage: sarchat export FORMAT [options]\n\nformats:\n"
            "  lmms-eval  a task folder for `lmms-eval --include_path DIR --tasks sarchat_bench`\n\n"
            "`sarchat export lmms-eval --help` lists its options.")


def run(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    fmt, rest = argv[0], argv[1:]
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)} (see `sarchat export --help`)")
    args = build_parser().parse_args(rest)
    from sarchat.transforms.fileio import check_no_overlap
    from sarchat.transforms.score.lmms_eval_export import plan_export, write_export

    check_no_overlap([("the dataset (--dataset)", args.dataset)], args.output)
    if args.image_root:
        check_no_overlap([("the image root (--image-root)", args.image_root)], args.output)
    from sarchat.transforms import ownership
    from sarchat.transforms.score.lmms_eval_export import own_older_export

    reading = ownership.reading(args.dataset)  # one dataset version, checked again before writing
    files = plan_export(args.dataset, args.split, args.adapter, args.image_root, not args.no_format_hint,
                        args.max_new_tokens)
    reading.verify()
    with ownership.claim(args.output, "export", legacy=own_older_export) as claim:
        write_export(args.output, files, also_ours=claim.previous)  # a half-written export of ours too
    print(f"sarchat export: wrote {len(files)} files to {args.output}: lmms-eval --include_path {args.output} "
          f"--tasks sarchat_bench (adapter {args.adapter})")
    return 0


if __name__ == "__main__":
    sys.exit(run())
