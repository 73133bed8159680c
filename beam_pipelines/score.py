"""`sarchat score`: score model predictions on the SARChat-Bench test split (Beam pipeline).

    sarchat score --dataset GENERATED_OUT --predictions PATH [PATH ...] --output DIR
                  [--adapter NAME | --adapter MODEL=NAME ...] [--split test]
                  [--bootstrap 1000] [--seed 0] [--num-buckets auto] [--allow-version-mismatch]
                  [--stats STATS_DIR] [--samples 2] [--no-sample-files] [--image-root ROOT]
                  [--no-progress] [beam flags]
    sarchat score --explain ID --output DIR

--dataset      the generator's output folder: the split's Parquet files exactly as its manifest.json
               lists them (a folder without a manifest, or a listed file of another size, is refused);
               for ad-hoc use also a Parquet file or glob of test rows (dataset version unknown)
--predictions  prediction files (Parquet or JSONL, .jsonl.gz too), globs, or `sarchat infer` run
               folders (their predictions.parquet); rows carry id, prediction, model (and optional
               error, latency_s). Several models may be scored at once: rows are grouped by their
               `model` field (file name when it is empty); one model may come from one source only.
--adapter      how boxes are written: a box format (canonical, qwen2-vl, internvl, json-bbox2d[:scale],
               xyxy[:scale], yxyx[:scale], deepseek-det, glm-box, paligemma-loc, florence-loc;
               docs/rules.md section 12), a model adapter name of sarchat.transforms.adapters or an
               adapter file PATH.json; MODEL=NAME sets it for one model only.
               Without it, a model's format is the `box_format` of the manifest.json that
               `sarchat infer` writes beside its predictions, else canonical.
--allow-version-mismatch  score predictions made on another dataset version (refused otherwise);
               metrics.json and the report then say so.

Writes, for each model, DIR/<model>/metrics.json (docs/rules.md section 12 keys), breakdown.json (per
category / per size), rejected.jsonl (duplicate ids, ids not in the split, malformed lines, ...)
samples/*.parquet (per-sample results) and samples_<task>.jsonl (one JSON object per test
sample, sorted by id: question, reference, response, parsed targets, TP/FP/FN per column, IoUs,
status, inference error); and DIR/leaderboard.json, leaderboard.md, report.md,
report.html, rejected.jsonl (malformed lines of files of several models). --stats adds a dataset
section (the `sarchat stats` plots and tables) to the report; --samples N (default 2, 0: none) a
samples section: N test samples per task with the image, the truth and predicted boxes and every
model's answer marked. The job writes everything itself, so a Flex Template or --no_wait launch
is complete when the job is. Remaining flags go to Beam (e.g. --direct_num_workers, --runner).
After a run it prints the leaderboard (rank, model, overall, each task's score, in %) and the
output folder. --no-sample-files (old spelling --no-samples) writes no per-sample files.
--explain ID prints that sample's records of every model from DIR's samples_<task>.jsonl files
(no scoring; exit 1 when no model has the id).
"""
import json
import re
import sys
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

from sarchat.beam_pipelines import flags
from sarchat.transforms import ownership
from sarchat.transforms.fileio import check_no_overlap, read_bytes
from sarchat.beam_pipelines.beam_options import launch, make_pipeline
from sarchat.transforms.errors import SarchatError

# The score pipeline and its input planning import Beam: they are imported inside the functions that
# run after the flags are parsed, so `sarchat score --help` answers without loading it.


@dataclass(frozen=True)
class ScoreConfig:
    """The settings of `sarchat score` (but --explain), one field per flag."""
    dataset: str
    predictions: Tuple[str, ...]
    output: str
    adapter: Optional[Tuple[str, ...]] = None
    split: str = "test"
    bootstrap: int = 1000
    seed: int = 0
    num_buckets: Optional[int] = None  # None: auto (id_buckets.auto_bucket_count)
    no_sample_files: bool = False
    allow_version_mismatch: bool = False
    stats: Optional[str] = None
    samples: int = 2
    plots: str = "svg"
    image_root: Optional[str] = None
    no_progress: bool = False
    beam_args: Tuple[str, ...] = ()


_D = flags.defaults(ScoreConfig)


