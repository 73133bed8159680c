"""Columnar scoring of one id bucket (docs/rules.md, scoring): every task's samples at once, over
Arrow columns and numpy arrays. Pure code (pyarrow, numpy, scipy), no Beam.

The rules are those of sarchat.transforms.score.metrics, whose per-sample `score_sample` stays the
reference (the lmms-eval hooks call it; tests/test_score_columnar.py checks on random inputs that
this module gives the same statuses, TP / FP / FN, IoUs, samples rows and jsonl lines). Here:

- each distinct answer of a (model, task) is parsed once (through the model's parsing.ParseMemo,
  keyed as parse_answer needs: the text, plus the image size for the box tasks), and what the
  scorer needs from a parse (its attribute codes, boxes, labels, the JSON of its `parsed` field)
  is derived once per distinct parse and taken per sample;
- each task's rows are scored by its module's `score_columns` (sarchat.transforms.tasks, with
  column_scoring's set counts and box matching over all rows at once);
- the samples Parquet rows and the samples_<task>.jsonl lines are assembled from the scored
  columns with Arrow kernels (take, binary_join_element_wise), never a dict per sample.
"""
import functools
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms.arrow_text import json_strings
from sarchat.transforms.score import breakdowns as B
from sarchat.transforms.score import metrics as M
from sarchat.transforms.score import parsing
from sarchat.transforms.tasks import ANSWER_BOX_TASKS, BY_ID, SPECS, TASK_COLUMNS, TASKS
from sarchat.transforms.tasks.column_scoring import (ScoreMatrices, TaskTruth, parse_items, row_items, table_column,
                                                     to_numpy)

# OUT/<model>/samples/*.parquet: one row per (model, test sample), its status, what the parser found,
# the IoUs and TP / FP / FN per Table 3 column (the report's samples section marks answers from them)
SAMPLE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("task", pa.string()),
    ("subset", pa.string()),
    ("model", pa.string()),
    ("status", pa.string()),          # ok | unparseable | missing | inference_error
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
STATUS_NAMES = tuple(sorted(M.STATUS_CODES, key=M.STATUS_CODES.__getitem__))
_OK, _UNPARSEABLE = M.STATUS_CODES[M.STATUS_OK], M.STATUS_CODES[M.STATUS_UNPARSEABLE]
_MISSING, _ERROR = M.STATUS_CODES[M.STATUS_MISSING], M.STATUS_CODES[M.STATUS_INFERENCE_ERROR]
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False)


# ---------------------------------------------------------------------------------------------
# JSON text of columns (what json.dumps(..., ensure_ascii=False) writes)

def pred_labels(task, parsed):
    """What the `pred_labels` column holds: the task module's pred_labels of the parser's dict."""
    return BY_ID[task].pred_labels(parsed) if parsed else []


def json_strings_distinct(arr):
    """json_strings of an array with few distinct values: each distinct value escaped once."""
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    return json_strings(enc.dictionary).take(enc.indices)


def json_floats(values, valid=None):
    """JSON numbers of float values (float repr), "null" where not valid."""
    values = np.asarray(values, dtype=np.float64)
    texts = [repr(v) for v in values.tolist()]
    arr = pa.array(texts, pa.string())
    if valid is not None:
        arr = pc.if_else(pa.array(valid), arr, "null")
    return arr


def json_lists(offsets, items):
    """'[a, b]' per row from the rows' offsets into a string array of item texts."""
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items)
    return pc.binary_join_element_wise("[", pc.binary_join(lists, ", "), "]", "")


def _join(*parts):
    return pc.binary_join_element_wise(*parts, "")


# ---------------------------------------------------------------------------------------------
# Truth of one task's rows (shared by every model of the bucket)


class BucketTruth(TaskTruth):
    """A task's truth (column_scoring.TaskTruth) with the JSON of the columns its jsonl lines repeat."""

    @functools.cached_property
    def json_columns(self):
        """JSON literals of the columns every model's jsonl lines repeat: id, subset, question,
        reference answer, category, size."""
        return {"id": json_strings(table_column(self.table, "id")), "subset": json_strings_distinct(self.subset_raw),
                "question": json_strings(table_column(self.table, "question")),
                "reference": json_strings(table_column(self.table, "answer")),
                "category": json_strings_distinct(self.category), "size": json_strings_distinct(self.size)}


