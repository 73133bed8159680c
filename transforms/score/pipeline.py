"""Beam pieces of the scorer: one composite `ScorePredictions` and the DoFns / CombineFns it applies.

The pure work lives beside this file (prediction_files, dialogue_rows, id_buckets, score_columns,
metrics, parsing, sample_choice, score_outputs) and the rendering in sarchat.report;
everything here is thin plumbing, batched so that a full test split (226,636 dialogues) is a few hundred Beam
elements rather than hundreds of thousands:

  test Parquet files --(record batches)--> (bucket, test rows)          \\
         \\--> a few candidate ids per (task, subset) -> merged, chosen -> shown ids (side input)
  prediction files ----(record batches)--> (bucket, predictions)       /  one GroupByKey on the id bucket
                                                                       v
           ScoreBucketFn: join on id inside the bucket and score every (model, task) over Arrow
           columns and numpy (score_columns), write OUT/<model>/samples/samples-<bucket>-of-<n>.parquet,
           emit (tag, value) pairs: one TaskArrays per (model, task), the rejected prediction rows,
           the bucket's template_spread counts, the results of the shown ids and the bucket's
           samples_<task>.jsonl lines (Arrow IPC, zstd) -> GroupByKey (model, task) -> one
           OUT/<model>/samples_<task>.jsonl sorted by id; then the stale ones are removed
                                                                       |
           CombinePerKey(concat_task_arrays) keyed by (model, task): one combine per task and model
                                                                       |
           GroupByKey on the model (its tasks, template counts and rejects) -> finalize_model:
           metrics.json, breakdown.json, rejected.jsonl per model
                                                                       |
           WriteReportsFn: leaderboard.json/.md, rejected.jsonl, report.md, report.html with the
           samples section (the shown ids' rows and results) and the dataset section (--stats)

Every step has one output (transforms/steps.py): a DoFn with several kinds of output emits
`(tag, value)` pairs that `select` splits, and nothing is a Partition, so runners that break
multi-output steps (Dask's) run the scorer alike. Steps are few on purpose: Beam spends about 10 ms
building each one, which is much of a small run's time. WriteReportsFn, the last step, reads through its
main input (GatherTagged) the models' entries, the shown ids' results, the rejects of no model and the
count of stale sample-line files removed, so it depends on every step that writes files; its side
inputs (the shown ids, their test rows) come from reading the test files only.

All files go through sarchat.transforms.fileio, so gs:// paths work.
"""
import collections
import io
from dataclasses import dataclass
from typing import Optional

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from sarchat.report import sample_sections, score_report
from sarchat.transforms.errors import UsageError
from sarchat.transforms.fileio import delete, join_path, write_bytes, write_text
from sarchat.transforms.progress import worker_count
from sarchat.transforms.runtime import gc_paused
from sarchat.transforms.steps import Gather, GatherTagged, select, select_keyed, tagged
from sarchat.transforms.score import score_columns as columnar
from sarchat.transforms.score import metrics as M
from sarchat.transforms.score import score_outputs as outputs
from sarchat.transforms.score import template_spread
from sarchat.transforms.score.id_buckets import bucket_parts, ipc_table, to_ipc
from sarchat.transforms.score.prediction_files import MALFORMED, iter_prediction_tables, model_of_malformed
from sarchat.transforms.score.parsing import ParseMemo
from sarchat.transforms.score.sample_choice import choose_from_candidates, merge_candidates, smallest_candidates
from sarchat.transforms.score.score_inputs import ScoreInputs
from sarchat.transforms.score.dialogue_rows import DIALOGUE_COLUMNS, iter_test_tables, read_shown_rows
from sarchat.transforms.score.sample_lines import sample_lines_name, stale_sample_line_files
from sarchat.transforms.tasks import TASKS

NAMESPACE = "sarchat.score"


