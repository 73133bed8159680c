"""What the task modules' `score_columns` share: a task's truth over Arrow columns, the matrices a
scorer fills, and set and box matching for every row at once (docs/rules.md section 12). Pure code
(pyarrow, numpy, scipy), no Beam.

A task module's `score_columns(truth, parses, uok, ok, out)` is its `score` and `miss` for all of a
bucket's rows at once (sarchat.transforms.score.score_columns calls it; tests/test_score_columnar.py
checks it against them on random inputs):

- truth: the task's rows (`TaskTruth`), shared by every model of the bucket;
- parses: the distinct parses of one model's answers; uok: per row, the index of its parse when the
  row is scored (status ok), else -1; ok: uok >= 0;
- out: the `ScoreMatrices` to fill: TP / FP / FN per row and column, per-truth-box IoUs.

A row without a parse (uok -1: missing, inference error, unparseable) has no predicted item and no
predicted box, which is exactly the miss rule: (0, 0, what the truth holds). Here:

- set and multiset counts are counts of (row, item code) pairs, deduplicated with np.unique and
  intersected with np.intersect1d;
- box matching computes the IoU of every (predicted, truth) box pair of a matching group (a row, or
  for grounding a row's category) in one numpy pass, with box_match.iou_matrix's operations; a group
  with one box on a side takes the first best pair (what the Hungarian assignment picks then), and
  only groups with several boxes on both sides go through linear_sum_assignment.

Tasks layer: imports only the vocabulary below it.
"""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_STRING = pa.string()
STRING_LISTS = pa.list_(pa.string())
CODE_WIDTH = 1 << 24   # more than any vocabulary's codes: a (row, code) pair is row * CODE_WIDTH + code


# ---------------------------------------------------------------------------------------------
# Arrow columns


def table_column(table, name, type_=_STRING):
    """A column as one Array (nulls of `type_` when the table has no such column)."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, type_)
    col = table.column(name)
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def to_numpy(arr):
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
            self.lengths = to_numpy(pc.fill_null(pc.list_value_length(arr), 0)).astype(np.int64)
            self.flat = pc.list_flatten(arr)
        self.rows = np.repeat(np.arange(n, dtype=np.int64), self.lengths)
        self.starts = np.cumsum(self.lengths) - self.lengths


def explode(owner, starts, lengths):
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
        return self.codes.setdefault(value, len(self.codes))

    def encode(self, arr, convert=None):
        """Codes of an Arrow array's values (convert: applied to each distinct value first)."""
        if not len(arr):
            return np.zeros(0, dtype=np.int64)
        enc = pc.dictionary_encode(arr, null_encoding="encode")
        distinct = enc.dictionary.to_pylist()
        table = np.array([self.code(convert(v) if convert else v) for v in distinct], dtype=np.int64)
        return table[to_numpy(enc.indices).astype(np.int64)]

    def __len__(self):
        return len(self.codes)


# ---------------------------------------------------------------------------------------------
# A task's truth, and what its scorer fills


