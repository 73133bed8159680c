"""Per-sample scoring, aggregation and the bootstrap of docs/rules.md section 12. Pure functions, no Beam.

Per sample, every column of the sample's task yields true positives, false positives and false
negatives (TP, FP, FN); a column's accuracy is 100 * sum(TP) / sum(TP + FP + FN) over its samples
(the paper's Eq. 3). `count.only_count` fits the same mould with one unit per sample: TP=1 when the
stated count equals gt_count, FP=1 when another number is stated, FN=1 when none is, so the sum
formula gives "% of samples whose stated count is right".

Columns and their samples (paper's Table 3 order):

  count.only_count             count samples                      stated count == gt_count
  count.iou25 / count.iou50    count samples                      boxes, t = 0.25 / 0.5
  grounding.abstract_position  grounding samples with gt_relations (cat1, relation, cat2) triples as sets
  grounding.multi / .single    grounding, by subset               boxes matched within a category, t = 0.5
  identify.multi / .single     identify, by subset                attribute sets: category, size, cell,
                                                                  and shape when gt_shapes is non-empty
  refer.multi.iou25 / .iou50   refer, multi subset                boxes, t = 0.25 / 0.5
  refer.single.iou25 / .iou50  refer, single subset               boxes, t = 0.25 / 0.5
  describe                     describe                           (size, category, cell) multisets
  classify                     classify                           category sets

Each task's module (sarchat.transforms.tasks) scores its samples: `columns`, `score` and `miss`;
box matching is sarchat.transforms.box_match.

Aggregation: a column with no sample is null; task score = mean of its non-null columns (Eq. 5);
overall = task scores weighted by the task's sample count (Eq. 4) over tasks with a score;
overall_macro = their unweighted mean. The 95% interval is a seeded percentile bootstrap that
resamples samples with replacement within each task (task sizes stay fixed, as in Eq. 4).
"""
import numpy as np

from sarchat.transforms.categories import CATEGORIES
from sarchat.transforms.geometry import IDENTIFY_SIZES
from sarchat.transforms.score import breakdowns, parsing
from sarchat.transforms.tasks import ANSWER_BOX_TASKS, BREAKDOWN_TASKS, BY_ID, COLUMNS, SPECS, TASK_COLUMNS, TASKS  # noqa: F401
from sarchat.transforms.tasks.grounding import GROUNDING_IOU  # noqa: F401 (score_columns)

# Columns per task, their Table 3 order and the breakdown tasks are declared in the task modules.

STATUS_OK = "ok"
STATUS_UNPARSEABLE = "unparseable"
STATUS_MISSING = "missing"
STATUS_INFERENCE_ERROR = "inference_error"   # the prediction row carries an error: a miss, not a parse failure
STATUS_CODES = {STATUS_OK: 0, STATUS_UNPARSEABLE: 1, STATUS_MISSING: 2, STATUS_INFERENCE_ERROR: 3}


# ---------------------------------------------------------------------------------------------
# Per-sample scoring: the task module's score, miss and columns (sarchat.transforms.tasks)


def sample_columns(row):
    """The columns a test row counts in (depends on its task, subset and, for grounding, relations)."""
    return BY_ID[row["task"]].columns(row)


def _miss_result(row, status, parsed=None):
    """A miss (an unparseable answer, a missing prediction, an inference error): per column of the
    row, (TP, FP, FN) = (0, 0, what the truth holds in that column's unit)."""
    ious = [0.0] * len(row.get("gt_boxes") or []) if row["task"] in ANSWER_BOX_TASKS else []
    return {"status": status, "scores": BY_ID[row["task"]].miss(row), "ious": ious, "parsed": parsed}


def score_sample(row, prediction, box_format, missing=False, error=None, parse=parsing.parse_answer):
    """Score one test row against one prediction text.

    Returns {'status': 'ok' | 'unparseable' | 'missing' | 'inference_error', 'scores': {column:
    (TP, FP, FN)}, 'ious': [IoU per truth box, 0.0 unmatched] (box tasks), 'parsed': the parser's
    dict}. An unparseable or missing answer, or a prediction row whose `error` is non-empty (the
    model was never heard: whatever text it has is not scored), is a miss: TP = FP = 0 and FN = the
    truth size per column. `parse` is parsing.parse_answer or a parsing.ParseMemo of it.
    """
    if missing:
        return _miss_result(row, STATUS_MISSING)
    if error:
        return _miss_result(row, STATUS_INFERENCE_ERROR)
    parsed = parse(row["task"], prediction or "", box_format, row["width"], row["height"])
    if parsed["status"] != parsing.OK:
        return _miss_result(row, STATUS_UNPARSEABLE, parsed)
    scores, ious = BY_ID[row["task"]].score(row, parsed)  # the parse refused an unknown task
    return {"status": STATUS_OK, "scores": scores, "ious": ious, "parsed": parsed}