# ---------------------------------------------------------------------------------------------
# One (model, task): parse the distinct answers, score every row


class TaskScores:
    """A (model, task)'s results for the task's rows: status codes, the distinct parses and each
    row's index into them (-1: nothing parsed), TP / FP / FN / in-column matrices over
    TASK_COLUMNS[task], per-truth-box IoUs (flat, offsets by truth.n_boxes)."""

    def __init__(self, truth, status, parses, parse_index, tp, fp, fn, mask, ious):
        self.truth, self.status, self.parses, self.parse_index = truth, status, parses, parse_index
        self.tp, self.fp, self.fn, self.mask, self.ious = tp, fp, fn, mask, ious

    def task_arrays(self):
        t = self.truth
        return M.TaskArrays(
            t.task, to_numpy(table_column(t.table, "id")).astype(str), self.status,
            to_numpy(pc.fill_null(t.category, "")).astype(str), to_numpy(pc.fill_null(t.size, "")).astype(str),
            self.tp, self.fp, self.fn, self.mask, units=self.breakdown_units())

    def breakdown_units(self):
        """The per-sample counts the grounding and classify breakdowns sum (breakdowns.py); None
        for the other tasks."""
        t = self.truth
        if t.task not in B.UNIT_WIDTH:
            return None
        uok = np.where(self.status == _OK, self.parse_index, -1)
        field = "categories" if t.task == "classify" else "box_categories"
        starts, lengths, flat = parse_items(self.parses, lambda p: B.category_codes(p.get(field) or []).tolist())
        prow, pcat = row_items(uok, starts, lengths, flat)
        cats = t.categories
        flat_cats = _category_codes(cats.flat)
        if t.task == "classify":
            return B.classify_units(t.n, cats.rows, flat_cats, prow, pcat)
        # grounding: a truth box's category as the scorer's (tasks/grounding.py)
        rows, box_cat = t.boxes.rows, t.box_categories(flat_cats)
        width = to_numpy(pc.fill_null(table_column(t.table, "width", pa.int64()), 0)).astype(np.float64)
        height = to_numpy(pc.fill_null(table_column(t.table, "height", pa.int64()), 0)).astype(np.float64)
        box_size = B.size_codes(t.gt_box_array(), width[rows], height[rows])
        found = self.ious >= M.GROUNDING_IOU
        return B.grounding_units(t.n, rows, box_cat, box_size, found, prow, pcat)


def _category_codes(arr):
    """breakdowns.category_codes of an Arrow string array, each distinct value looked up once."""
    enc = arr.dictionary_encode(null_encoding="encode")
    return B.category_codes(enc.dictionary.to_pylist())[to_numpy(enc.indices).astype(np.int64)]


def _parse_rows(truth, texts, status, memo, box_format):
    """Parse each distinct answer of the rows that have one -> (parses, parse index per row)."""
    task, n = truth.task, truth.n
    index = np.full(n, -1, dtype=np.int64)
    todo = np.nonzero((status != _MISSING) & (status != _ERROR))[0]
    if not len(todo):
        return [], index
    enc = pc.dictionary_encode(pc.fill_null(texts.take(pa.array(todo)), ""))
    distinct = enc.dictionary.to_pylist()
    if task in parsing.TEXT_ONLY_TASKS:  # the box format and image size do not matter
        w = h = [None] * len(todo)
    else:
        w = table_column(truth.table, "width", pa.int64()).take(pa.array(todo)).to_pylist()
        h = table_column(truth.table, "height", pa.int64()).take(pa.array(todo)).to_pylist()
    keys = {}  # (text, width, height) -> its parse's index, in order of first use
    index[todo] = [keys.setdefault(key, len(keys)) for key in zip(to_numpy(enc.indices).tolist(), w, h)]
    return [memo(task, distinct[t], box_format, wi, hi) for t, wi, hi in keys], index