@dataclass(frozen=True)
class ScoreSettings:
    """How to score (the inputs themselves are a ScoreInputs, planned and checked at launch)."""

    output_dir: str
    split: str = "test"
    num_buckets: int = 64           # id buckets of the join: its parallelism
    bootstrap: int = 1000           # replicates of overall_ci95 (0: none)
    seed: int = 0
    write_samples: bool = True      # OUT/<model>/samples/*.parquet
    samples_per_task: int = 2       # samples shown per task in the report (0: no samples section)
    image_max_side: int = 256       # pixels of the longer side of a sample image in the report
    plots: str = "svg"              # the report's charts: "svg" (inline) or "none" (tables only)

    def __post_init__(self):
        for name, flag, least in (("num_buckets", "--num-buckets", 1), ("bootstrap", "--bootstrap", 0),
                                  ("samples_per_task", "--samples", 0), ("image_max_side", "image_max_side", 16)):
            if getattr(self, name) < least:
                raise UsageError(f"{flag} must be >= {least}, got {getattr(self, name)}")
        if self.plots not in ("svg", "none"):
            raise UsageError(f"--plots must be svg or none, got {self.plots!r}")


class ReadDialogueFileFn(beam.DoFn):
    """A test Parquet shard -> `tagged` pairs: ROWS, (bucket, Arrow IPC bytes of its rows) per record
    batch and bucket; CANDIDATES, the shard's smallest ids per (task, subset), for the report's samples."""

    ROWS, CANDIDATES = "test_rows", "candidates"

    def __init__(self, split, num_buckets, samples_per_task=0, batch_size=65536, columns=DIALOGUE_COLUMNS):
        self.split, self.num_buckets, self.batch_size = split, num_buckets, batch_size
        self.samples_per_task, self.columns = samples_per_task, tuple(columns)
        self.rows = Metrics.counter(NAMESPACE, "test_rows")
        self.other_split = Metrics.counter(NAMESPACE, "rows_of_other_splits_skipped")

    def process(self, path):
        keys = []
        for table, skipped in iter_test_tables(path, self.split, self.columns, self.batch_size):
            self.other_split.inc(skipped)
            self.rows.inc(table.num_rows)
            if table.num_rows:
                ids = table.column("id").to_pylist()
                if self.samples_per_task:
                    subsets = columnar.table_column(table, "subset").to_pylist()
                    keys += zip(ids, table.column("task").to_pylist(), subsets)
                for part in bucket_parts(table, ids, self.num_buckets):
                    yield tagged(self.ROWS, part)
        if self.samples_per_task and keys:
            yield tagged(self.CANDIDATES, smallest_candidates(keys, self.samples_per_task))


class ReadPredictionFileFn(beam.DoFn):
    """A prediction file -> `tagged` pairs: ROWS, (bucket, Arrow IPC bytes of its rows) per batch and
    bucket; REJECTS, (model or None, record) per malformed line (model: the file's only model)."""

    ROWS, REJECTS = "prediction_rows", "rejects"

    def __init__(self, num_buckets, malformed_model, batch_size=65536):
        self.num_buckets, self.batch_size = num_buckets, batch_size
        self.malformed_model = dict(malformed_model)
        self.rows = Metrics.counter(NAMESPACE, "prediction_rows")
        self.malformed = Metrics.counter(NAMESPACE, f"rejected.{MALFORMED}")

    def process(self, path):
        model = self.malformed_model.get(path)
        for table, bad in iter_prediction_tables(path, self.batch_size):
            self.rows.inc(table.num_rows)
            if table.num_rows:
                for part in bucket_parts(table, table.column("id").to_pylist(), self.num_buckets):
                    yield tagged(self.ROWS, part)
            for index in bad:
                self.malformed.inc()
                yield tagged(self.REJECTS, (model, {
                    "model": model, "id": None, "reason": MALFORMED, "file": path, "row": index}))