class TaskTruth:
    """One task's test rows of a bucket (sorted by id) and what scoring needs of their truth."""

    def __init__(self, spec, table):
        self.spec, self.task, self.table, self.n = spec, spec.id, table, table.num_rows
        n = self.n
        self.boxes = ListColumn(table_column(table, "gt_boxes", pa.list_(pa.list_(pa.float64()))))
        self.n_boxes = self.boxes.lengths
        subset = table_column(table, "subset")
        named = to_numpy(pc.fill_null(pc.is_in(subset, value_set=pa.array(["single", "multi"])), False))
        self.subset = np.where(named, to_numpy(pc.fill_null(subset, "")).astype(object),
                               np.where(self.n_boxes == 1, "single", "multi").astype(object))
        self.subset_raw = subset
        self.categories = ListColumn(table_column(table, "gt_categories", STRING_LISTS))
        self.category = self._first(self.categories) if spec.by_category else pa.nulls(n, pa.string())
        self.sizes = ListColumn(table_column(table, "gt_sizes", STRING_LISTS))
        self.size = self._first(self.sizes) if spec.by_size else pa.nulls(n, pa.string())
        self.vocab = Vocabulary()
        self._gt_items = self._gt_keys = None

    def _first(self, lists):
        has = lists.lengths > 0
        if not len(lists.flat):
            return pa.nulls(self.n, pa.string())
        pos = np.where(has, lists.starts, 0)
        return pc.if_else(pa.array(has), lists.flat.take(pa.array(pos)), pa.scalar(None, pa.string()))

    def list_column(self, name):
        return ListColumn(table_column(self.table, name, STRING_LISTS))

    def gt_box_array(self):
        inner = self.boxes.flat
        if not len(inner):
            return np.zeros((0, 4))
        if not to_numpy(pc.equal(pc.fill_null(pc.list_value_length(inner), 0), 4)).all():
            raise ValueError(f"{self.task}: a truth box without exactly 4 coordinates")
        return to_numpy(pc.list_flatten(inner)).astype(np.float64).reshape(-1, 4)

    def box_categories(self, flat_codes):
        """Per truth box, the code of its category (flat_codes: of self.categories.flat), -1 when the
        category list is shorter than the box list: a box's category is the category list's entry at
        the box's index (grounding)."""
        rows, cats = self.boxes.rows, self.categories
        within = np.arange(len(rows)) - self.boxes.starts[rows]
        has_cat = within < cats.lengths[rows]
        out = np.full(len(rows), -1, dtype=np.int64)
        out[has_cat] = flat_codes[cats.starts[rows[has_cat]] + within[has_cat]]
        return out

    def kind_items(self, name, kind):
        """(row, code) pairs of a list column's values, coded as (kind, value)."""
        lists = self.list_column(name)
        return lists.rows, self.vocab.encode(lists.flat, lambda v: (kind, v))

    def gt_items(self, items_of):
        """The truth as (row, item code) pairs, from items_of(truth) once per bucket (the codes are
        shared with the parses of every model)."""
        if self._gt_items is None:
            self._gt_items = items_of(self)
        return self._gt_items


class ScoreMatrices:
    """What a scorer fills: TP / FP / FN and in-column per (row, column of the task's columns), and
    the IoU of each truth box with its matched prediction (flat, in truth order)."""

    def __init__(self, n, k, n_boxes):
        self.tp, self.fp, self.fn = (np.zeros((n, k), dtype=np.int64) for _ in range(3))
        self.mask = np.zeros((n, k), dtype=bool)
        self.ious = np.zeros(n_boxes, dtype=np.float64)

    def set(self, rows, j, tp, fp, fn):
        self.tp[rows, j], self.fp[rows, j], self.fn[rows, j], self.mask[rows, j] = tp, fp, fn, True


def subset_column(truth, prefix, suffix=""):
    """The column index of each row's subset column (<prefix>.<subset><suffix>)."""
    ids = truth.spec.column_ids
    multi, single = ids.index(f"{prefix}.multi{suffix}"), ids.index(f"{prefix}.single{suffix}")
    return np.where(truth.subset == "single", single, multi)


def score_rows(score, miss, truth, parses, uok, out):
    """A task's score and miss (its row-wise rules) row by row into `out`: the same results as a
    columnar scorer, at the per-sample speed (what a new task's score_columns may call)."""
    index = {c: j for j, c in enumerate(truth.spec.column_ids)}
    starts = (np.cumsum(truth.n_boxes) - truth.n_boxes).tolist()
    for i, row in enumerate(truth.table.to_pylist()):
        scores, ious = score(row, parses[uok[i]]) if uok[i] >= 0 else (miss(row), [])
        for c, (tp, fp, fn) in scores.items():
            out.set(i, index[c], tp, fp, fn)
        out.ious[starts[i]:starts[i] + len(ious)] = ious


# ---------------------------------------------------------------------------------------------
# Items of the parses, and set counts per row


def parse_items(parses, field_codes):
    """Per parse, the codes of its items -> (starts, lengths, flat codes)."""
    lists = [field_codes(p) for p in parses]
    lengths = np.array([len(x) for x in lists], dtype=np.int64)
    flat = np.array([c for x in lists for c in x], dtype=np.int64)
    return np.cumsum(lengths) - lengths, lengths, flat


def row_items(uok, starts, lengths, flat):
    """(row, code) pairs of every row's parse (uok: parse index, -1 for none)."""
    rows = np.nonzero(uok >= 0)[0]
    u = uok[rows]
    owner, pos = explode(rows, starts[u], lengths[u])
    return owner, flat[pos]


def per_row(uok, per_parse):
    """per_parse[parse] of each row's parse, 0 for rows without one."""
    if not len(per_parse):
        return np.zeros(len(uok), dtype=np.int64)
    return np.where(uok >= 0, np.asarray(per_parse)[np.maximum(uok, 0)], 0)