def score_task(truth, texts, errors, has_pred, memo, box_format):
    """TaskScores of one model on one task's rows. texts / errors: the prediction text and error
    per row (Arrow, null where none); has_pred: whether the row has a prediction."""
    task, n = truth.task, truth.n
    status = np.full(n, _OK, dtype=np.int8)
    status[~has_pred] = _MISSING
    err = to_numpy(pc.fill_null(pc.greater(pc.utf8_length(pc.fill_null(errors, "")), 0), False))
    status[has_pred & err] = _ERROR
    parses, index = _parse_rows(truth, texts, status, memo, box_format)
    parse_ok = np.array([p["status"] == parsing.OK for p in parses], dtype=bool)
    if parses:
        status[(index >= 0) & ~parse_ok[np.maximum(index, 0)]] = _UNPARSEABLE
    ok = status == _OK
    uok = np.where(ok, index, -1)
    out = ScoreMatrices(n, len(TASK_COLUMNS[task]), int(truth.n_boxes.sum()))
    BY_ID[task].score_columns(truth, parses, uok, ok, out)
    return TaskScores(truth, status, parses, index, out.tp, out.fp, out.fn, out.mask, out.ious)


# ---------------------------------------------------------------------------------------------
# A bucket: join the test rows and predictions on id, score every (model, task)


class BucketJoin:
    """The test rows of a bucket (known tasks, first row of each id, sorted by id) and its
    prediction rows (PREDICTION_WIRE_SCHEMA), joined on id per model.

    rejects: the prediction rows not scored, as reject records (missing_id, unknown_id, and
    duplicate_id for all but the first by (file, row) of a model's id); models: the models with a
    scored row here; pred_index(model): per test row the prediction row scored for it, or -1."""

    def __init__(self, test_tables, pred_tables):
        tests = _concat(test_tables)
        n_in = tests.num_rows
        tests = tests.filter(pc.fill_null(pc.is_in(table_column(tests, "task"), value_set=pa.array(TASKS)), False))
        self.unknown_task = n_in - tests.num_rows
        if tests.num_rows and not pa.types.is_string(tests.schema.field("id").type):
            tests = tests.set_column(tests.schema.get_field_index("id"), "id", pc.cast(tests.column("id"), pa.string()))
        order = pc.sort_indices(tests, [("id", "ascending")]) if tests.num_rows else pa.array([], pa.int64())
        ids = table_column(tests, "id").take(order)
        first = np.ones(len(ids), dtype=bool)
        if len(ids) > 1:
            first[1:] = to_numpy(pc.fill_null(pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)), True))
        self.tests = tests.take(pa.array(to_numpy(order)[first]))
        self.duplicate_tests = len(ids) - int(first.sum())
        self.ids = table_column(self.tests, "id")
        self.rejects = []
        self._index = {}
        self.preds = preds = _concat(pred_tables)
        if not preds.num_rows:
            self.models = []
            return
        pid = table_column(preds, "id")
        pos = pc.index_in(pid, value_set=self.ids)
        missing = to_numpy(pc.is_null(pid))
        unknown = ~missing & to_numpy(pc.is_null(pos))
        self._reject(preds, missing, "missing_id")
        self._reject(preds, unknown, "unknown_id")
        known = np.nonzero(~missing & ~unknown)[0]
        valid = preds.take(pa.array(known)).append_column("_pos", pos.take(pa.array(known)))
        valid = valid.append_column("_file0", pc.fill_null(table_column(valid, "_file"), ""))
        valid = valid.append_column("_row0", pc.fill_null(table_column(valid, "_row", pa.int64()), 0))
        order = pc.sort_indices(valid, [("model", "ascending"), ("_pos", "ascending"), ("_file0", "ascending"),
                                        ("_row0", "ascending")])
        valid = valid.take(order)
        model, vpos = table_column(valid, "model"), to_numpy(table_column(valid, "_pos", pa.int64())).astype(np.int64)
        lead = np.ones(valid.num_rows, dtype=bool)
        if valid.num_rows > 1:
            same_model = to_numpy(pc.fill_null(pc.equal(model.slice(1), model.slice(0, valid.num_rows - 1)), False))
            lead[1:] = ~(same_model & (vpos[1:] == vpos[:-1]))
        self._reject(valid, ~lead, "duplicate_id")
        self.preds = valid.filter(pa.array(lead))
        models = table_column(self.preds, "model")
        self.models = sorted(set(pc.unique(models).to_pylist()))
        self._model_col, self._pos = models, to_numpy(table_column(self.preds, "_pos", pa.int64())).astype(np.int64)

    def _reject(self, table, mask, reason):
        if mask.any():
            part = table.filter(pa.array(mask)).select(["model", "id", "_file", "_row"]).to_pylist()
            self.rejects += [{"model": r["model"], "id": r["id"], "reason": reason, "file": r["_file"],
                              "row": r["_row"]} for r in part]

    def pred_index(self, model):
        """Per test row, the index of its prediction row of `model` in self.preds, or -1."""
        out = np.full(self.tests.num_rows, -1, dtype=np.int64)
        if self.models and model in self.models:
            rows = np.nonzero(to_numpy(pc.fill_null(pc.equal(self._model_col, model), False)))[0]
            out[self._pos[rows]] = rows
        return out