class ScoreBucketFn(beam.DoFn):
    """Join test rows and predictions of one bucket on id and score every (model, test row),
    task by task over columns (sarchat.transforms.score.score_columns).

    - every test row gets a result for every model: scored, unparseable, an inference error (the
      row's `error` is set) or missing -- the last three are misses;
    - duplicate ids within a model: the first by (file, row) is scored, the others are rejected
      with reason 'duplicate_id'; ids that are not in the test split are rejected 'unknown_id';
      rows without an id 'missing_id';
    - writes the bucket's per-sample results per model, sorted by id, to
      OUT/<model>/samples/samples-<bucket>-of-<num_buckets>.parquet;
    - its output, `tagged` pairs: ARRAYS, ((model, task), TaskArrays); REJECTS, (model, reject
      record); SHOWN, (id, model, {'prediction', 'error', 'result': sample record}) for the report's
      shown ids; LINES (when writing samples), ((model, task), Arrow IPC bytes of the bucket's (id,
      samples_<task>.jsonl line) rows); TEMPLATES, (model, template_spread accumulator of the bucket).
    """

    ARRAYS = "arrays"
    REJECTS = ReadPredictionFileFn.REJECTS  # one tag, so that the rejects of both steps are taken together
    SHOWN = "shown"
    LINES = "lines"
    TEMPLATES = "templates"

    def __init__(self, output_dir, formats, num_buckets, models, write_samples=True):
        self.output_dir, self.formats, self.num_buckets = output_dir, formats, num_buckets
        self.models, self.write_samples = tuple(models), write_samples

    def setup(self):
        self.c_scored = Metrics.counter(NAMESPACE, "scored")
        self.c_missing = Metrics.counter(NAMESPACE, "missing_predictions")
        self.c_dup_test = Metrics.counter(NAMESPACE, "duplicate_test_ids_dropped")
        self.c_bad_task = Metrics.counter(NAMESPACE, "test_rows_with_unknown_task_dropped")
        self.c_reject = {r: Metrics.counter(NAMESPACE, f"rejected.{r}")
                         for r in ("duplicate_id", "unknown_id", "missing_id")}
        self.c_fail = {t: Metrics.counter(NAMESPACE, f"parse_failures.{t}") for t in TASKS}
        self.c_error = {t: Metrics.counter(NAMESPACE, f"inference_errors.{t}") for t in TASKS}
        self.memos = collections.defaultdict(ParseMemo)  # one per model: answers repeat across buckets too

    def process(self, element, shown=()):
        # the bucket's outputs are gathered with the cyclic garbage collector paused, then emitted
        with gc_paused():
            outputs = list(self._score_bucket(element, shown))
        yield from outputs

    def _score_bucket(self, element, shown):
        bucket, parts = element
        join = columnar.BucketJoin([ipc_table(p) for tag, p in parts if tag == ReadDialogueFileFn.ROWS],
                                   [ipc_table(p) for tag, p in parts if tag == ReadPredictionFileFn.ROWS])
        self.c_bad_task.inc(join.unknown_task)
        self.c_dup_test.inc(join.duplicate_tests)
        for record in join.rejects:
            self.c_reject[record["reason"]].inc()
            yield tagged(self.REJECTS, (record["model"], record))
        shown = sorted(set(shown))
        for model, parts in columnar.score_bucket(join, self.models, self.formats, self.memos.__getitem__):
            n = 0
            for part in parts:
                status, task = part.scores.status, part.truth.task
                n += part.truth.n
                self.c_missing.inc(int((status == columnar._MISSING).sum()))
                self.c_fail[task].inc(int((status == columnar._UNPARSEABLE).sum()))
                self.c_error[task].inc(int((status == columnar._ERROR).sum()))
            if not n:
                continue
            self.c_scored.inc(n)
            worker_count("score.samples", n)  # progress on the launcher's terminal
            table = columnar.model_sample_table(parts)
            if self.write_samples:
                buf = io.BytesIO()
                pq.write_table(table, buf, compression="zstd")
                path = join_path(self.output_dir, outputs.model_dirname(model), "samples",
                                 outputs.samples_file_name(bucket, self.num_buckets))
                write_bytes(path, buf.getvalue())
            if shown:
                yield from self._shown(model, parts, table, shown)
            by_template = template_spread.new()
            for part in parts:
                task, arrays = part.truth.task, part.scores.task_arrays()
                yield tagged(self.ARRAYS, ((model, task), arrays))
                template_ids = columnar.table_column(part.truth.table, "template_id").to_pylist()
                template_spread.add_arrays(by_template, arrays, template_ids)
                if self.write_samples:
                    lines = pa.table({"id": columnar.table_column(part.truth.table, "id"), "line": part.lines()})
                    yield tagged(self.LINES, ((model, task), to_ipc(lines, compression="zstd")))
            yield tagged(self.TEMPLATES, (model, by_template))

    def _shown(self, model, parts, table, shown):
        ids = table.column("id")
        at = pc.index_in(pa.array(shown, pa.string()), value_set=ids).to_pylist()
        found = [(sid, i) for sid, i in zip(shown, at) if i is not None]
        if not found:
            return
        for part in parts:
            pos = pc.index_in(pa.array([sid for sid, _ in found], pa.string()),
                              value_set=columnar.table_column(part.truth.table, "id")).to_pylist()
            for (sid, i), p in zip(found, pos):
                if p is None:
                    continue
                yield tagged(self.SHOWN, (sid, model, {
                    "prediction": part.prediction[p].as_py(), "error": part.error[p].as_py(),
                    "result": table.slice(i, 1).to_pylist()[0]}))