def build_parser():
    p = flags.ArgumentParser(prog="sarchat score", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="generated dataset folder (or test Parquet file / glob)")
    p.add_argument("--predictions", required=True, nargs="+", help="prediction files, globs or run folders")
    p.add_argument("--output", required=True, type=flags.output_folder("--output"), help="output folder (local or gs://)")
    p.add_argument("--adapter", action="append", default=None,
                   help="box format / adapter name for all models, or MODEL=NAME for one (repeatable)")
    p.add_argument("--split", default=_D["split"], help="split of the dataset to score (default %(default)s)")
    p.add_argument("--bootstrap", type=flags.non_negative_int, default=_D["bootstrap"], help="bootstrap replicates for overall_ci95 (0: none; default %(default)s)")
    p.add_argument("--seed", type=flags.seed, default=_D["seed"], help="seed of the bootstrap resampling (default %(default)s)")
    p.add_argument("--num-buckets", "--num_buckets", type=flags.positive_int_or_auto, default="auto",
                   help="id buckets of the join (its parallelism) or auto: one per 8,192 prediction rows, "
                        "1 to 64 (default auto)")
    p.add_argument("--no-sample-files", "--no_sample_files", action="store_true",
                   help="do not write the per-sample result files (samples/*.parquet, samples_<task>.jsonl; "
                        "`--explain` reads them); default: written")
    p.add_renamed("--no-samples", "--no-sample-files")
    p.add_argument("--allow-version-mismatch", "--allow_version_mismatch", action="store_true",
                   help="score predictions made on another dataset version (the report says so)")
    p.add_argument("--stats", default=None, metavar="DIR",
                   help="a `sarchat stats` output folder (or its stats.json): adds a dataset section to the report")
    p.add_argument("--samples", type=flags.non_negative_int, default=_D["samples"], metavar="N",
                   help="test samples per task shown with their image, answers and marks in the report "
                        "(0: none; default %(default)s)")
    p.add_argument("--plots", choices=("svg", "none"), default=_D["plots"],
                   help="charts in report.html: svg (inline) or none (tables only, no matplotlib; "
                        "default %(default)s, like `sarchat stats --plots`)")
    p.add_argument("--image-root", "--image_root", default=None,
                   help="root of the test rows' image_path for the samples section (default: the dataset manifest's input_root)")
    p.add_argument("--explain", default=None, metavar="ID",
                   help="print sample ID's results of every model from --output's samples_<task>.jsonl (no scoring)")
    flags.add_progress_flag(p)
    return p


def explain_parser():
    p = flags.ArgumentParser(prog="sarchat score --explain",
                             description="print one sample's per-model results from a score output folder")
    p.add_argument("--explain", required=True, metavar="ID", help="the sample id")
    p.add_argument("--output", required=True, help="a `sarchat score` output folder")
    return p


def explain(argv):
    """`sarchat score --explain ID --output DIR`: no pipeline, only DIR's jsonl files are read."""
    from sarchat.transforms.score.sample_lines import explain_text, find_sample

    args = explain_parser().parse_args(argv)
    sys.stdout.write(explain_text(find_sample(args.output, args.explain)))
    return 0


class Scored(NamedTuple):
    """What `score` did: whether the job finished here (False: only submitted; it writes its files
    when it ends), and the leaderboard it wrote (None when there is none to read)."""
    finished: bool
    leaderboard: Optional[list]


def score(config: ScoreConfig, test=None) -> Scored:
    """The score stage: every model's metrics, the leaderboard and the reports in config.output.
    `test(pipeline, outputs)`, when given, is called before running so that a test can attach
    assertions (apache_beam.testing.util.assert_that) to the PCollections in `outputs` (metrics,
    breakdowns, rejects, leaderboard)."""
    from sarchat.transforms.score.id_buckets import auto_bucket_count
    from sarchat.transforms.score.pipeline import ScorePredictions, ScoreSettings
    from sarchat.transforms.score.score_inputs import plan_score_inputs
    from sarchat.transforms.score.score_outputs import remove_stale_samples

    check_no_overlap([("the dataset (--dataset)", config.dataset)]
                     + [("a --predictions input", p) for p in config.predictions if not any(c in p for c in "*?[")],
                     config.output)
    reading = ownership.reading(config.dataset)  # one dataset version, checked again at the end
    inputs = plan_score_inputs(config.dataset, config.split, config.predictions, config.adapter,
                               config.allow_version_mismatch, config.image_root, config.stats)
    # --num-buckets auto counts the rows of the planned prediction files
    num_buckets = config.num_buckets or auto_bucket_count(sum(f.rows for f in inputs.prediction_files))
    settings = ScoreSettings(output_dir=config.output, split=config.split, num_buckets=num_buckets,
                             bootstrap=config.bootstrap, seed=config.seed, write_samples=not config.no_sample_files,
                             samples_per_task=config.samples, plots=config.plots)
    with ownership.claim(config.output, "score", legacy=own_older_output, keep_on_failure=False) as claim:
        claim.remove_previous()  # what the last score run here wrote: nothing stale stays
        p = make_pipeline(config.beam_args)
        remove_stale_samples(config.output, settings.num_buckets)
        outputs = p | "Score" >> ScorePredictions(inputs, settings)
        if test is not None:
            test(p, outputs)
        result, finished = launch(p, progress_of(config, inputs))
        reading.verify()
    if not finished:
        return Scored(False, None)
    _print_counters(result)
    for m, prov in sorted(inputs.provenance.items()):
        if prov.mismatch:
            print(f"sarchat score: warning: {m}: predictions made on dataset version {prov.version}, scored on "
                  f"{inputs.dataset_version} (--allow-version-mismatch)", file=sys.stderr)
    try:
        return Scored(True, json.loads(read_bytes(f"{config.output.rstrip('/')}/leaderboard.json")))
    except (OSError, ValueError):
        return Scored(True, None)


