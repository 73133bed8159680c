"""Columnar scoring of one id bucket (docs/rules.md, scoring): every task's samples at once, over
Arrow columns and numpy arrays. Pure code (pyarrow, numpy, scipy), no Beam.

The rules are those of sarchat.transforms.score.metrics, whose per-sample `score_sample` stays the
reference (the lmms-eval hooks call it; tests/test_score_columnar.py checks on random inputs that
this module gives the same statuses, TP / FP / FN, IoUs, samples rows and jsonl lines). Here:

- each distinct answer of a (model, task) is parsed once (through the model's parsing.ParseMemo,
  keyed as parse_answer needs: the text, plus the image size for the box tasks), and what the
  scorer needs from a parse (its attribute codes, boxes, labels, the JSON of its `parsed` field)
  is derived once per distinct parse and taken per sample;
- set and multiset counts (classify, identify, describe, grounding's relations) are counts of
  (sample, item code) pairs, deduplicated with np.unique and intersected with np.intersect1d;
- box matching computes the IoU of every (predicted, truth) box pair of a matching group (a sample,
  or for grounding a sample's category) in one numpy pass, with metrics.iou_matrix's operations; a
  group with one box on a side takes the first best pair (what the Hungarian assignment picks
  then), and only groups with several boxes on both sides go through linear_sum_assignment;
- the samples Parquet rows and the samples_<task>.jsonl lines are assembled from the scored
  columns with Arrow kernels (take, binary_join_element_wise), never a dict per sample.
"""
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.optimize import linear_sum_assignment

from sarchat.transforms.score import breakdowns as B
from sarchat.transforms.score import metrics as M
from sarchat.transforms.score import parsing
from sarchat.transforms.score.sample_records import SAMPLE_SCHEMA, pred_labels
from sarchat.transforms.schema import split_relation
from sarchat.transforms.tasks import ANSWER_BOX_TASKS, BY_ID, SPECS, TASK_COLUMNS, TASKS

STATUS_NAMES = tuple(sorted(M.STATUS_CODES, key=M.STATUS_CODES.__getitem__))
_OK, _UNPARSEABLE = M.STATUS_CODES[M.STATUS_OK], M.STATUS_CODES[M.STATUS_UNPARSEABLE]
_MISSING, _ERROR = M.STATUS_CODES[M.STATUS_MISSING], M.STATUS_CODES[M.STATUS_INFERENCE_ERROR]
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False)
_NO_PARSE: dict = {"count": None, "boxes": [], "box_categories": None, "labels": []}


# ---------------------------------------------------------------------------------------------
# Arrow helpers


_STRING = pa.string()


def _array(table, name, type_=_STRING):
    """A column as one Array (nulls of `type_` when the table has no such column)."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, type_)
    col = table.column(name)
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def _np(arr):
    return arr.to_numpy(zero_copy_only=False)


class ListColumn:
    """A list column: per-row lengths (a null list has none), the flat values, each value's row and
    the flat position where each row's values start."""

    def __init__(self, arr):
        n = len(arr)
        if pa.types.is_null(arr.type):
            self.lengths = np.zeros(n, dtype=np.int64)
            self.flat = pa.array([], pa.string())
        else:
            self.lengths = _np(pc.fill_null(pc.list_value_length(arr), 0)).astype(np.int64)
            self.flat = pc.list_flatten(arr)
        self.rows = np.repeat(np.arange(n, dtype=np.int64), self.lengths)
        self.starts = np.cumsum(self.lengths) - self.lengths

    def head(self, counts):
        """(rows, flat positions) of the first counts[i] values of every row i."""
        return _explode(np.arange(len(self.lengths)), self.starts, counts)


def _explode(owner, starts, lengths):
    """For items i with lengths[i] values starting at starts[i]: (owner of each value, position)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    rows = np.repeat(np.asarray(owner, dtype=np.int64), lengths)
    block = np.cumsum(lengths) - lengths
    within = np.arange(total, dtype=np.int64) - np.repeat(block, lengths)
    return rows, np.repeat(np.asarray(starts, dtype=np.int64), lengths) + within


class Vocabulary:
    """Python values (strings, tuples, None) -> small integer codes, in order of first sight."""

    def __init__(self):
        self.codes = {}

    def code(self, value):
        c = self.codes.get(value)
        if c is None:
            c = self.codes[value] = len(self.codes)
        return c

    def encode(self, arr, convert=None):
        """Codes of an Arrow array's values (convert: applied to each distinct value first)."""
        if not len(arr):
            return np.zeros(0, dtype=np.int64)
        enc = pc.dictionary_encode(arr, null_encoding="encode")
        distinct = enc.dictionary.to_pylist()
        table = np.array([self.code(convert(v) if convert else v) for v in distinct], dtype=np.int64)
        return table[_np(enc.indices).astype(np.int64)]

    def __len__(self):
        return len(self.codes)