def _concat(tables):
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({"id": pa.array([], pa.string())})
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")


def _take(arr, index):
    """arr[index] with null where index is -1."""
    return arr.take(pa.array(index, pa.int64(), mask=index < 0))


class ModelTask:
    """One model's results on one task's rows of a bucket, with the prediction columns they need."""

    def __init__(self, model, scores, prediction, error, latency):
        self.model, self.scores = model, scores
        self.prediction, self.error, self.latency = prediction, error, latency

    @property
    def truth(self):
        return self.scores.truth

    @functools.cached_property
    def _parse_columns(self):
        """Per row: pred_count, pred_boxes, pred_box_categories, pred_labels and the JSON of the
        jsonl `parsed` field, taken from the distinct parses (the last entry: nothing parsed)."""
        sc, task = self.scores, self.truth.task
        parses = sc.parses
        ext = pa.array(np.where(sc.parse_index >= 0, sc.parse_index, len(parses)))
        counts = [p.get("count") for p in parses] + [None]
        boxes = [p.get("boxes") or [] for p in parses] + [[]]
        box_cats = [p.get("box_categories") for p in parses] + [None]
        labels = [pred_labels(task, p) for p in parses] + [[]]
        parsed_json = [_ENCODER.encode({"count": c, "boxes": b, "box_categories": bc, "labels": lb})
                       for c, b, bc, lb in zip(counts, boxes, box_cats, labels)]
        f = SAMPLE_SCHEMA.field
        return (pa.array(counts, f("pred_count").type).take(ext), pa.array(boxes, f("pred_boxes").type).take(ext),
                pa.array(box_cats, f("pred_box_categories").type).take(ext),
                pa.array(labels, f("pred_labels").type).take(ext), pa.array(parsed_json, pa.string()).take(ext))

    def _score_lists(self):
        sc = self.scores
        counts = sc.mask.sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        names = np.array(TASK_COLUMNS[self.truth.task], dtype=object)[np.nonzero(sc.mask)[1]]
        return offsets, pa.array(names, pa.string()), sc.tp[sc.mask], sc.fp[sc.mask], sc.fn[sc.mask]

    def _iou_offsets(self):
        t = self.truth
        lengths = t.n_boxes if t.task in ANSWER_BOX_TASKS else np.zeros(t.n, dtype=np.int64)
        return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)

    def status_names(self):
        return pa.array(STATUS_NAMES, pa.string()).take(pa.array(self.scores.status.astype(np.int64)))

    def sample_table(self):
        """The rows of OUT/<model>/samples/*.parquet (SAMPLE_SCHEMA) for these samples."""
        t, n = self.truth, self.truth.n
        count, boxes, box_cats, labels, _ = self._parse_columns
        offsets, names, tp, fp, fn = self._score_lists()
        ious = self.scores.ious if t.task in ANSWER_BOX_TASKS else np.zeros(0)
        i32 = lambda v: pa.ListArray.from_arrays(pa.array(offsets), pa.array(v, pa.int32()))  # noqa: E731
        cols = [table_column(t.table, "id"), pa.array([t.task] * n, pa.string()), pc.cast(t.subset_raw, pa.string()),
                pa.array([self.model] * n, pa.string()), self.status_names(), self.error, self.latency,
                t.category, t.size, count, boxes, box_cats, labels,
                pa.ListArray.from_arrays(pa.array(self._iou_offsets()), pa.array(ious, pa.float64())),
                pa.ListArray.from_arrays(pa.array(offsets), names), i32(tp), i32(fp), i32(fn)]
        return pa.Table.from_arrays(cols, schema=SAMPLE_SCHEMA)

    def lines(self):
        """The samples_<task>.jsonl line of every row (tests/score_reference.py's sample_line)."""
        t, n = self.truth, self.truth.n
        if not n:
            return pa.array([], pa.string())
        *_, parsed_json = self._parse_columns
        offsets, names, tp, fp, fn = self._score_lists()
        entries = _join('"', names, '": {"tp": ', pc.cast(pa.array(tp), pa.string()), ', "fp": ',
                        pc.cast(pa.array(fp), pa.string()), ', "fn": ', pc.cast(pa.array(fn), pa.string()), "}")
        scores = pc.binary_join_element_wise(
            "{", pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), entries), ", "), "}", "")
        ious = self.scores.ious if t.task in ANSWER_BOX_TASKS else np.zeros(0)
        ious_json = json_lists(self._iou_offsets(), json_floats(ious))
        lat = to_numpy(pc.fill_null(pc.cast(self.latency, pa.float64()), float("nan"))).astype(np.float64)
        latency = json_floats(np.where(np.isfinite(lat), lat, 0.0), np.isfinite(lat))
        dumps = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
        tj = t.json_columns
        status = pa.array([dumps(v) for v in STATUS_NAMES], pa.string()).take(
            pa.array(self.scores.status.astype(np.int64)))
        return _join(
            '{"id": ', tj["id"], ', "task": ' + dumps(t.task) + ', "subset": ', tj["subset"],
            ', "model": ' + dumps(self.model) + ', "question": ', tj["question"], ', "reference": ', tj["reference"],
            ', "response": ', json_strings_distinct(self.prediction), ', "status": ', status,
            ', "error": ', json_strings_distinct(self.error), ', "latency_s": ', latency, ', "category": ',
            tj["category"], ', "size": ', tj["size"], ', "parsed": ', parsed_json,
            ', "ious": ', ious_json, ', "scores": ', scores, "}\n")


