"""Breakdowns of grounding and classification (breakdown.json; docs/scoring.md, "Breakdowns"). Pure numpy, no Beam.

The scorer reduces what a breakdown needs to a few counts per sample, a fixed-width integer matrix
(`units`, one row per sample, carried by metrics.TaskArrays beside TP / FP / FN), so the breakdowns
are column sums over samples, whatever the number of samples or buckets:

  classify   [truth label | predicted label]: 0/1 per category (CATEGORIES order), 2 x 6 columns
  grounding  [truth boxes | truth boxes found | predicted boxes] per category (3 x 6 columns), then
             [truth boxes | truth boxes found] per object size (IDENTIFY_SIZES order, 2 x 5 columns)

Grounding's unit is the truth box (a sample holds boxes of several categories and sizes); a truth
box is found when the scorer matched it at IoU >= 0.5 within its category (metrics.GROUNDING_IOU).
Its size is the identify size word of the box as the test row states it: (x2 - x1) * (y2 - y1) over
the image area, with geometry.IDENTIFY_SIZE_FLOORS. A predicted box has a category (the label the
parser gave it) but no truth size until it is matched, so sizes get a recall, categories a score.
"""
import numpy as np

from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX
from sarchat.transforms.geometry import IDENTIFY_SIZES, identify_size_index

K = len(CATEGORIES)
S = len(IDENTIFY_SIZES)
UNIT_WIDTH = {"classify": 2 * K, "grounding": 3 * K + 2 * S}
NONE = "none"   # the confusion matrix's extra row and column