def write_sample_lines(element, output_dir):
    """((model, task), [IPC bytes of (id, line) rows per bucket]) -> OUT/<model dir>/samples_<task>.jsonl,
    sorted by id, written atomically; returns the path written."""
    (model, task), parts = element
    path = join_path(output_dir, outputs.model_dirname(model), sample_lines_name(task))
    write_bytes(path, columnar.merged_lines([ipc_table(p) for p in parts]), "application/jsonl")
    return path


def remove_stale_sample_lines(written, output_dir):
    """[paths this run wrote] -> delete the other samples_<task>.jsonl under OUT (an earlier run's
    models or tasks; all of them when this run wrote none, e.g. --no-sample-files): none is left that
    disagrees with this run's metrics. Returns how many were deleted."""
    stale = stale_sample_line_files(output_dir, written)
    delete(stale)
    return len(stale)


def concat_task_arrays(parts):
    """Combine one task's per-bucket TaskArrays of a model (beam.CombinePerKey's callable: parts
    may be earlier outputs of its own); finalize_model sorts them by id, independent of bundle order."""
    parts = list(parts)
    return M.TaskArrays.concat(parts[0].task, parts)


def finalize_model(element, output_dir, n_boot, seed, formats, dataset_version, provenance):
    """(model, [(kind, value)...]) -> metrics.json, breakdown.json and rejected.jsonl under OUT/<model>/;
    returns a dict with the model's metrics and breakdown. Kinds (see by_model): 'tasks', a task's
    TaskArrays; 'templates', a bucket's template_spread accumulator; 'rejects', a reject record."""
    model, parts = element
    groups = collections.defaultdict(list)
    for kind, value in parts:
        groups[kind].append(value)
    arrays = {a.task: a.sorted() for a in groups["tasks"]}
    missing = sum(int((a.status == M.STATUS_CODES[M.STATUS_MISSING]).sum()) for a in arrays.values())
    prov = provenance.get(model)
    metrics = M.build_metrics(model, arrays, missing, n_boot, seed, dataset_version,
                              prov.version if prov else None, prov.mismatch if prov else False)
    metrics["template_spread"] = template_spread.spread(template_spread.merge(groups["templates"]))
    breakdown = M.build_breakdown(arrays)
    rejects = groups["rejects"]
    breakdown["rejected"] = outputs.reject_counts(rejects)
    folder = join_path(output_dir, outputs.model_dirname(model))
    write_text(join_path(folder, "metrics.json"), outputs.json_text(metrics), "application/json")
    write_text(join_path(folder, "breakdown.json"), outputs.json_text(breakdown), "application/json")
    write_text(join_path(folder, "rejected.jsonl"), outputs.rejects_jsonl(rejects), "application/jsonl")
    return {"model": model, "dir": outputs.model_dirname(model), "box_format": formats.for_model(model).spec,
            "metrics": metrics, "breakdown": breakdown}


def rows_by_bucket(element):
    """The readers' `tagged` output -> (bucket, (tag, Arrow IPC bytes)) of their test and prediction rows."""
    tag, value = element
    if tag in (ReadDialogueFileFn.ROWS, ReadPredictionFileFn.ROWS):
        bucket, part = value
        yield bucket, (tag, part)


