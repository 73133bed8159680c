"""`sarchat score`: score model predictions on the SARChat-Bench test split (Beam pipeline).

    sarchat score --dataset GENERATED_OUT --predictions PATH [PATH ...] --output DIR
                  [--adapter NAME | --adapter MODEL=NAME ...] [--split test]
                  [--bootstrap 1000] [--seed 0] [--num-buckets 64]
                  [--stats STATS_DIR] [--samples 2] [--image-root ROOT] [beam flags]

--dataset      the generator's output folder (reads DATASET/parquet/<split>/*.parquet), or a
               Parquet file / glob of test rows
--predictions  prediction files (Parquet or JSONL, .jsonl.gz too), globs or folders; rows carry
               id, prediction, model (and optional error, latency_s). Several models may be scored
               at once: rows are grouped by their `model` field (file name when it is empty).
--adapter      how boxes are written: canonical, qwen2-vl, internvl, json-bbox2d[:scale], or a
               model adapter name of sarchat.transforms.adapters; MODEL=NAME sets it for one model only.
               Without it, a model's format is the `box_format` of the manifest.json that
               `sarchat infer` writes beside its predictions, else canonical.

Writes, for each model, DIR/<model>/metrics.json (SPEC section 5 keys), breakdown.json (per
category / per size), rejected.jsonl (duplicate ids, ids not in the split, ...) and
samples/*.parquet (per-sample results); and DIR/leaderboard.json, leaderboard.md, report.md,
report.html. --stats adds a dataset section (the `sarchat stats` plots and tables) to the report;
--samples N (default 2, 0: none) a samples section: N test samples per task with the image, the
truth and predicted boxes and every model's answer marked (transforms/report_sections.py).
Remaining flags go to Beam (e.g. --direct_num_workers, --runner DataflowRunner).
"""
import argparse
import sys

import apache_beam as beam

from sarchat.beam_pipelines import flags
from sarchat.beam_pipelines.beam_options import make_pipeline
from sarchat.transforms import fileio
from sarchat.report import sample_sections as report_sections
from sarchat.transforms.score import pipeline as scoring