def multiset_counts(n, pred_rows, pred_codes, gt_rows, gt_codes, width):
    """(TP, FP, FN) per row of the multisets given as (row, item code) pairs; `width` is more than
    every code. box_match.multiset_counts, for every row at once."""
    up, cp = np.unique(np.asarray(pred_rows, dtype=np.int64) * width + pred_codes, return_counts=True)
    ug, cg = np.unique(np.asarray(gt_rows, dtype=np.int64) * width + gt_codes, return_counts=True)
    common, ip, ig = np.intersect1d(up, ug, assume_unique=True, return_indices=True)
    tp = np.bincount(common // width, weights=np.minimum(cp[ip], cg[ig]), minlength=n).astype(np.int64)
    n_pred = np.bincount(up // width, weights=cp, minlength=n).astype(np.int64)
    return tp, n_pred - tp, np.bincount(ug // width, weights=cg, minlength=n).astype(np.int64) - tp


def set_scores(truth, truth_items, parses, uok, items_of, multiset=False):
    """TP, FP, FN per row of a set-scored task: truth_items(truth) -> the truth's (row, code) pairs,
    items_of(parse) -> the parse's item codes."""
    if multiset:
        grows, gcodes = truth.gt_items(truth_items)
        prow, pcode = row_items(uok, *parse_items(parses, items_of))
        return multiset_counts(truth.n, prow, pcode, grows, gcodes, max(len(truth.vocab), 1))
    starts, lengths, flat = parse_items(parses, lambda p: list(dict.fromkeys(items_of(p))))
    return counts_against_truth(truth, truth_items, *row_items(uok, starts, lengths, flat))


def counts_against_truth(truth, truth_items, prow, pcode):
    """set_counts of distinct (row, code) predicted pairs against the truth's sets (the truth's
    distinct pairs are sorted once per bucket and shared by every model)."""
    if truth._gt_keys is None:
        grows, gcodes = truth.gt_items(truth_items)
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


# ---------------------------------------------------------------------------------------------
# Box matching over groups


def pair_ious(p, g):
    """box_match.iou_matrix for the pairs (p[i], g[i]): the same operations element by element."""
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
    """box_match.match_boxes within every group at once -> the IoU of each truth box with its matched
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
    pair_p, pair_g = explode(np.arange(len(pg)), g_start[pg], per_pred)
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
    from scipy.optimize import linear_sum_assignment  # about 1 s to import: not at every command's start

    for grp in np.nonzero((n_p > 1) & (n_g > 1))[0].tolist():
        m = v[pair_start[grp]:pair_start[grp] + size[grp]].reshape(n_p[grp], n_g[grp])
        rows, cols = linear_sum_assignment(m, maximize=True)
        matched[g_start[grp] + cols] = m[rows, cols]
    out[go] = matched
    return out


def box_scores(truth, parses, uok, out, columns, group_of=None):
    """Match the rows' boxes into out.ious (the matched IoU per truth box, flat, in truth order), and
    for each (column index per row, IoU threshold) of `columns` set every row's TP (its truth boxes
    matched at IoU >= the threshold), FP and FN. group_of(pred box rows, the boxes' flat positions in
    the parses) -> (group of each predicted box or -1, group of each truth box, number of groups);
    None: each row's boxes are one group."""
    group_of = group_of or (lambda prow, ppos: (prow, truth.boxes.rows, truth.n))
    blen = np.array([len(p["boxes"]) for p in parses], dtype=np.int64)
    bflat = np.array([v for p in parses for b in p["boxes"] for v in b], dtype=np.float64).reshape(-1, 4)
    rows = np.nonzero(uok >= 0)[0]
    prow, ppos = explode(rows, (np.cumsum(blen) - blen)[uok[rows]], blen[uok[rows]])
    pg, gg, ng = group_of(prow, ppos)
    keep = pg >= 0
    matched = match_groups(pg[keep], bflat[ppos[keep]], gg, truth.gt_box_array(), ng)
    out.ious[:] = matched
    n_pred = per_row(uok, blen)
    for j, t in columns:
        hit = np.bincount(truth.boxes.rows, weights=matched >= t, minlength=truth.n).astype(np.int64)
        out.set(np.arange(truth.n), j, hit, n_pred - hit, truth.n_boxes - hit)
