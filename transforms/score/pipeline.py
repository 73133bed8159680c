"""Beam pieces of the scorer: readers, the bucketed join, one CombineFn per task, writers.

The pure work (parsing, matching, metric math) lives in sarchat.transforms.score.parsing and sarchat.transforms.score.metrics;
everything here is thin plumbing around it, batched so that a full test split (226,636 dialogues)
is a few hundred Beam elements rather than hundreds of thousands:

  test Parquet files --(record batches)--> (bucket, [test row, ...])  \\
                                                                   CoGroupByKey on the id bucket
  prediction files ----(record batches)--> (bucket, [prediction, ...]) /    |
                                                                       v
           ScoreBucketFn: join on id inside the bucket, score every (model, test row),
           write DIR/<model>/samples/samples-<bucket>-of-<n>.parquet, emit one TaskArrays
           per (model, task) and the rejected prediction rows
                                                                       |
           Partition by task -> CombinePerKey(TaskMetricsFn(task)) per task, keyed by model
                                                                       |
           FinalizeModelFn: metrics.json, breakdown.json, rejected.jsonl per model
                                                                       |
           WriteReportsFn: leaderboard.json, leaderboard.md, report.md, report.html

A bucket is crc32(id) mod num_buckets, so the join, the per-sample files and every output are the
same whatever the runner, worker count or bundle order. All files go through
apache_beam.io.filesystems.FileSystems, so gs:// paths work.
"""
import io
import json
import posixpath
import re
import zlib

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from sarchat.transforms.score import metrics as M
from sarchat.transforms.box_formats import BoxFormat, get_box_format
from sarchat.transforms.fileio import join_path, open_parquet, write_bytes, write_text  # noqa: F401 (re-exported for report.py)
from sarchat.transforms.schema import TASKS

NAMESPACE = "sarchat.score"

# Test-row fields the scorer reads (the rest of DIALOGUE_SCHEMA is not needed).
DIALOGUE_COLUMNS = ("id", "split", "task", "subset", "width", "height", "gt_boxes", "gt_categories",
                    "gt_cells", "gt_sizes", "gt_shapes", "gt_relations", "gt_count")
PREDICTION_COLUMNS = ("id", "prediction", "model", "error", "latency_s")

SAMPLE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("task", pa.string()),
    ("subset", pa.string()),
    ("model", pa.string()),
    ("status", pa.string()),          # ok | unparseable | missing
    ("error", pa.string()),           # the prediction's own error field, if any
    ("latency_s", pa.float64()),
    ("category", pa.string()),        # the sample's category (count, identify, refer)
    ("size", pa.string()),            # the sample's 5-level size (identify)
    ("pred_count", pa.int32()),       # count: the stated number
    ("pred_boxes", pa.list_(pa.list_(pa.float64()))),  # pixel xyxy as parsed
    ("pred_box_categories", pa.list_(pa.string())),    # grounding: category of each parsed box
    ("pred_labels", pa.list_(pa.string())),  # classify categories, identify attr=value,
                                             # describe size|category|cell, grounding cat1|rel|cat2, refer cells
    ("ious", pa.list_(pa.float64())),  # per truth box: IoU with its matched prediction (0 unmatched)
    ("columns", pa.list_(pa.string())),  # the Table-3 columns the sample counts in, and per column:
    ("tp", pa.list_(pa.int32())),        # true positives
    ("fp", pa.list_(pa.int32())),        # false positives
    ("fn", pa.list_(pa.int32())),        # false negatives
])
REJECT_FIELDS = ("model", "id", "reason", "file", "row")


def bucket_of(sample_id, num_buckets):
    return zlib.crc32(str(sample_id).encode("utf-8")) % num_buckets