def set_counts(n, pred_rows, pred_codes, gt_rows, gt_codes, width, multiset=False):
    """(TP, FP, FN) per row of the sets (or multisets) given as (row, item code) pairs; `width`
    is more than every code. metrics.set_counts / multiset_counts, for every row at once."""
    kp = np.asarray(pred_rows, dtype=np.int64) * width + pred_codes
    kg = np.asarray(gt_rows, dtype=np.int64) * width + gt_codes
    if multiset:
        up, cp = np.unique(kp, return_counts=True)
        ug, cg = np.unique(kg, return_counts=True)
        common, ip, ig = np.intersect1d(up, ug, assume_unique=True, return_indices=True)
        tp = np.bincount(common // width, weights=np.minimum(cp[ip], cg[ig]), minlength=n)
        n_pred = np.bincount(up // width, weights=cp, minlength=n)
        n_gt = np.bincount(ug // width, weights=cg, minlength=n)
    else:
        up, ug = np.unique(kp), np.unique(kg)
        tp = np.bincount(np.intersect1d(up, ug, assume_unique=True) // width, minlength=n)
        n_pred = np.bincount(up // width, minlength=n)
        n_gt = np.bincount(ug // width, minlength=n)
    tp = tp.astype(np.int64)
    return tp, n_pred.astype(np.int64) - tp, n_gt.astype(np.int64) - tp


# ---------------------------------------------------------------------------------------------
# Box matching over groups


def pair_ious(p, g):
    """metrics.iou_matrix for the pairs (p[i], g[i]): the same operations element by element."""
    ix = np.minimum(p[:, 2], g[:, 2]) - np.maximum(p[:, 0], g[:, 0])
    iy = np.minimum(p[:, 3], g[:, 3]) - np.maximum(p[:, 1], g[:, 1])
    inter = np.where((ix > 0) & (iy > 0), ix * iy, 0.0)
    area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = area_p + area_g - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    out[(union <= 0) & np.all(p == g, axis=1)] = 1.0
    return out


def match_groups(pred_group, pred_boxes, gt_group, gt_boxes, n_groups):
    """metrics.match_boxes within every group at once -> the IoU of each truth box with its matched
    prediction (0.0 when unmatched), in truth box order. pred_group / gt_group: the group of each
    box (boxes of a group in their order; groups in any order)."""
    pred_group = np.asarray(pred_group, dtype=np.int64)
    gt_group = np.asarray(gt_group, dtype=np.int64)
    out = np.zeros(len(gt_group), dtype=np.float64)
    if not len(pred_group) or not len(gt_group):
        return out
    po = np.argsort(pred_group, kind="stable")
    go = np.argsort(gt_group, kind="stable")
    pg, gg = pred_group[po], gt_group[go]
    P = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)[po]
    G = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)[go]
    n_p = np.bincount(pg, minlength=n_groups)
    n_g = np.bincount(gg, minlength=n_groups)
    g_start = np.cumsum(n_g) - n_g
    # every (pred, gt) pair of a group, row-major within the group (the group's IoU matrix)
    per_pred = n_g[pg]
    pair_p, pair_g = _explode(np.arange(len(pg)), g_start[pg], per_pred)
    if not len(pair_p):
        return out
    v = pair_ious(P[pair_p], G[pair_g])
    pair_group = pg[pair_p]
    size = n_p * n_g
    pair_start = np.cumsum(size) - size
    matched = np.zeros(len(gg), dtype=np.float64)
    # one box on a side: the first pair of greatest IoU
    line = (size > 0) & ((n_p == 1) | (n_g == 1))
    if line.any():
        sel = line[pair_group]
        idx = np.nonzero(sel)[0]
        # order the candidate pairs by group, IoU descending, position: the first of each group wins
        order = np.lexsort((idx, -v[idx], pair_group[idx]))
        first = idx[order][np.r_[True, np.diff(pair_group[idx][order]) != 0]]
        matched[pair_g[first]] = v[first]
    # several boxes on both sides: the Hungarian assignment maximising the total IoU
    for grp in np.nonzero((n_p > 1) & (n_g > 1))[0].tolist():
        m = v[pair_start[grp]:pair_start[grp] + size[grp]].reshape(n_p[grp], n_g[grp])
        rows, cols = linear_sum_assignment(m, maximize=True)
        matched[g_start[grp] + cols] = m[rows, cols]
    out[go] = matched
    return out


# ---------------------------------------------------------------------------------------------
# JSON text of columns (what json.dumps(..., ensure_ascii=False) writes)

_RARE_CONTROL = r"[\x00-\x07\x0b\x0e-\x1f]"
_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"),
            ("\f", "\\f"))


_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


def json_strings(arr):
    """A string array -> the JSON literal of each value ("null" for null), as json.dumps writes it."""
    arr = pc.cast(arr, pa.string()) if not pa.types.is_string(arr.type) else arr
    if not len(arr):
        return pa.array([], pa.string())
    if isinstance(arr, pa.DictionaryArray):  # pragma: no cover (cast above makes plain strings)
        arr = arr.dictionary_decode()
    out = arr
    needs = pc.fill_null(pc.match_substring_regex(arr, _NEEDS_ESCAPE), False)
    if pc.any(needs).as_py():
        idx = pa.array(np.nonzero(_np(needs))[0])
        some = arr.take(idx)
        for raw, esc in _ESCAPES:
            some = pc.replace_substring(some, raw, esc)
        rare = pc.fill_null(pc.match_substring_regex(arr.take(idx), _RARE_CONTROL), False)
        if pc.any(rare).as_py():
            values = arr.take(idx).to_pylist()
            some = pa.array([json.dumps(v, ensure_ascii=False)[1:-1] if r else e
                             for v, r, e in zip(values, _np(rare), some.to_pylist())], pa.string())
        mask = np.zeros(len(arr), dtype=bool)
        mask[_np(idx)] = True
        out = pc.replace_with_mask(arr, pa.array(mask), some)
    return pc.fill_null(pc.binary_join_element_wise('"', out, '"', ""), "null")


def json_strings_distinct(arr):
    """json_strings of an array with few distinct values: each distinct value escaped once."""
    if not len(arr):
        return pa.array([], pa.string())
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


class TaskTruth:
    """One task's test rows of a bucket (sorted by id) and what scoring needs of their truth."""

    def __init__(self, task, table):
        self.task, self.table, self.n = task, table, table.num_rows
        n = self.n
        self.boxes = ListColumn(_array(table, "gt_boxes", pa.list_(pa.list_(pa.float64()))))
        self.n_boxes = self.boxes.lengths
        subset = _array(table, "subset")
        named = _np(pc.fill_null(pc.is_in(subset, value_set=pa.array(["single", "multi"])), False))
        self.subset = np.where(named, _np(pc.fill_null(subset, "")).astype(object),
                               np.where(self.n_boxes == 1, "single", "multi").astype(object))
        self.subset_raw = subset
        self.categories = ListColumn(_array(table, "gt_categories", pa.list_(pa.string())))
        self.category = self._first(self.categories) if SPECS[task].by_category else pa.nulls(n, pa.string())
        self.sizes = ListColumn(_array(table, "gt_sizes", pa.list_(pa.string())))
        self.size = self._first(self.sizes) if SPECS[task].by_size else pa.nulls(n, pa.string())
        self.vocab = Vocabulary()
        self._gt_sets = None
        self._gt_keys = None
        self._json = None

    def json_columns(self):
        """JSON literals of the columns every model's jsonl lines repeat: id, subset, question,
        reference answer, category, size."""
        if self._json is None:
            self._json = {
                "id": json_strings(_array(self.table, "id")), "subset": json_strings_distinct(self.subset_raw),
                "question": json_strings(_array(self.table, "question")),
                "reference": json_strings(_array(self.table, "answer")),
                "category": json_strings_distinct(self.category), "size": json_strings_distinct(self.size)}
        return self._json

    def _first(self, lists):
        has = lists.lengths > 0
        if not len(lists.flat):
            return pa.nulls(self.n, pa.string())
        pos = np.where(has, lists.starts, 0)
        return pc.if_else(pa.array(has), lists.flat.take(pa.array(pos)), pa.scalar(None, pa.string()))

    def gt_box_array(self):
        inner = self.boxes.flat
        if not len(inner):
            return np.zeros((0, 4))
        if not _np(pc.equal(pc.fill_null(pc.list_value_length(inner), 0), 4)).all():
            raise ValueError(f"{self.task}: a truth box without exactly 4 coordinates")
        return _np(pc.list_flatten(inner)).astype(np.float64).reshape(-1, 4)

    # the truth as (row, item code) pairs, per set-scored task (codes shared with the parses)
    def gt_items(self):
        if self._gt_sets is None:
            self._gt_sets = getattr(self, "_items_" + self.task)()
        return self._gt_sets

    def _kind_items(self, name, kind):
        lists = ListColumn(_array(self.table, name, pa.list_(pa.string())))
        return lists.rows, self.vocab.encode(lists.flat, lambda v: (kind, v))

    def _items_classify(self):
        return self._kind_items("gt_categories", "category")

    def _items_identify(self):
        parts = [self._kind_items(name, kind) for name, kind in (
            ("gt_categories", "category"), ("gt_sizes", "size"), ("gt_cells", "cell"), ("gt_shapes", "shape"))]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _items_describe(self):
        # the describe truth (tasks/describe.py): zip(sizes, categories, cells), which stops at the shortest
        cols = [ListColumn(_array(self.table, name, pa.list_(pa.string())))
                for name in ("gt_sizes", "gt_categories", "gt_cells")]
        count = np.minimum.reduce([c.lengths for c in cols])
        values = []
        for c in cols:
            rows, pos = c.head(count)
            values.append(c.flat.take(pa.array(pos, pa.int64())).to_pylist() if len(pos) else [])
        return rows, np.array([self.vocab.code(("triple", a, b, x)) for a, b, x in zip(*values)], dtype=np.int64)

    def _items_grounding(self):
        lists = ListColumn(_array(self.table, "gt_relations", pa.list_(pa.string())))
        codes = self.vocab.encode(lists.flat, lambda r: ("relation",) + M._canon_triple(*split_relation(r)[:3]))
        return lists.rows, codes

    def has_relations(self):
        return ListColumn(_array(self.table, "gt_relations", pa.list_(pa.string()))).lengths > 0

    def gt_count(self):
        c = _array(self.table, "gt_count", pa.int64())
        vals = _np(pc.fill_null(c, -1)).astype(np.int64)
        return np.where(_np(pc.is_null(c)), self.n_boxes, vals)


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
        return M.TaskArrays.from_columns(
            t.task, _np(_array(t.table, "id")).astype(str), self.status,
            _np(pc.fill_null(t.category, "")).astype(str), _np(pc.fill_null(t.size, "")).astype(str),
            self.tp, self.fp, self.fn, self.mask, units=self.breakdown_units())

    def breakdown_units(self):
        """The per-sample counts the grounding and classify breakdowns sum (breakdowns.py); None
        for the other tasks."""
        t = self.truth
        if t.task not in B.UNIT_WIDTH:
            return None
        uok = np.where(self.status == _OK, self.parse_index, -1)
        field = "categories" if t.task == "classify" else "box_categories"
        starts, lengths, flat = _parse_items(self.parses, lambda p: B.category_codes(p.get(field) or []).tolist())
        prow, pcat = _row_items(uok, starts, lengths, flat)
        cats = t.categories
        flat_cats = _category_codes(cats.flat)
        if t.task == "classify":
            return B.classify_units(t.n, cats.rows, flat_cats, prow, pcat)
        # grounding: a truth box's category is the truth's category list at the box's index (as the scorer's)
        rows = t.boxes.rows
        within = np.arange(len(rows)) - t.boxes.starts[rows]
        has_cat = within < cats.lengths[rows]
        box_cat = np.full(len(rows), -1, dtype=np.int64)
        box_cat[has_cat] = flat_cats[cats.starts[rows[has_cat]] + within[has_cat]]
        width = _np(pc.fill_null(_array(t.table, "width", pa.int64()), 0)).astype(np.float64)
        height = _np(pc.fill_null(_array(t.table, "height", pa.int64()), 0)).astype(np.float64)
        box_size = B.size_codes(t.gt_box_array(), width[rows], height[rows])
        found = self.ious >= M.GROUNDING_IOU
        return B.grounding_units(t.n, rows, box_cat, box_size, found, prow, pcat)


def _category_codes(arr):
    """breakdowns.category_codes of an Arrow string array, each distinct value looked up once."""
    if not len(arr):
        return np.zeros(0, dtype=np.int64)
    enc = arr.dictionary_encode(null_encoding="encode")
    return B.category_codes(enc.dictionary.to_pylist())[_np(enc.indices).astype(np.int64)]


def _parse_rows(truth, texts, status, memo, box_format):
    """Parse each distinct answer of the rows that have one -> (parses, parse index per row)."""
    task, n = truth.task, truth.n
    index = np.full(n, -1, dtype=np.int64)
    todo = np.nonzero((status != _MISSING) & (status != _ERROR))[0]
    if not len(todo):
        return [], index
    enc = pc.dictionary_encode(pc.fill_null(texts.take(pa.array(todo)), ""))
    distinct = enc.dictionary.to_pylist()
    text_idx = _np(enc.indices).astype(np.int64)
    if task in parsing.TEXT_ONLY_TASKS:
        parses = [memo(task, t, box_format, None, None) for t in distinct]
        index[todo] = text_idx
        return parses, index
    w = _array(truth.table, "width", pa.int64()).take(pa.array(todo)).to_pylist()
    h = _array(truth.table, "height", pa.int64()).take(pa.array(todo)).to_pylist()
    keys, parses = {}, []
    out = np.empty(len(todo), dtype=np.int64)
    for i, key in enumerate(zip(text_idx.tolist(), w, h)):
        k = keys.get(key)
        if k is None:
            k = keys[key] = len(parses)
            parses.append(memo(task, distinct[key[0]], box_format, key[1], key[2]))
        out[i] = k
    index[todo] = out
    return parses, index


def _parse_items(parses, field_codes):
    """Per parse, the codes of its items -> (starts, lengths, flat codes)."""
    lists = [field_codes(p) for p in parses]
    lengths = np.array([len(x) for x in lists], dtype=np.int64)
    flat = np.array([c for x in lists for c in x], dtype=np.int64)
    return np.cumsum(lengths) - lengths, lengths, flat


def _row_items(uok, starts, lengths, flat):
    """(row, code) pairs of every row's parse (uok: parse index, -1 for none)."""
    rows = np.nonzero(uok >= 0)[0]
    u = uok[rows]
    owner, pos = _explode(rows, starts[u], lengths[u])
    return owner, flat[pos]


def score_task(truth, texts, errors, has_pred, memo, box_format):
    """TaskScores of one model on one task's rows. texts / errors: the prediction text and error
    per row (Arrow, null where none); has_pred: whether the row has a prediction."""
    task, n = truth.task, truth.n
    status = np.full(n, _OK, dtype=np.int8)
    status[~has_pred] = _MISSING
    err = _np(pc.fill_null(pc.greater(pc.utf8_length(pc.fill_null(errors, "")), 0), False))
    status[has_pred & err] = _ERROR
    parses, index = _parse_rows(truth, texts, status, memo, box_format)
    parse_ok = np.array([p["status"] == parsing.OK for p in parses], dtype=bool)
    if parses:
        status[(index >= 0) & ~parse_ok[np.maximum(index, 0)]] = _UNPARSEABLE
    ok = status == _OK
    uok = np.where(ok, index, -1)
    out = _Out(n, len(TASK_COLUMNS[task]), int(truth.n_boxes.sum()))
    getattr(_Scorers, task, _per_row)(truth, parses, uok, ok, out)
    return TaskScores(truth, status, parses, index, out.tp, out.fp, out.fn, out.mask, out.ious)


def _subset_column(truth, prefix, suffix=""):
    """The column index of each row's subset column (<prefix>.<subset><suffix>)."""
    multi, single = TASK_COLUMNS[truth.task].index(f"{prefix}.multi{suffix}"), \
        TASK_COLUMNS[truth.task].index(f"{prefix}.single{suffix}")
    return np.where(truth.subset == "single", single, multi)


def _n_of(uok, per_parse):
    """per_parse[parse] of each row's parse, 0 for rows without one."""
    if not len(per_parse):
        return np.zeros(len(uok), dtype=np.int64)
    return np.where(uok >= 0, np.asarray(per_parse)[np.maximum(uok, 0)], 0)


def _box_match(truth, parses, uok, group_of):
    """Matched IoU per truth box (flat, in truth order) and the number of boxes of each parse, for
    the rows with a parse (uok >= 0). group_of(pred box rows, the boxes' flat positions in the
    parses) -> (group of each predicted box or -1, group of each truth box, number of groups)."""
    gt = truth.gt_box_array()
    blen = np.array([len(p["boxes"]) for p in parses], dtype=np.int64)
    bflat = np.array([v for p in parses for b in p["boxes"] for v in b], dtype=np.float64).reshape(-1, 4)
    rows = np.nonzero(uok >= 0)[0]
    u = uok[rows]
    prow, ppos = _explode(rows, (np.cumsum(blen) - blen)[u], blen[u])
    pg, gg, ng = group_of(prow, ppos)
    keep = pg >= 0
    return match_groups(pg[keep], bflat[ppos[keep]], gg, gt, ng), blen


CODE_WIDTH = 1 << 24   # more than any vocabulary's codes: a (row, code) pair is row * CODE_WIDTH + code


def _set_task(truth, parses, uok, items_of, multiset=False):
    """TP, FP, FN per row of a set-scored task: items_of(parse) -> the parse's item codes."""
    grows, gcodes = truth.gt_items()
    if multiset:
        starts, lengths, flat = _parse_items(parses, items_of)
        prow, pcode = _row_items(uok, starts, lengths, flat)
        return set_counts(truth.n, prow, pcode, grows, gcodes, max(len(truth.vocab), 1), multiset)
    starts, lengths, flat = _parse_items(parses, lambda p: list(dict.fromkeys(items_of(p))))
    return counts_against_truth(truth, *_row_items(uok, starts, lengths, flat))


def counts_against_truth(truth, prow, pcode):
    """set_counts of distinct (row, code) predicted pairs against the truth's sets (the truth's
    distinct pairs are sorted once per bucket and shared by every model)."""
    if truth._gt_keys is None:
        grows, gcodes = truth.gt_items()
        keys = np.unique(np.asarray(grows, dtype=np.int64) * CODE_WIDTH + gcodes)
        truth._gt_keys = keys, np.bincount(keys // CODE_WIDTH, minlength=truth.n).astype(np.int64)
    keys, n_gt = truth._gt_keys
    if len(truth.vocab) >= CODE_WIDTH:
        raise ValueError("more distinct answer items than the scorer codes")
    kp = np.asarray(prow, dtype=np.int64) * CODE_WIDTH + pcode
    if len(keys) and len(kp):
        at = np.minimum(np.searchsorted(keys, kp), len(keys) - 1)
        hit = keys[at] == kp
    else:
        hit = np.zeros(len(kp), dtype=bool)
    tp = np.bincount(prow[hit], minlength=truth.n).astype(np.int64)
    return tp, np.bincount(prow, minlength=truth.n).astype(np.int64) - tp, n_gt - tp


def _hits(truth, matched, t):
    return np.bincount(truth.boxes.rows, weights=matched >= t, minlength=truth.n).astype(np.int64)


class _Scorers:
    """One columnar scorer per task (its task module's score and miss for all rows at once). A row
    without a parse (uok -1: missing, inference error, unparseable) has no predicted item and no
    predicted box, which is exactly the miss rule: (0, 0, what the truth holds)."""

    @staticmethod
    def classify(truth, parses, uok, ok, out):
        v = truth.vocab
        out.set(slice(None), 0, *_set_task(truth, parses, uok, lambda p: [v.code(("category", c))
                                                                           for c in p["categories"]]))

    @staticmethod
    def describe(truth, parses, uok, ok, out):
        v = truth.vocab
        out.set(slice(None), 0, *_set_task(truth, parses, uok, lambda p: [v.code(("triple",) + tuple(t))
                                                                           for t in p["triples"]], multiset=True))

    @staticmethod
    def identify(truth, parses, uok, ok, out):
        v = truth.vocab
        # distinct codes per parse (the kinds differ, so base and shape codes never coincide)
        base = _parse_items(parses, lambda p: list(dict.fromkeys(
            [v.code(("category", x)) for x in p["categories"]] + [v.code(("size", x)) for x in p["sizes"]]
            + [v.code(("cell", x)) for x in p["cells"]])))
        shapes = _parse_items(parses, lambda p: list(dict.fromkeys(v.code(("shape", x)) for x in p["shapes"])))
        r1, c1 = _row_items(uok, *base)
        # shape is scored only when the truth states one
        has_shapes = ListColumn(_array(truth.table, "gt_shapes", pa.list_(pa.string()))).lengths > 0
        r2, c2 = _row_items(np.where(has_shapes, uok, -1), *shapes)
        a, b, c = counts_against_truth(truth, np.concatenate([r1, r2]), np.concatenate([c1, c2]))
        out.set(np.arange(truth.n), _subset_column(truth, "identify"), a, b, c)

    @staticmethod
    def count(truth, parses, uok, ok, out):
        matched, blen = _box_match(truth, parses, uok, lambda prow, ppos: (prow, truth.boxes.rows, truth.n))
        out.ious[:] = matched
        n_pred = _n_of(uok, blen)
        stated = _n_of(uok, [-1 if p["count"] is None else p["count"] for p in parses])
        right = ok & (stated == truth.gt_count())
        out.set(slice(None), 0, right.astype(np.int64), (ok & ~right).astype(np.int64), (~ok).astype(np.int64))
        for j, t in ((1, 0.25), (2, 0.5)):
            hit = _hits(truth, matched, t)
            out.set(slice(None), j, hit, n_pred - hit, truth.n_boxes - hit)

    @staticmethod
    def refer(truth, parses, uok, ok, out):
        matched, blen = _box_match(truth, parses, uok, lambda prow, ppos: (prow, truth.boxes.rows, truth.n))
        out.ious[:] = matched
        n_pred = _n_of(uok, blen)
        for suffix, t in ((".iou25", 0.25), (".iou50", 0.5)):
            hit = _hits(truth, matched, t)
            out.set(np.arange(truth.n), _subset_column(truth, "refer", suffix), hit, n_pred - hit,
                    truth.n_boxes - hit)

    @staticmethod
    def grounding(truth, parses, uok, ok, out):
        v, boxes = truth.vocab, truth.boxes
        rel = truth.has_relations()
        a, b, c = _set_task(truth, parses, uok, lambda p: [v.code(("relation",) + tuple(t)) for t in p["relations"]])
        j = TASK_COLUMNS["grounding"].index("grounding.abstract_position")
        out.set(rel, j, a[rel], b[rel], c[rel])
        # boxes are matched within each category of the truth (a box's category: the truth's
        # category list at the box's index; a predicted box's: parsing.parse_boxes_by_category)
        cats = truth.categories
        within = np.arange(len(boxes.rows)) - boxes.starts[boxes.rows]
        has_cat = within < cats.lengths[boxes.rows]
        cat_codes = v.encode(cats.flat, lambda x: ("category", x))
        gt_cat = np.full(len(within), -1, dtype=np.int64)
        gt_cat[has_cat] = cat_codes[cats.starts[boxes.rows[has_cat]] + within[has_cat]]
        pcat = np.array([v.code(("category", x)) for p in parses for x in p["box_categories"]], dtype=np.int64)

        def by_category(prow, ppos):
            width = max(len(v), 1)
            gkey = np.where(gt_cat >= 0, boxes.rows * width + gt_cat, -1)
            groups = np.unique(gkey[gkey >= 0])
            gg = np.where(gkey >= 0, np.searchsorted(groups, gkey), len(groups))
            pkey = prow * width + pcat[ppos]
            at = np.minimum(np.searchsorted(groups, pkey), max(len(groups) - 1, 0))
            found = groups[at] == pkey if len(groups) else np.zeros(len(pkey), dtype=bool)
            return np.where(found, at, -1), gg, len(groups) + 1

        matched, blen = _box_match(truth, parses, uok, by_category)
        out.ious[:] = matched
        hit = _hits(truth, matched, M.GROUNDING_IOU)
        out.set(np.arange(truth.n), _subset_column(truth, "grounding"), hit, _n_of(uok, blen) - hit,
                truth.n_boxes - hit)


def _per_row(truth, parses, uok, ok, out):
    """The scorer of a task without a columnar one in _Scorers (a new task): its module's score and
    miss (sarchat.transforms.tasks), row by row; the same results, at the per-sample speed."""
    module, index = BY_ID[truth.task], {c: j for j, c in enumerate(TASK_COLUMNS[truth.task])}
    starts = (np.cumsum(truth.n_boxes) - truth.n_boxes).tolist()
    for i, row in enumerate(truth.table.to_pylist()):
        scores, ious = module.score(row, parses[uok[i]]) if uok[i] >= 0 else (module.miss(row), [])
        for c, (tp, fp, fn) in scores.items():
            out.set(i, index[c], tp, fp, fn)
        out.ious[starts[i]:starts[i] + len(ious)] = ious


class _Out:
    """The matrices a scorer fills."""

    def __init__(self, n, k, n_boxes):
        self.tp, self.fp, self.fn = (np.zeros((n, k), dtype=np.int64) for _ in range(3))
        self.mask = np.zeros((n, k), dtype=bool)
        self.ious = np.zeros(n_boxes, dtype=np.float64)

    def set(self, rows, j, tp, fp, fn):
        self.tp[rows, j], self.fp[rows, j], self.fn[rows, j], self.mask[rows, j] = tp, fp, fn, True


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
        tests = tests.filter(pc.fill_null(pc.is_in(_array(tests, "task"), value_set=pa.array(TASKS)), False))
        self.unknown_task = n_in - tests.num_rows
        if tests.num_rows and not pa.types.is_string(tests.schema.field("id").type):
            tests = tests.set_column(tests.schema.get_field_index("id"), "id", pc.cast(tests.column("id"), pa.string()))
        order = pc.sort_indices(tests, [("id", "ascending")]) if tests.num_rows else pa.array([], pa.int64())
        ids = _array(tests, "id").take(order)
        first = np.ones(len(ids), dtype=bool)
        if len(ids) > 1:
            first[1:] = _np(pc.fill_null(pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)), True))
        self.tests = tests.take(pa.array(_np(order)[first]))
        self.duplicate_tests = len(ids) - int(first.sum())
        self.ids = _array(self.tests, "id")
        self.rejects = []
        self._index = {}
        preds = _concat(pred_tables)
        if not preds.num_rows:
            self.models = []
            return
        pid = _array(preds, "id")
        pos = pc.index_in(pid, value_set=self.ids)
        missing = _np(pc.is_null(pid))
        unknown = ~missing & _np(pc.is_null(pos))
        self._reject(preds, missing, "missing_id")
        self._reject(preds, unknown, "unknown_id")
        known = np.nonzero(~missing & ~unknown)[0]
        valid = preds.take(pa.array(known)).append_column("_pos", pos.take(pa.array(known)))
        valid = valid.append_column("_file0", pc.fill_null(_array(valid, "_file"), ""))
        valid = valid.append_column("_row0", pc.fill_null(_array(valid, "_row", pa.int64()), 0))
        order = pc.sort_indices(valid, [("model", "ascending"), ("_pos", "ascending"), ("_file0", "ascending"),
                                        ("_row0", "ascending")])
        valid = valid.take(order)
        model, vpos = _array(valid, "model"), _np(_array(valid, "_pos", pa.int64())).astype(np.int64)
        lead = np.ones(valid.num_rows, dtype=bool)
        if valid.num_rows > 1:
            same_model = _np(pc.fill_null(pc.equal(model.slice(1), model.slice(0, valid.num_rows - 1)), False))
            lead[1:] = ~(same_model & (vpos[1:] == vpos[:-1]))
        self._reject(valid, ~lead, "duplicate_id")
        self.preds = valid.filter(pa.array(lead))
        models = _array(self.preds, "model")
        self.models = sorted(set(pc.unique(models).to_pylist()))
        self._model_col, self._pos = models, _np(_array(self.preds, "_pos", pa.int64())).astype(np.int64)

    def _reject(self, table, mask, reason):
        if mask.any():
            part = table.filter(pa.array(mask)).select(["model", "id", "_file", "_row"]).to_pylist()
            self.rejects += [{"model": r["model"], "id": r["id"], "reason": reason, "file": r["_file"],
                              "row": r["_row"]} for r in part]

    def pred_index(self, model):
        """Per test row, the index of its prediction row of `model` in self.preds, or -1."""
        out = np.full(self.tests.num_rows, -1, dtype=np.int64)
        if self.models and model in self.models:
            rows = np.nonzero(_np(pc.fill_null(pc.equal(self._model_col, model), False)))[0]
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

    def _parse_columns(self):
        if getattr(self, "_parse_cache", None) is None:
            self._parse_cache = self._make_parse_columns()
        return self._parse_cache

    def _make_parse_columns(self):
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
        count, boxes, box_cats, labels, _ = self._parse_columns()
        offsets, names, tp, fp, fn = self._score_lists()
        ious = self.scores.ious if t.task in ANSWER_BOX_TASKS else np.zeros(0)
        i32 = lambda v: pa.ListArray.from_arrays(pa.array(offsets), pa.array(v, pa.int32()))  # noqa: E731
        cols = [_array(t.table, "id"), pa.array([t.task] * n, pa.string()), pc.cast(t.subset_raw, pa.string()),
                pa.array([self.model] * n, pa.string()), self.status_names(), self.error, self.latency,
                t.category, t.size, count, boxes, box_cats, labels,
                pa.ListArray.from_arrays(pa.array(self._iou_offsets()), pa.array(ious, pa.float64())),
                pa.ListArray.from_arrays(pa.array(offsets), names), i32(tp), i32(fp), i32(fn)]
        return pa.Table.from_arrays(cols, schema=SAMPLE_SCHEMA)

    def lines(self):
        """The samples_<task>.jsonl line of every row (sample_lines.sample_line's text)."""
        t, n = self.truth, self.truth.n
        if not n:
            return pa.array([], pa.string())
        *_, parsed_json = self._parse_columns()
        offsets, names, tp, fp, fn = self._score_lists()
        entries = _join('"', names, '": {"tp": ', pc.cast(pa.array(tp), pa.string()), ', "fp": ',
                        pc.cast(pa.array(fp), pa.string()), ', "fn": ', pc.cast(pa.array(fn), pa.string()), "}")
        scores = pc.binary_join_element_wise(
            "{", pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), entries), ", "), "}", "")
        ious = self.scores.ious if t.task in ANSWER_BOX_TASKS else np.zeros(0)
        ious_json = json_lists(self._iou_offsets(), json_floats(ious))
        lat = _np(pc.fill_null(pc.cast(self.latency, pa.float64()), float("nan"))).astype(np.float64)
        latency = json_floats(np.where(np.isfinite(lat), lat, 0.0), np.isfinite(lat))
        dumps = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
        tj = t.json_columns()
        status = pa.array([dumps(v) for v in STATUS_NAMES], pa.string()).take(
            pa.array(self.scores.status.astype(np.int64)))
        return _join(
            '{"id": ', tj["id"], ', "task": ' + dumps(t.task) + ', "subset": ', tj["subset"],
            ', "model": ' + dumps(self.model) + ', "question": ', tj["question"], ', "reference": ', tj["reference"],
            ', "response": ', json_strings_distinct(self.prediction), ', "status": ', status,
            ', "error": ', json_strings_distinct(self.error), ', "latency_s": ', latency, ', "category": ',
            tj["category"], ', "size": ', tj["size"], ', "parsed": ', parsed_json,
            ', "ious": ', ious_json, ', "scores": ', scores, "}\n")

    def record(self, i):
        """Row i as the dict sample_records.sample_record gives."""
        return self.sample_table().slice(i, 1).to_pylist()[0]