def task_rows(tests):
    """{task: ascending positions of its rows} over a bucket's sorted test rows."""
    tasks = to_numpy(table_column(tests, "task")).astype(object)
    return {t: np.nonzero(tasks == t)[0] for t in TASKS}


def score_bucket(join, models, formats, memo_of):
    """Score every (model, task) of a joined bucket -> [(model, [ModelTask per task with rows])],
    models in sorted order. memo_of(model): that model's parsing.ParseMemo."""
    positions = task_rows(join.tests)
    truths = {t: BucketTruth(SPECS[t], join.tests.take(pa.array(pos)).combine_chunks()) for t, pos in positions.items()
              if len(pos)}
    out = []
    for model in sorted(set(models) | set(join.models)):
        index = join.pred_index(model)
        fmt, memo = formats.for_model(model), memo_of(model)
        parts = []
        for task, truth in truths.items():
            idx = index[positions[task]]
            prediction, error = (_take(table_column(join.preds, c), idx) for c in ("prediction", "error"))
            latency = _take(table_column(join.preds, "latency_s", pa.float64()), idx)
            scores = score_task(truth, prediction, error, idx >= 0, memo, fmt)
            parts.append(ModelTask(model, scores, prediction, error, latency))
        out.append((model, parts))
    return out


def model_sample_table(parts):
    """One model's samples table of a bucket, rows in id order (the tasks' rows interleaved)."""
    tables = [p.sample_table() for p in parts]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ids = table_column(table, "id")
    return table.take(pc.sort_indices(ids)).combine_chunks()


def merged_lines(tables):
    """[(id, line) tables of one (model, task), one per bucket] -> the file's bytes, lines sorted by id."""
    table = _concat([t for t in tables if t.num_rows])
    if not table.num_rows or "line" not in table.column_names:
        return b""
    lines = pc.cast(table_column(table, "line"), pa.large_string()).take(pc.sort_indices(table_column(table, "id")))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[int(offsets[0]):int(offsets[-1])]