def model_dirname(model):
    """A file-system-safe folder name for a model (a short hash keeps distinct names distinct)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"
    if safe != model:
        safe += "-" + format(zlib.crc32(model.encode("utf-8")), "08x")
    return safe




def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", "application/json")


# ---------------------------------------------------------------------------------------------
# Box formats per model


_BUILTIN_FORMATS = ("canonical", "qwen2-vl", "internvl")


def _is_builtin_spec(name):
    head, sep, _ = name.partition(":")
    return head == "json-bbox2d" or (head in _BUILTIN_FORMATS and not sep)


def resolve_box_format(name):
    """A BoxFormat for an --adapter value.

    Box format specs (canonical, qwen2-vl, internvl, json-bbox2d[:scale]) go to
    sarchat.transforms.box_formats.get_box_format; any other name (a model adapter such as 'qwen2.5-vl',
    'llava-1.5' or 'qwen2-vl:canonical') to sarchat.transforms.adapters.get_adapter(name).box_format when that
    module exists (imported lazily: the scorer does not need the inference stage installed).
    Raises ValueError for an unknown name.
    """
    if isinstance(name, BoxFormat):
        return name
    name = (name or "").strip()
    if _is_builtin_spec(name):
        return get_box_format(name)
    try:
        from sarchat.transforms import adapters
        getter = adapters.get_adapter
    except (ImportError, AttributeError):
        return get_box_format(name)  # raises ValueError naming the known formats
    try:
        fmt = getattr(getter(name), "box_format", None)
    except Exception as e:  # the registry's own error for an unknown name
        raise ValueError(f"unknown adapter or box format {name!r}: {e}") from None
    if isinstance(fmt, str):
        fmt = get_box_format(fmt)
    if not isinstance(fmt, BoxFormat):
        raise ValueError(f"adapter {name!r} declares no box_format")
    return fmt


class FormatChooser:
    """The box format of each model's answers. Precedence: an explicit '--adapter MODEL=NAME', then an
    explicit '--adapter NAME' for all models, then the `box_format` recorded in the manifest.json
    beside a prediction file by `sarchat infer` (`discovered`), then canonical."""

    def __init__(self, default=None, per_model=None, discovered=None):
        self.default = resolve_box_format(default) if default else None
        self.per_model = {m: resolve_box_format(a) for m, a in (per_model or {}).items()}
        self.discovered = {m: resolve_box_format(a) for m, a in (discovered or {}).items()}
        self.canonical = get_box_format("canonical")

    def for_model(self, model):
        if model in self.per_model:
            return self.per_model[model]
        if self.default is not None:
            return self.default
        return self.discovered.get(model, self.canonical)

    def describe(self, models):
        return {m: self.for_model(m).spec for m in sorted(models)}

    @classmethod
    def from_flags(cls, values, discovered=None):
        default, per_model = None, {}
        for v in values or []:
            if "=" in v:
                m, _, a = v.partition("=")
                per_model[m.strip()] = a.strip()
            else:
                default = v
        return cls(default, per_model, discovered)


def discover_run_formats(prediction_files):
    """{model: box format spec} from the manifest.json that `sarchat infer` writes beside its
    predictions (keys 'model' and 'box_format'); unreadable or absent manifests are ignored."""
    found = {}
    for folder in sorted({posixpath.dirname(f) for f in prediction_files}):
        path = join_path(folder, "manifest.json") if folder else "manifest.json"
        try:
            if not FileSystems.exists(path):
                continue
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                m = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and isinstance(m.get("model"), str) and isinstance(m.get("box_format"), str):
            try:
                get_box_format(m["box_format"])
            except ValueError:
                continue
            found[m["model"]] = m["box_format"]
    return found


# ---------------------------------------------------------------------------------------------
# Readers


def expand_inputs(patterns, suffixes):
    """Files behind each pattern: a file, a glob, or a folder (its files ending in a suffix)."""
    out = []
    for pattern in patterns:
        if not any(ch in pattern for ch in "*?[") and not pattern.endswith(suffixes) and not FileSystems.exists(pattern):
            raise FileNotFoundError(f"no such file or folder: {pattern}")
        globs = [pattern]
        if not any(ch in pattern for ch in "*?[") and not pattern.endswith(suffixes):
            # a folder: look one level down for the known suffixes
            globs = [join_path(pattern, "*" + s) for s in suffixes]
        found = []
        for g in globs:
            for result in FileSystems.match([g]):
                found.extend(m.path for m in result.metadata_list)
        if not found:
            raise FileNotFoundError(f"no input files match {pattern}")
        out.extend(sorted(set(found)))
    return out


def dataset_files(dataset, split):
    """The test Parquet shards of a generated dataset (DATASET/parquet/<split>/*.parquet), or the
    files `dataset` names directly when it is a .parquet file or a glob."""
    if dataset.endswith(".parquet") or any(ch in dataset for ch in "*?["):
        return expand_inputs([dataset], (".parquet",))
    return expand_inputs([join_path(dataset, "parquet", split, "*.parquet")], (".parquet",))


# Batches travel between stages as Arrow IPC bytes: one cheap bytes element per (batch, bucket)
# instead of thousands of nested dicts for Beam's coders to walk.
PREDICTION_WIRE_SCHEMA = pa.schema([("id", pa.string()), ("prediction", pa.string()), ("model", pa.string()),
                                    ("error", pa.string()), ("latency_s", pa.float64()),
                                    ("_file", pa.string()), ("_row", pa.int64())])


def to_ipc(table):
    """A pyarrow Table or RecordBatch -> Arrow IPC stream bytes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return sink.getvalue().to_pybytes()


def ipc_rows(data):
    """Arrow IPC stream bytes -> list of row dicts."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pylist()


def _bucket_parts(table, ids, num_buckets):
    """[(bucket, ipc bytes of the table's rows in that bucket)], buckets ascending."""
    groups = {}
    for i, sid in enumerate(ids):
        groups.setdefault(bucket_of(sid, num_buckets), []).append(i)
    return [(b, to_ipc(table.take(pa.array(idx, type=pa.int64())))) for b, idx in sorted(groups.items())]


class ReadDialogueFileFn(beam.DoFn):
    """A test Parquet shard -> (bucket, Arrow IPC bytes of its rows) per record batch and bucket."""

    def __init__(self, split, num_buckets, batch_size=65536):
        self.split, self.num_buckets, self.batch_size = split, num_buckets, batch_size
        self.rows = Metrics.counter(NAMESPACE, "test_rows")
        self.other_split = Metrics.counter(NAMESPACE, "rows_of_other_splits_skipped")

    def process(self, path):
        import pyarrow.compute as pc

        pf = open_parquet(path)
        names = set(pf.schema_arrow.names)
        cols = [c for c in DIALOGUE_COLUMNS if c in names]
        for batch in pf.iter_batches(batch_size=self.batch_size, columns=cols):
            table = pa.Table.from_batches([batch])
            if "split" in names:
                kept = table.filter(pc.fill_null(pc.equal(table.column("split"), self.split), False))
                self.other_split.inc(table.num_rows - kept.num_rows)
                table = kept
            self.rows.inc(table.num_rows)
            if table.num_rows:
                yield from _bucket_parts(table, table.column("id").to_pylist(), self.num_buckets)


def _model_of(row, path):
    m = row.get("model")
    if isinstance(m, str) and m.strip():
        return m.strip()
    stem = posixpath.basename(path)
    for suffix in (".gz", ".jsonl", ".json", ".parquet"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or "model"


def _clean_prediction(row, path, index):
    out = {k: row.get(k) for k in PREDICTION_COLUMNS}
    out["model"] = _model_of(row, path)
    pid = out["id"]
    out["id"] = None if pid is None else str(pid)
    if out["prediction"] is not None and not isinstance(out["prediction"], str):
        out["prediction"] = str(out["prediction"])
    if out["error"] is not None and not isinstance(out["error"], str):
        out["error"] = str(out["error"])
    try:
        out["latency_s"] = None if out["latency_s"] is None else float(out["latency_s"])
    except (TypeError, ValueError):
        out["latency_s"] = None
    out["_file"], out["_row"] = path, index
    return out


class ReadPredictionFileFn(beam.DoFn):
    """A prediction file (Parquet, or JSONL, optionally .gz) -> (bucket, [row, ...]) per batch,
    plus the model names (tag 'models') and unreadable lines (tag 'rejects')."""

    MODELS = "models"
    REJECTS = "rejects"

    def __init__(self, num_buckets, batch_size=65536):
        self.num_buckets, self.batch_size = num_buckets, batch_size
        self.rows = Metrics.counter(NAMESPACE, "prediction_rows")
        self.malformed = Metrics.counter(NAMESPACE, "rejected.malformed_row")

    def _emit(self, rows, models):
        self.rows.inc(len(rows))
        for r in rows:
            models.add(r["model"])
        table = pa.Table.from_pylist(rows, schema=PREDICTION_WIRE_SCHEMA)
        yield from _bucket_parts(table, [r["id"] for r in rows], self.num_buckets)

    def process(self, path):
        models = set()
        if path.endswith(".parquet"):
            pf = open_parquet(path)
            names = set(pf.schema_arrow.names)
            cols = [c for c in PREDICTION_COLUMNS if c in names]
            index = 0
            for batch in pf.iter_batches(batch_size=self.batch_size, columns=cols):
                rows = []
                for r in batch.to_pylist():
                    rows.append(_clean_prediction(r, path, index))
                    index += 1
                yield from self._emit(rows, models)
        else:
            rows = []
            with FileSystems.open(path) as raw:
                for index, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", errors="replace")):
                    if not line.strip():
                        continue
                    try:
                        r = json.loads(line)
                        if not isinstance(r, dict):
                            raise ValueError("not an object")
                    except ValueError:
                        self.malformed.inc()
                        model = _model_of({}, path)
                        models.add(model)
                        yield beam.pvalue.TaggedOutput(self.REJECTS, (model, {
                            "model": model, "id": None, "reason": "malformed_row", "file": path, "row": index}))
                        continue
                    rows.append(_clean_prediction(r, path, index))
                    if len(rows) >= self.batch_size:
                        yield from self._emit(rows, models)
                        rows = []
            if rows:
                yield from self._emit(rows, models)
        for m in sorted(models):
            yield beam.pvalue.TaggedOutput(self.MODELS, m)


def remove_stale_samples(output_dir, num_buckets):
    """Delete per-sample files of an earlier run with another bucket count in the same output
    folder (only files named like ours: OUT/*/samples/samples-NNNNN-of-MMMMM.parquet)."""
    keep = "-of-%05d.parquet" % num_buckets
    try:
        found = FileSystems.match([join_path(output_dir, "*", "samples", "samples-*-of-*.parquet")])
    except Exception:  # nothing there yet (some file systems raise on an empty match)
        return
    stale = [m.path for r in found for m in r.metadata_list
             if not m.path.endswith(keep) and re.search(r"samples-\d{5}-of-\d{5}\.parquet$", m.path)]
    if stale:
        FileSystems.delete(stale)


# ---------------------------------------------------------------------------------------------
# Scoring one bucket


def _pred_labels(task, parsed):
    if not parsed:
        return []
    if task == "classify":
        return list(parsed["categories"])
    if task == "identify":
        return ([f"category={c}" for c in parsed["categories"]] + [f"size={s}" for s in parsed["sizes"]]
                + [f"cell={c}" for c in parsed["cells"]] + [f"shape={s}" for s in parsed["shapes"]])
    if task == "describe":
        return ["|".join(x or "" for x in t) for t in parsed["triples"]]
    if task == "grounding":
        return ["|".join(t) for t in parsed["relations"]]
    if task == "refer":
        return list(parsed["cells"])
    return []


class SampleColumns:
    """Per-sample results gathered column by column, then one Arrow table of SAMPLE_SCHEMA."""

    def __init__(self):
        self.cols = {name: [] for name in SAMPLE_SCHEMA.names}

    def add(self, row, model, pred, result, category, size):
        c = self.cols
        parsed = result["parsed"] or {}
        task = row["task"]
        c["id"].append(row["id"])
        c["task"].append(task)
        c["subset"].append(row.get("subset"))
        c["model"].append(model)
        c["status"].append(result["status"])
        c["error"].append(pred.get("error") if pred else None)
        c["latency_s"].append(pred.get("latency_s") if pred else None)
        c["category"].append(category)
        c["size"].append(size)
        c["pred_count"].append(parsed.get("count"))
        c["pred_boxes"].append(parsed.get("boxes") or [])
        c["pred_box_categories"].append(parsed.get("box_categories"))
        c["pred_labels"].append(_pred_labels(task, parsed))
        c["ious"].append(result["ious"])
        scores = result["scores"]
        c["columns"].append(list(scores))
        c["tp"].append([v[0] for v in scores.values()])
        c["fp"].append([v[1] for v in scores.values()])
        c["fn"].append([v[2] for v in scores.values()])

    def __len__(self):
        return len(self.cols["id"])

    def to_table(self):
        return pa.table({name: pa.array(self.cols[name], type=SAMPLE_SCHEMA.field(name).type)
                         for name in SAMPLE_SCHEMA.names}, schema=SAMPLE_SCHEMA)


def sample_record(row, model, pred, result):
    """One row of SAMPLE_SCHEMA as a dict (for tests and ad-hoc use)."""
    sc = SampleColumns()
    sc.add(row, model, pred, result, M.sample_category(row), M.sample_size(row))
    return {k: v[0] for k, v in sc.cols.items()}


def _sort_key_pred(p):
    return (p.get("_file") or "", p.get("_row") or 0)


class ScoreBucketFn(beam.DoFn):
    """Join test rows and predictions of one bucket on id and score every (model, test row).

    - every test row gets a result for every model: scored, unparseable, or missing (a miss);
    - duplicate ids within a model: the first by (file, row) is scored, the others are rejected
      with reason 'duplicate_id'; ids that are not in the test split are rejected 'unknown_id';
      rows without an id 'missing_id';
    - writes the bucket's per-sample results per model, sorted by id, to
      OUT/<model>/samples/samples-<bucket>-of-<num_buckets>.parquet;
    - main output: (task, model, TaskArrays); tag 'rejects': (model, reject record).
    """

    REJECTS = "rejects"

    def __init__(self, output_dir, formats, num_buckets, write_samples=True):
        self.output_dir, self.formats, self.num_buckets = output_dir, formats, num_buckets
        self.write_samples = write_samples

    def setup(self):
        self.c_scored = Metrics.counter(NAMESPACE, "scored")
        self.c_missing = Metrics.counter(NAMESPACE, "missing_predictions")
        self.c_dup_test = Metrics.counter(NAMESPACE, "duplicate_test_ids_dropped")
        self.c_bad_task = Metrics.counter(NAMESPACE, "test_rows_with_unknown_task_dropped")
        self.c_reject = {r: Metrics.counter(NAMESPACE, f"rejected.{r}")
                         for r in ("duplicate_id", "unknown_id", "missing_id")}
        self.c_fail = {t: Metrics.counter(NAMESPACE, f"parse_failures.{t}") for t in TASKS}

    def _reject(self, pred, reason):
        self.c_reject[reason].inc()
        return beam.pvalue.TaggedOutput(self.REJECTS, (pred["model"], {
            "model": pred["model"], "id": pred.get("id"), "reason": reason,
            "file": pred.get("_file"), "row": pred.get("_row")}))

    def process(self, element, models):
        bucket, groups = element
        tests = {}
        for part in groups.get("d", []):
            for r in ipc_rows(part):
                if r.get("task") not in M.TASK_COLUMNS:
                    self.c_bad_task.inc()
                    continue
                if r["id"] in tests:
                    self.c_dup_test.inc()
                    continue
                tests[r["id"]] = r
        by_model = {}
        for part in groups.get("p", []):
            for p in ipc_rows(part):
                if p["id"] is None:
                    yield self._reject(p, "missing_id")
                elif p["id"] not in tests:
                    yield self._reject(p, "unknown_id")
                else:
                    by_model.setdefault(p["model"], {}).setdefault(p["id"], []).append(p)
        ids = sorted(tests)
        for model in sorted(set(models) | set(by_model)):
            preds = by_model.get(model, {})
            fmt = self.formats.for_model(model)
            records = SampleColumns()
            per_task = {t: [] for t in TASKS}
            for sid in ids:
                row = tests[sid]
                cands = preds.get(sid)
                pred = None
                if cands:
                    cands.sort(key=_sort_key_pred)
                    pred = cands[0]
                    for dup in cands[1:]:
                        yield self._reject(dup, "duplicate_id")
                if pred is None:
                    result = M.score_sample(row, None, fmt, missing=True)
                    self.c_missing.inc()
                else:
                    result = M.score_sample(row, pred.get("prediction"), fmt)
                    if result["status"] == M.STATUS_UNPARSEABLE:
                        self.c_fail[row["task"]].inc()
                category, size = M.sample_category(row), M.sample_size(row)
                per_task[row["task"]].append((sid, result, category, size))
                if self.write_samples:
                    records.add(row, model, pred, result, category, size)
            self.c_scored.inc(len(ids))
            if self.write_samples and len(records):
                table = records.to_table()
                buf = io.BytesIO()
                pq.write_table(table, buf, compression="zstd")
                path = join_path(self.output_dir, model_dirname(model), "samples",
                                 "samples-%05d-of-%05d.parquet" % (bucket, self.num_buckets))
                write_bytes(path, buf.getvalue())
            for task, results in per_task.items():
                if results:
                    yield task, model, M.arrays_from_results(task, results)


# ---------------------------------------------------------------------------------------------
# Aggregation


class TaskMetricsFn(beam.CombineFn):
    """Combine one task's per-bucket TaskArrays of a model into the task's summary.

    Output: {'task', 'arrays' (TaskArrays sorted by id, for the bootstrap), 'columns'
    ({column: accuracy or None}), 'n' ({column: samples}), 'score', 'samples',
    'parse_failures', 'missing'}. Sorting by id makes the result independent of bundle order.
    """

    def __init__(self, task):
        self.task = task

    def create_accumulator(self):
        return []

    def add_input(self, acc, arrays):
        acc.append(arrays)
        return acc

    def merge_accumulators(self, accs):
        return [a for acc in accs for a in acc]

    def compact(self, acc):
        return [M.TaskArrays.concat(self.task, acc)] if len(acc) > 1 else acc

    def extract_output(self, acc):
        arrays = M.TaskArrays.concat(self.task, acc).sorted()
        values, ns = arrays.column_values()
        return {
            "task": self.task, "arrays": arrays, "columns": values, "n": ns, "score": arrays.score(),
            "samples": len(arrays),
            "parse_failures": int((arrays.status == M.STATUS_CODES[M.STATUS_UNPARSEABLE]).sum()),
            "missing": int((arrays.status == M.STATUS_CODES[M.STATUS_MISSING]).sum()),
        }


class AggregateTasks(beam.PTransform):
    """(task, model, TaskArrays) -> (model, task summary), one CombinePerKey(TaskMetricsFn) per task."""

    def expand(self, pcoll):
        parts = pcoll | "ByTask" >> beam.Partition(lambda e, n: TASKS.index(e[0]), len(TASKS))
        outs = []
        for task, part in zip(TASKS, parts):
            outs.append(
                part
                | f"Key{task}" >> beam.Map(lambda e: (e[1], e[2]))
                | f"Combine{task}" >> beam.CombinePerKey(TaskMetricsFn(task))
            )
        return outs | "FlattenTasks" >> beam.Flatten()


class FinalizeModelFn(beam.DoFn):
    """(model, {'tasks': [summary...], 'rejects': [record...]}) -> metrics.json, breakdown.json and
    rejected.jsonl under OUT/<model>/; emits a dict with the model's metrics, breakdown, rejects."""

    def __init__(self, output_dir, n_boot, seed, formats=None):
        self.output_dir, self.n_boot, self.seed = output_dir, n_boot, seed
        self.formats = formats or FormatChooser()

    def process(self, element):
        model, groups = element
        summaries = {s["task"]: s for s in groups.get("tasks", [])}
        arrays = {t: s["arrays"] for t, s in summaries.items()}
        missing = sum(s["missing"] for s in summaries.values())
        metrics = M.build_metrics(model, arrays, missing, self.n_boot, self.seed)
        breakdown = M.build_breakdown(arrays)
        rejects = sorted(groups.get("rejects", []),
                         key=lambda r: (r["reason"], r.get("id") or "", r.get("file") or "", r.get("row") or 0))
        counts = {}
        for r in rejects:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        breakdown["rejected"] = dict(sorted(counts.items()))
        folder = join_path(self.output_dir, model_dirname(model))
        write_json(join_path(folder, "metrics.json"), metrics)
        write_json(join_path(folder, "breakdown.json"), breakdown)
        write_text(join_path(folder, "rejected.jsonl"),
                   "".join(json.dumps({k: r.get(k) for k in REJECT_FIELDS}) + "\n" for r in rejects),
                   "application/jsonl")
        yield {"model": model, "dir": model_dirname(model), "box_format": self.formats.for_model(model).spec,
               "metrics": metrics, "breakdown": breakdown}