def build_parser():
    p = argparse.ArgumentParser(prog="sarchat score", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="generated dataset folder (or test Parquet file / glob)")
    p.add_argument("--predictions", required=True, nargs="+", help="prediction files, globs or folders")
    p.add_argument("--output", required=True, type=flags.output_folder("--output"), help="output folder (local or gs://)")
    p.add_argument("--adapter", action="append", default=None,
                   help="box format / adapter name for all models, or MODEL=NAME for one (repeatable)")
    p.add_argument("--split", default="test")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for overall_ci95 (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-buckets", "--num_buckets", type=int, default=64, help="id buckets of the join (parallelism)")
    p.add_argument("--no-samples", action="store_true", help="do not write the per-sample Parquet files")
    p.add_argument("--stats", default=None, metavar="DIR",
                   help="a `sarchat stats` output folder (or its stats.json): adds a dataset section to the report")
    p.add_argument("--samples", type=int, default=2, metavar="N",
                   help="test samples per task shown with their image, answers and marks in the report (0: none)")
    p.add_argument("--image-root", "--image_root", default=None,
                   help="root of the test rows' image_path for the samples section (default: the dataset manifest's input_root)")
    return p


def build(p, args):
    """Add the scoring graph to pipeline `p`; returns the PCollections a test may assert on."""
    if args.num_buckets < 1:
        raise ValueError("--num-buckets must be >= 1")
    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be >= 0")
    test_files = scoring.dataset_files(args.dataset, args.split)
    pred_files = scoring.expand_inputs(args.predictions, (".parquet", ".jsonl", ".jsonl.gz", ".json"))
    fileio.check_parquet_files(test_files, "dataset")
    fileio.check_parquet_files(pred_files, "predictions")
    scoring.remove_stale_samples(args.output, args.num_buckets)
    formats = scoring.FormatChooser.from_flags(args.adapter, scoring.discover_run_formats(pred_files))
    nb = args.num_buckets

    tests = (p | "TestFiles" >> beam.Create(test_files)
               | "ReadTests" >> beam.ParDo(scoring.ReadDialogueFileFn(args.split, nb)))
    preds = (p | "PredictionFiles" >> beam.Create(pred_files)
               | "ReadPredictions" >> beam.ParDo(scoring.ReadPredictionFileFn(nb)).with_outputs(
                   scoring.ReadPredictionFileFn.MODELS, scoring.ReadPredictionFileFn.REJECTS, main="rows"))
    models = preds[scoring.ReadPredictionFileFn.MODELS] | "DistinctModels" >> beam.Distinct()

    scored = (
        {"d": tests, "p": preds.rows}
        | "JoinOnIdBucket" >> beam.CoGroupByKey()
        | "ScoreBuckets" >> beam.ParDo(
            scoring.ScoreBucketFn(args.output, formats, nb, write_samples=not args.no_samples),
            models=beam.pvalue.AsList(models)).with_outputs(scoring.ScoreBucketFn.REJECTS, main="arrays")
    )
    rejects = ((scored[scoring.ScoreBucketFn.REJECTS], preds[scoring.ReadPredictionFileFn.REJECTS])
               | "AllRejects" >> beam.Flatten())
    task_summaries = scored.arrays | "AggregateTasks" >> scoring.AggregateTasks()
    entries = (
        {"tasks": task_summaries, "rejects": rejects}
        | "ByModel" >> beam.CoGroupByKey()
        | "FinalizeModels" >> beam.ParDo(scoring.FinalizeModelFn(args.output, args.bootstrap, args.seed, formats))
    )
    board = (entries
             | "AllModels" >> beam.combiners.ToList()
             | "WriteReports" >> beam.ParDo(scoring.WriteReportsFn(args.output)))
    return {
        "metrics": entries | "MetricsOnly" >> beam.Map(lambda e: (e["model"], e["metrics"])),
        "breakdowns": entries | "BreakdownOnly" >> beam.Map(lambda e: (e["model"], e["breakdown"])),
        "rejects": rejects | "RejectRecords" >> beam.Values(),
        "leaderboard": board,
    }


def run(argv=None, test=None):
    """Parse flags, build and run the pipeline. `test(pipeline, outputs)`, when given, is called
    before running so that a test can attach assertions (apache_beam.testing.util.assert_that) to
    the PCollections in `outputs` (metrics, breakdowns, rejects, leaderboard)."""
    args, beam_argv = build_parser().parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.samples < 0:
            raise ValueError("--samples must be >= 0")
        if args.stats:
            report_sections.stats_file(args.stats)
        p = make_pipeline(beam_argv)
        outputs = build(p, args)
    except (ValueError, FileNotFoundError) as e:
        print(f"sarchat score: {e}", file=sys.stderr)
        return 2
    if test is not None:
        test(p, outputs)
    result = p.run()
    result.wait_until_finish()
    _print_counters(result)
    if args.stats or args.samples:
        try:
            report_sections.add_report_sections(
                args.output, dataset=args.dataset, split=args.split, predictions=args.predictions,
                adapters=args.adapter, stats=args.stats, samples_per_task=args.samples, image_root=args.image_root)
        except Exception as e:  # the scores are written; say what is missing from the report
            print(f"sarchat score: could not add the dataset/samples sections to the report: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
            return 1
    print(f"sarchat score: wrote {args.output}/leaderboard.json, report.md, report.html and per-model metrics")
    return 0


def _print_counters(result):
    """The pipeline's counters (scored, missing, parse failures per task, rejects per reason)."""
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # a runner without metrics support
        return
    totals = {}
    for c in counters:
        if c.key.metric.namespace == scoring.NAMESPACE:
            totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
    if totals:
        print("sarchat score: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))


if __name__ == "__main__":
    sys.exit(run())