def category_codes(values):
    """Index in CATEGORIES of each value (-1 for anything else, None included)."""
    return np.array([CATEGORY_INDEX.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=np.int64)


def size_codes(boxes, width, height):
    """Index in IDENTIFY_SIZES of each xyxy box, given its image's width and height."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = np.asarray(width, dtype=np.float64) * np.asarray(height, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(area > 0, (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / np.where(area > 0, area, 1.0), 0.0)
    return np.asarray(identify_size_index(r), dtype=np.int64).reshape(-1)


def count_matrix(n, rows, codes, k, weights=None):
    """(n, k) counts of the (row, code) pairs (codes < 0 left out), optionally weighted."""
    rows, codes = np.asarray(rows, dtype=np.int64), np.asarray(codes, dtype=np.int64)
    keep = codes >= 0
    w = None if weights is None else np.asarray(weights, dtype=np.int64)[keep]
    out = np.bincount(rows[keep] * k + codes[keep], weights=w, minlength=n * k)
    return np.rint(out).astype(np.int64).reshape(n, k)


def classify_units(n, gt_rows, gt_cats, pred_rows, pred_cats):
    """The classify units of n samples from (sample, category index) pairs of truth and prediction."""
    gt = count_matrix(n, gt_rows, gt_cats, K) > 0
    pred = count_matrix(n, pred_rows, pred_cats, K) > 0
    return np.concatenate([gt, pred], axis=1).astype(np.int64)


def grounding_units(n, box_rows, box_cats, box_sizes, box_found, pred_rows, pred_cats):
    """The grounding units of n samples: every truth box's sample, category, size index and whether
    it was found; every predicted box's sample and category index."""
    found = np.asarray(box_found, dtype=bool).astype(np.int64)
    return np.concatenate([
        count_matrix(n, box_rows, box_cats, K), count_matrix(n, box_rows, box_cats, K, found),
        count_matrix(n, pred_rows, pred_cats, K),
        count_matrix(n, box_rows, box_sizes, S), count_matrix(n, box_rows, box_sizes, S, found)], axis=1)


def _pct(num, den):
    return None if not den else round(100.0 * float(num) / float(den), 4)


def classify_classes(units):
    """Per category, over the samples: tp (named and true), fp (named, not true), fn (true, not
    named), support (tp + fn), predicted (tp + fp), precision, recall, f1 and score (Eq. 3,
    tp / (tp + fp + fn)), in percent (null where undefined). Categories neither true nor named in
    any sample are left out."""
    gt, pred = units[:, :K] > 0, units[:, K:2 * K] > 0
    tp, fp, fn = (gt & pred).sum(0), (pred & ~gt).sum(0), (gt & ~pred).sum(0)
    out = {}
    for c, cat in enumerate(CATEGORIES):
        a, b, d = int(tp[c]), int(fp[c]), int(fn[c])
        if a + b + d:
            out[cat] = {"support": a + d, "predicted": a + b, "tp": a, "fp": b, "fn": d,
                        "precision": _pct(a, a + b), "recall": _pct(a, a + d), "f1": _pct(2 * a, 2 * a + b + d),
                        "score": _pct(a, a + b + d)}
    return out


def classify_confusion(units):
    """The multi-label confusion matrix (truth label x predicted label), CATEGORIES then NONE on
    both axes. Per sample with truth set T and predicted set P:
      - each label in T and P adds 1 on the diagonal;
      - each missed label t (in T, not P) is paired with each extra label p (in P, not T): +1 at (t, p);
      - a missed label with no extra label in its sample adds 1 at (t, NONE);
      - an extra label with no missed label in its sample adds 1 at (NONE, p).
    Single-label answers give the usual confusion matrix plus the NONE row and column. A sample
    scored as a miss (unparseable, missing, inference error) predicts nothing: its labels go to NONE.
    """
    gt, pred = units[:, :K] > 0, units[:, K:2 * K] > 0
    hit, missed, extra = gt & pred, gt & ~pred, pred & ~gt
    m = np.zeros((K + 1, K + 1), dtype=np.int64)
    m[np.arange(K), np.arange(K)] = hit.sum(0)
    m[:K, :K] += missed.T.astype(np.int64) @ extra.astype(np.int64)
    m[:K, K] = missed[~extra.any(1)].sum(0)
    m[K, :K] = extra[~missed.any(1)].sum(0)
    labels = list(CATEGORIES) + [NONE]
    return {"truth": labels, "predicted": labels, "counts": m.tolist()}


def _grounding_parts(units):
    return (units[:, :K], units[:, K:2 * K], units[:, 2 * K:3 * K], units[:, 3 * K:3 * K + S],
            units[:, 3 * K + S:3 * K + 2 * S])


def grounding_category_scores(units, mask, box_columns):
    """Per category: the mean, over grounding's box columns (`box_columns`: their indices in
    `mask`, the samples each column counts), of Eq. 3 over that category's boxes in the column's
    samples (tp: its truth boxes found, fp: its predicted boxes not matched, fn: its truth boxes not
    found). A column where the category has neither a truth nor a predicted box does not count;
    categories with none anywhere are left out."""
    gt, found, pred, _, _ = _grounding_parts(units)
    values = {c: [] for c in range(K)}
    for j in box_columns:
        rows = mask[:, j]
        tp, n_gt, n_pred = found[rows].sum(0), gt[rows].sum(0), pred[rows].sum(0)
        for c in range(K):
            if n_gt[c] or n_pred[c]:
                values[c].append(100.0 * tp[c] / (n_gt[c] + n_pred[c] - tp[c]))
    return {CATEGORIES[c]: round(float(sum(v) / len(v)), 4) for c, v in values.items() if v}


def grounding_boxes(units):
    """Box counts over all grounding samples: per category {truth_boxes, predicted_boxes, tp, fp,
    fn, precision, recall} and per size word (smallest first) {truth_boxes, found, recall}."""
    gt, found, pred, gt_size, found_size = (p.sum(0) for p in _grounding_parts(units))
    by_cat = {}
    for c, cat in enumerate(CATEGORIES):
        a, g, p = int(found[c]), int(gt[c]), int(pred[c])
        if g or p:
            by_cat[cat] = {"truth_boxes": g, "predicted_boxes": p, "tp": a, "fp": p - a, "fn": g - a,
                           "precision": _pct(a, p), "recall": _pct(a, g)}
    by_size = {}
    for s in reversed(range(S)):
        g, a = int(gt_size[s]), int(found_size[s])
        if g:
            by_size[IDENTIFY_SIZES[s]] = {"truth_boxes": g, "found": a, "recall": _pct(a, g)}
    return {"by_category": by_cat, "by_size": by_size}