# ---------------------------------------------------------------------------------------------
# Aggregation


def column_accuracy(tp, fp, fn, n):
    """Eq. 3 in percent; None when the column has no sample, 100.0 when nothing was due or said."""
    if not n:
        return None
    den = tp + fp + fn
    return 100.0 if den == 0 else 100.0 * tp / den


def task_score(column_values):
    """Eq. 5: mean of the non-null column accuracies, None when all are null."""
    vals = [v for v in column_values if v is not None]
    return sum(vals) / len(vals) if vals else None


def overall_score(task_scores, task_n):
    """Eq. 4: task scores weighted by their sample counts (tasks without a score are left out)."""
    num = den = 0.0
    for t, s in task_scores.items():
        if s is not None and task_n.get(t):
            num += s * task_n[t]
            den += task_n[t]
    return num / den if den else None


def macro_score(task_scores):
    return task_score(task_scores.values())


class TaskArrays:
    """One task's per-sample results as arrays (rows sorted by id): the bootstrap's input.

    tp, fp, fn, mask have one column per entry of TASK_COLUMNS[task]; mask marks the columns a
    sample counts in. status is a STATUS_CODES value; category / size label the sample for the
    breakdowns (None when the task has no single category / size per sample). units: the per-sample
    counts the grounding and classify breakdowns sum (breakdowns.UNIT_WIDTH columns; none when
    the arrays were not built by the columnar scorer).
    """

    def __init__(self, task, ids, status, category, size, tp, fp, fn, mask, units=None):
        k = len(TASK_COLUMNS[task])
        # fixed-width unicode arrays (not object arrays): they pickle as one buffer between stages
        self.task, self.ids, self.status = task, np.asarray(ids, dtype=str), np.asarray(status, dtype=np.int8)
        self.category, self.size = _labels(category), _labels(size)
        self.tp, self.fp, self.fn = (np.asarray(a, dtype=np.int64).reshape(-1, k) for a in (tp, fp, fn))
        self.mask = np.asarray(mask, dtype=bool).reshape(-1, k)
        self.units = _units(units, len(self.ids))

    def __len__(self):
        return len(self.ids)

    @classmethod
    def empty(cls, task):
        return cls(task, [], [], [], [], [], [], [], [])

    @classmethod
    def concat(cls, task, parts):
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(task)
        if len(parts) == 1:
            return parts[0]
        widths = {p.units.shape[1] for p in parts}
        units = np.concatenate([p.units for p in parts]) if len(widths) == 1 else None
        return cls(task, *(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS), units=units)

    def sorted(self):
        return self.select(np.argsort(self.ids, kind="stable"))

    def select(self, rows):
        return TaskArrays(self.task, *(getattr(self, f)[rows] for f in _FIELDS), units=self.units[rows])

    def column_values(self):
        """{column: accuracy or None} and {column: n}."""
        values, ns = {}, {}
        tp, fp, fn, n = self.tp.sum(0), self.fp.sum(0), self.fn.sum(0), self.mask.sum(0)
        for j, col in enumerate(TASK_COLUMNS[self.task]):
            ns[col] = int(n[j])
            values[col] = column_accuracy(int(tp[j]), int(fp[j]), int(fn[j]), int(n[j]))
        return values, ns

    def score(self):
        values, _ = self.column_values()
        return task_score(values[c] for c in TASK_COLUMNS[self.task])


_FIELDS = ("ids", "status", "category", "size", "tp", "fp", "fn", "mask")


def _labels(values):
    """Sample labels as a str array, "" for None."""
    values = np.asarray(values)
    return values if values.dtype.kind == "U" else np.array(["" if v is None else v for v in values], dtype=str)


def _units(units, n):
    """The breakdown units as an (n, width) int64 matrix; width 0 when there are none."""
    if units is None:
        return np.zeros((n, 0), dtype=np.int64)
    units = np.asarray(units, dtype=np.int64)
    return units if units.ndim == 2 else units.reshape(n, -1)