def run(argv=None, test=None):
    """`sarchat score` (or `sarchat score --explain`): the stage, then the leaderboard on stdout."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--explain" or a.startswith("--explain=") for a in argv):
        return explain(argv)
    config = flags.parse_config(build_parser(), argv, ScoreConfig, beam=True)
    print_summary(config, score(config, test))
    return 0


def print_summary(config: ScoreConfig, scored: Scored, seconds=None):
    """What `sarchat score` prints after the stage (the demo writes it to its log): the leaderboard
    and where the outputs are; `scored` is the stage's result."""
    finished, board = scored
    if not finished:
        print(f"sarchat score: pipeline submitted; the job writes {config.output}/leaderboard.json, report.md, "
              "report.html and per-model metrics")
        return
    if board is not None:
        print(leaderboard_text(board))
    print(f"sarchat score: outputs in {config.output} (leaderboard.json, leaderboard.md, report.html, report.md; "
          "per model <model>/metrics.json)")


SCORE_OUTPUT_NAMES = re.compile(r"(leaderboard\.json|leaderboard\.md|report\.md|report\.html|rejected\.jsonl"
                                r"|[^/]+/(metrics\.json|breakdown\.json|rejected\.jsonl|samples_[a-z]+\.jsonl"
                                r"|samples/samples-\d{5}-of-\d{5}\.parquet))")


def own_older_output(folder, files):
    """The files of a score folder written before the ownership marker existed (it has our
    leaderboard.json); None when the folder is not a score output."""
    return [f for f in files if SCORE_OUTPUT_NAMES.fullmatch(f)] if "leaderboard.json" in files else None


def progress_of(config, inputs):
    """(label, stage, total, unit) of the run's progress (beam_options.launch): test samples scored,
    out of the split's dialogues (the dataset manifest's counts) times the models."""
    from sarchat.transforms import dataset_files

    total = None
    try:
        counts = dataset_files.read_manifest(config.dataset).get("counts") or {}
        total = int(counts[config.split]["dialogues"]) * max(1, len(inputs.models))
    except (SarchatError, OSError, KeyError, TypeError, ValueError):
        pass  # an ad-hoc Parquet file or glob: no total, the count and rate only
    return "sarchat score: scoring", "score.samples", total, "samples"


def leaderboard_text(board, notes=None) -> str:
    """The leaderboard as a plain-text table: rank, model, the weighted overall (the paper's Eq. 4)
    and each task's Table 3 score, in %; "-" where a task has no score. `notes`: {model: text}
    printed after the row (the demo says what each baseline is)."""
    from sarchat.transforms.tasks import TASKS

    width = max([len("model")] + [len(str(r["model"])) for r in board])

    def cell(value, w):
        return f"{value:>{w}.1f}" if isinstance(value, (int, float)) else f"{'-':>{w}}"

    head = f"  {'#':<2} {'model':<{width}} {'overall':>7}  " + " ".join(f"{t:>{max(6, len(t))}}" for t in TASKS)
    lines = ["leaderboard (scores in %; overall = task scores weighted by test samples, the paper's Eq. 4):", head]
    for r in board:
        tasks = r.get("tasks") or {}
        row = (f"  {r['rank']:<2} {str(r['model']):<{width}} {cell(r.get('overall'), 7)}  "
               + " ".join(cell(tasks.get(t), max(6, len(t))) for t in TASKS))
        note = (notes or {}).get(r["model"])
        lines.append(row + (f"   {note}" if note else ""))
    return "\n".join(lines)


def _print_counters(result):
    """The pipeline's counters (scored, missing, parse failures per task, rejects per reason)."""
    from sarchat.transforms.score.pipeline import NAMESPACE

    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # a runner without metrics support
        return
    totals = {}
    for c in counters:
        if c.key.metric.namespace == NAMESPACE:
            totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + (c.committed or c.attempted or 0)
    if totals:
        print("sarchat score: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))


if __name__ == "__main__":
    sys.exit(run())