def by_model(element, tag, kind):
    """A `tagged` pair of `tag` whose value is (model, value) -> (model, (kind, value)), for
    finalize_model; rejects of no model are left to the report (of_no_model)."""
    if element[0] == tag and element[1][0] is not None:
        model, value = element[1]
        yield model, (kind, value)


def reject_records(element):
    if element[0] == ScoreBucketFn.REJECTS:
        yield element[1][1]


def of_no_model(element):
    if element[0] == ScoreBucketFn.REJECTS and element[1][0] is None:
        yield element[1][1]


class WriteReportsFn(beam.DoFn):
    """[model entries] -> leaderboard.json, leaderboard.md, rejected.jsonl (rejects of no model),
    report.md and report.html in OUT, with the samples section (from the shown ids' test rows and
    results) and the dataset section (a stats.json document) when there are any.

    Its main input: the list of `tagged` pairs (GatherTagged): ENTRY, a model's entry (finalize_model);
    SHOWN, a shown id's result (ScoreBucketFn); ORPHAN, a reject of no model; STALE_REMOVED, the
    number of stale sample-line files removed (only so that this step runs after that one)."""

    ENTRY, SHOWN, ORPHAN, STALE_REMOVED = "entry", ScoreBucketFn.SHOWN, "orphan", "stale_removed"

    def __init__(self, output_dir, stats=None, image_root=None, image_max_side=256, samples_per_task=0,
                 context=None, charts=True):
        self.output_dir, self.stats, self.context = output_dir, stats, context  # context: the report's header
        self.charts = charts
        self.image_root, self.image_max_side, self.samples_per_task = image_root, image_max_side, samples_per_task

    def process(self, gathered, shown_order=(), shown_rows=()):
        entries = sorted((v for t, v in gathered if t == self.ENTRY), key=lambda e: e["model"])
        shown_results = [v for t, v in gathered if t == self.SHOWN]
        orphan_rejects = [v for t, v in gathered if t == self.ORPHAN]
        board = outputs.leaderboard(entries)
        write_text(join_path(self.output_dir, "leaderboard.json"), outputs.json_text(board), "application/json")
        write_text(join_path(self.output_dir, "leaderboard.md"), score_report.render_leaderboard_md(board))
        write_text(join_path(self.output_dir, "rejected.jsonl"), outputs.rejects_jsonl(list(orphan_rejects)),
                   "application/jsonl")
        sections = []
        if self.samples_per_task:
            rows = {}
            for row in sorted(shown_rows, key=lambda r: r["id"]):
                rows.setdefault(row["id"], row)
            results = {(model, sid): r for sid, model, r in shown_results}
            sections.append(sample_sections.samples_section(
                [i for i in shown_order if i in rows], rows, [r["model"] for r in board], results,
                image_root=self.image_root, max_side=self.image_max_side))
        if self.stats:
            sections.append(sample_sections.dataset_section(self.stats))
        models = [e["metrics"] for e in entries]
        breakdowns = {e["model"]: e["breakdown"] for e in entries}
        score_report.write_reports(self.output_dir, models, breakdowns, sections,
                                   unattributed_rejects=len(orphan_rejects), context=self.context, charts=self.charts)
        yield board