def leaderboard(entries):
    """Models sorted by overall score (best first, ties by name)."""
    rows = []
    for e in entries:
        m = e["metrics"]
        rows.append({
            "model": m["model"], "dir": e.get("dir"), "box_format": e.get("box_format"),
            "overall": m["overall"], "overall_ci95": m["overall_ci95"],
            "overall_macro": m["overall_macro"], "tasks": m["tasks"],
            "parse_failures": sum(v["count"] for v in m["parse_failures"].values()),
            "missing_predictions": m["missing_predictions"],
            "rejected": sum(e.get("breakdown", {}).get("rejected", {}).values()),
        })
    rows.sort(key=lambda r: (-(r["overall"] if r["overall"] is not None else -1.0), r["model"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


class WriteReportsFn(beam.DoFn):
    """[model entries] -> leaderboard.json, leaderboard.md, report.md and report.html in OUT."""

    def __init__(self, output_dir):
        self.output_dir = output_dir

    def process(self, entries):
        from sarchat.report import score_report as report

        entries = sorted(entries, key=lambda e: e["model"])
        board = leaderboard(entries)
        write_json(join_path(self.output_dir, "leaderboard.json"), board)
        write_text(join_path(self.output_dir, "leaderboard.md"), report.render_leaderboard_md(board))
        models = [e["metrics"] for e in entries]
        breakdowns = {e["model"]: e["breakdown"] for e in entries}
        write_text(join_path(self.output_dir, "report.md"), report.render_markdown(models, breakdowns),
                   "text/markdown")
        write_text(join_path(self.output_dir, "report.html"), report.render_html(models, breakdowns),
                   "text/html")
        yield board