def arrays_from_results(task, results):
    """TaskArrays from [(id, result of score_sample, category, size), ...] of one task."""
    index = {c: j for j, c in enumerate(TASK_COLUMNS[task])}
    counts = np.zeros((len(results), len(index), 4), dtype=np.int64)  # TP, FP, FN, in the column
    for i, (_, res, _, _) in enumerate(results):
        for col, tpfpfn in res["scores"].items():
            counts[i, index[col]] = (*tpfpfn, 1)
    return TaskArrays(task, [r[0] for r in results], [STATUS_CODES[r[1]["status"]] for r in results],
                      [r[2] for r in results], [r[3] for r in results], *(counts[:, :, j] for j in range(4)))


def _accuracies(num, den, m):
    """Vectorised column accuracy: NaN where no sample, 100 where nothing due, else 100*num/den."""
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(den > 0, 100.0 * num / np.where(den > 0, den, 1), 100.0)
    return np.where(m > 0, acc, np.nan)


def bootstrap_overall(task_arrays, n_boot, seed, chunk_elems=4_000_000):
    """Bootstrap replicates of (overall, overall_macro): arrays of length n_boot.

    Each replicate resamples every task's samples with replacement (same size), recomputes the
    column sums, the task scores and Eq. 4. Only a sample's (TP, FP, FN, in-column) profile matters
    to the sums, so the samples are collapsed to their distinct profiles and a replicate draws how
    many times each profile is picked from Multinomial(n, profile frequencies) -- the exact
    distribution of resampling n samples with replacement, at a cost independent of n.
    Deterministic for a given seed (profiles are sorted by np.unique; tasks in TASKS order).
    """
    rng = np.random.default_rng(seed)
    weighted = np.zeros(n_boot)
    weights = np.zeros(n_boot)
    macro_sum = np.zeros(n_boot)
    macro_n = np.zeros(n_boot)
    for task in TASKS:
        arr = task_arrays.get(task)
        if arr is None or not len(arr):
            continue
        n, k = len(arr), len(TASK_COLUMNS[task])
        mat = np.concatenate([arr.tp, arr.tp + arr.fp + arr.fn, arr.mask.astype(np.int64)], axis=1)
        profiles, counts = np.unique(mat, axis=0, return_counts=True)
        profiles = profiles.astype(np.float64)
        pvals = counts / float(n)
        sums = np.empty((n_boot, 3 * k))
        step = max(1, chunk_elems // len(profiles))
        for start in range(0, n_boot, step):
            b = min(step, n_boot - start)
            sums[start:start + b] = rng.multinomial(n, pvals, size=b).astype(np.float64) @ profiles
        acc = _accuracies(sums[:, :k], sums[:, k:2 * k], sums[:, 2 * k:])
        has = ~np.all(np.isnan(acc), axis=1)
        with np.errstate(invalid="ignore"):
            score = np.where(has, np.nanmean(np.where(has[:, None], acc, 0.0), axis=1), 0.0)
        weighted += np.where(has, score * n, 0.0)
        weights += np.where(has, n, 0)
        macro_sum += score
        macro_n += has
    with np.errstate(invalid="ignore", divide="ignore"):
        return weighted / weights, macro_sum / macro_n


def percentile_interval(values, level=95.0):
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return [None, None]
    lo, hi = np.percentile(values, [(100 - level) / 2, 100 - (100 - level) / 2])
    return [float(lo), float(hi)]


def round4(v, nd=4):
    return None if v is None else round(float(v), nd)


def _status_counts(arrays, status, n):
    k = int(np.sum(arrays.status == STATUS_CODES[status]))
    return {"count": k, "rate": round4(100.0 * k / n) if n else None}


def build_metrics(model, task_arrays, missing_predictions=0, n_boot=1000, seed=0, dataset_version=None,
                  predictions_dataset_version=None, dataset_version_mismatch=False):
    """metrics.json content for one model: the docs/rules.md section 12 keys, in its order, then two keys
    saying on which dataset version the predictions were made.

    task_arrays: {task: TaskArrays} (missing tasks count as empty).
      columns          {column: accuracy in percent or null}, paper order
      tasks            {task: mean of its non-null columns or null}
      overall          Eq. 4, weighted by task sample counts
      overall_macro    unweighted mean of the task scores
      overall_ci95     [lo, hi] seeded percentile bootstrap of `overall` ([null, null] if n_boot=0)
      n                {"columns": {column: samples}, "tasks": {task: samples}}
      parse_failures   {task: {"count": unparseable answers, "rate": percent of the task's samples}}
      inference_errors {task: {"count": prediction rows with an error, "rate": percent}} (misses too,
                       never counted as parse failures)
      missing_predictions  test samples without a prediction (scored as misses)
      dataset_version  the version of the dataset scored against (null: test rows given as files)
      predictions_dataset_version  the version the predictions record (null: they record none)
      dataset_version_mismatch     true when the two differ (scored anyway: --allow-version-mismatch)
    """
    arrays = {t: (task_arrays.get(t) or TaskArrays.empty(t)) for t in TASKS}
    columns, col_n = {}, {}
    for t in TASKS:
        v, n = arrays[t].column_values()
        columns.update(v)
        col_n.update(n)
    tasks = {t: task_score(columns[c] for c in TASK_COLUMNS[t]) for t in TASKS}
    task_n = {t: len(arrays[t]) for t in TASKS}
    overall = overall_score(tasks, task_n)
    if n_boot and overall is not None:
        reps, _ = bootstrap_overall(arrays, n_boot, seed)
        ci = percentile_interval(reps)
    else:
        ci = [None, None]
    return {
        "model": model,
        "columns": {c: round4(columns[c]) for c in COLUMNS},
        "tasks": {t: round4(tasks[t]) for t in TASKS},
        "overall": round4(overall),
        "overall_macro": round4(macro_score(tasks)),
        "overall_ci95": [round4(v) for v in ci],
        "n": {"columns": {c: col_n[c] for c in COLUMNS}, "tasks": task_n},
        "parse_failures": {t: _status_counts(arrays[t], STATUS_UNPARSEABLE, task_n[t]) for t in TASKS},
        "inference_errors": {t: _status_counts(arrays[t], STATUS_INFERENCE_ERROR, task_n[t]) for t in TASKS},
        "missing_predictions": int(missing_predictions),
        "dataset_version": dataset_version or None,
        "predictions_dataset_version": predictions_dataset_version or None,
        "dataset_version_mismatch": bool(dataset_version_mismatch),
    }


def build_breakdown(task_arrays):
    """Task scores per category (count, identify, refer: one category per sample; grounding and
    classify: per box and per label, see breakdowns.py) and identify scores per object size (the
    5 size words), plus per-task missing counts, grounding's box counts per category and size, and
    classify's per-class counts and confusion matrix (docs/scoring.md, "Breakdowns").

    {"by_category": {task: {category: score}}, "by_size": {"identify": {size: score}},
     "missing": {task: n}, "samples": {task: n},
     "grounding_boxes": {"by_category": {category: {...}}, "by_size": {size: {...}}},
     "classify_classes": {category: {...}}, "classify_confusion": {"truth", "predicted", "counts"}}
    The last three only when there are grounding / classify samples scored by the columnar scorer.
    """
    by_cat, by_size, missing, samples = {}, {}, {}, {}
    extra = {}
    for t in TASKS:
        arr = task_arrays.get(t) or TaskArrays.empty(t)
        missing[t] = int(np.sum(arr.status == STATUS_CODES[STATUS_MISSING]))
        samples[t] = len(arr)
        if t in BREAKDOWN_TASKS and len(arr):
            by_cat[t] = _scores_by(arr, arr.category, CATEGORIES)
        if SPECS[t].by_size and len(arr):
            by_size[t] = _scores_by(arr, arr.size, reversed(IDENTIFY_SIZES))
        if not len(arr) or arr.units.shape[1] != breakdowns.UNIT_WIDTH.get(t):
            continue
        if t == "grounding":
            box_cols = [TASK_COLUMNS[t].index(c) for c in ("grounding.multi", "grounding.single")]
            by_cat[t] = breakdowns.grounding_category_scores(arr.units, arr.mask, box_cols)
            extra["grounding_boxes"] = breakdowns.grounding_boxes(arr.units)
        elif t == "classify":
            classes = breakdowns.classify_classes(arr.units)
            by_cat[t] = {c: v["score"] for c, v in classes.items()}
            extra["classify_classes"] = classes
            extra["classify_confusion"] = breakdowns.classify_confusion(arr.units)
    return {"by_category": by_cat, "by_size": by_size, "missing": missing, "samples": samples, **extra}


def _scores_by(arr, labels, values):
    """{value: task score over the samples labelled with it}, values without samples left out."""
    return {v: round4(arr.select(labels == v).score()) for v in values if (labels == v).any()}


def sample_category(row):
    """The one category a count / identify / refer sample is about (None for the other tasks)."""
    return (row.get("gt_categories") or [None])[0] if SPECS[row["task"]].by_category else None


def sample_size(row):
    """The one object size an identify sample is about (None for the other tasks)."""
    return (row.get("gt_sizes") or [None])[0] if SPECS[row["task"]].by_size else None