class ScorePredictions(beam.PTransform):
    """The whole scorer: pbegin -> {'metrics': (model, metrics.json dict), 'breakdowns': (model,
    breakdown.json dict), 'rejects': reject records, 'leaderboard': the leaderboard list}.

    `inputs` is a ScoreInputs (score_inputs.plan_score_inputs: files listed, scanned and checked at
    launch), `settings` a ScoreSettings."""

    def __init__(self, inputs: ScoreInputs, settings: ScoreSettings, label: Optional[str] = None):
        super().__init__(label)
        self.inputs, self.settings = inputs, settings

    def expand(self, pbegin):
        s, inp = self.settings, self.inputs
        nb, per_task = s.num_buckets, s.samples_per_task
        files = [f.path for f in inp.prediction_files]
        # the samples_<task>.jsonl files carry the question and reference answer of every row
        test_columns = DIALOGUE_COLUMNS + ("template_id",) + (("question", "answer") if s.write_samples else ())
        read_tests = (pbegin
                      | "TestFiles" >> beam.Create(list(inp.test_files))
                      | "ReadTests" >> beam.ParDo(ReadDialogueFileFn(s.split, nb, per_task, columns=test_columns)))
        # side inputs below are computed from reading the test files only (steps.py); [] when no
        # sample is shown, what choosing from no candidates gives
        shown = beam.pvalue.AsSingleton(
            read_tests
            | "Candidates" >> select_keyed(ReadDialogueFileFn.CANDIDATES)
            | "ChooseShownSamples" >> beam.CombinePerKey(merge_candidates, per_task)
            | "InDisplayOrder" >> beam.MapTuple(lambda _, candidates: choose_from_candidates(candidates, per_task)),
            default_value=[])
        preds = (pbegin
                 | "PredictionFiles" >> beam.Create(files)
                 | "ReadPredictions" >> beam.ParDo(ReadPredictionFileFn(
                     nb, {f.path: model_of_malformed(f) for f in inp.prediction_files})))
        scored = (
            (read_tests, preds)
            | "AllRows" >> beam.Flatten()
            | "RowsByBucket" >> beam.FlatMap(rows_by_bucket)
            | "JoinOnIdBucket" >> beam.GroupByKey()
            | "ScoreBuckets" >> beam.ParDo(
                ScoreBucketFn(s.output_dir, inp.formats, nb, inp.models, write_samples=s.write_samples), shown=shown)
        )
        stale_removed = (
            scored
            | "Lines" >> select(ScoreBucketFn.LINES)
            | "GroupSampleLines" >> beam.GroupByKey()
            | "WriteSampleLines" >> beam.Map(write_sample_lines, s.output_dir)
            | "WrittenSampleLines" >> Gather()
            | "RemoveStaleSampleLines" >> beam.Map(remove_stale_sample_lines, s.output_dir))
        # the rejects of both steps: ScoreBucketFn's and ReadPredictionFileFn's (one tag)
        with_rejects = (scored, preds) | "WithRejects" >> beam.Flatten()
        entries = (
            (scored
             | "Arrays" >> select(ScoreBucketFn.ARRAYS)
             | "CombinePerTask" >> beam.CombinePerKey(concat_task_arrays)  # one combine per (model, task)
             | "TasksByModel" >> beam.MapTuple(lambda key, arrays: (key[0], ("tasks", arrays))),
             scored | "TemplatesByModel" >> beam.FlatMap(by_model, ScoreBucketFn.TEMPLATES, "templates"),
             with_rejects | "RejectsByModel" >> beam.FlatMap(by_model, ScoreBucketFn.REJECTS, "rejects"))
            | "ModelParts" >> beam.Flatten()
            | "ByModel" >> beam.GroupByKey()
            | "FinalizeModels" >> beam.Map(finalize_model, s.output_dir, s.bootstrap, s.seed, inp.formats,
                                           inp.dataset_version, inp.provenance)
        )
        shown_rows = (pbegin
                      | "ShownTestFiles" >> beam.Create(list(inp.test_files) if per_task else [])
                      | "ReadShownRows" >> beam.FlatMap(read_shown_rows, s.split, shown))
        outputs = {
            "metrics": entries | "MetricsOnly" >> beam.Map(lambda e: (e["model"], e["metrics"])),
            "breakdowns": entries | "BreakdownOnly" >> beam.Map(lambda e: (e["model"], e["breakdown"])),
            "rejects": with_rejects | "RejectRecords" >> beam.FlatMap(reject_records),
        }
        # applied last, and depends on every step that writes files (steps.py)
        outputs["leaderboard"] = (
            {WriteReportsFn.ENTRY: entries, WriteReportsFn.SHOWN: scored,
             WriteReportsFn.ORPHAN: with_rejects | "OfNoModel" >> beam.FlatMap(of_no_model),
             WriteReportsFn.STALE_REMOVED: stale_removed}
            | "AllModels" >> GatherTagged(select=[WriteReportsFn.SHOWN])
            | "WriteReports" >> beam.ParDo(
                WriteReportsFn(s.output_dir, inp.stats, inp.image_root, s.image_max_side, per_task,
                               inp.report_context, charts=s.plots != "none"),
                shown_order=shown, shown_rows=beam.pvalue.AsList(shown_rows)))
        return outputs