def task_rows(tests):
    """{task: ascending positions of its rows} over a bucket's sorted test rows."""
    tasks = _np(_array(tests, "task")).astype(object)
    return {t: np.nonzero(tasks == t)[0] for t in TASKS}


def score_bucket(join, models, formats, memo_of):
    """Score every (model, task) of a joined bucket -> [(model, [ModelTask per task with rows])],
    models in sorted order. memo_of(model): that model's parsing.ParseMemo."""
    positions = task_rows(join.tests)
    truths = {t: TaskTruth(t, join.tests.take(pa.array(pos)).combine_chunks()) for t, pos in positions.items()
              if len(pos)}
    preds = getattr(join, "preds", None)
    out = []
    for model in sorted(set(models) | set(join.models)):
        index = join.pred_index(model)
        fmt, memo = formats.for_model(model), memo_of(model)
        parts = []
        for task, truth in truths.items():
            idx = index[positions[task]]
            if preds is None:
                nulls = pa.nulls(truth.n, pa.string())
                prediction, error, latency = nulls, nulls, pa.nulls(truth.n, pa.float64())
            else:
                prediction, error = _take(_array(preds, "prediction"), idx), _take(_array(preds, "error"), idx)
                latency = _take(_array(preds, "latency_s", pa.float64()), idx)
            scores = score_task(truth, prediction, error, idx >= 0, memo, fmt)
            parts.append(ModelTask(model, scores, prediction, error, latency))
        out.append((model, parts))
    return out


def model_sample_table(parts):
    """One model's samples table of a bucket, rows in id order (the tasks' rows interleaved)."""
    tables = [p.sample_table() for p in parts]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    ids = _array(table, "id")
    return table.take(pc.sort_indices(ids)).combine_chunks()


def merged_lines(tables):
    """[(id, line) tables of one (model, task), one per bucket] -> the file's bytes, lines sorted by id."""
    table = _concat([t for t in tables if t.num_rows])
    if not table.num_rows or "line" not in table.column_names:
        return b""
    lines = pc.cast(_array(table, "line"), pa.large_string()).take(pc.sort_indices(_array(table, "id")))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[int(offsets[0]):int(offsets[-1])]
