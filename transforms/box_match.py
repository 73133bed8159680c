"""Box and set matching for the scorers (docs/rules.md section 12). Pure functions, no Beam.

Box matching: Hungarian assignment (scipy.optimize.linear_sum_assignment) maximising the total
continuous IoU, then a matched pair is a TP when IoU >= t; FP = predicted - TP, FN = truth - TP.
"""
import math
from collections import Counter

import numpy as np

from sarchat.transforms.categories import CATEGORY_INDEX


def iou_matrix(pred, gt):
    """Continuous IoU of every predicted box (rows) against every truth box (columns)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    ix = np.minimum(p[:, None, 2], g[None, :, 2]) - np.maximum(p[:, None, 0], g[None, :, 0])
    iy = np.minimum(p[:, None, 3], g[None, :, 3]) - np.maximum(p[:, None, 1], g[None, :, 1])
    inter = np.where((ix > 0) & (iy > 0), ix * iy, 0.0)
    area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    area_g = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    union = area_p[:, None] + area_g[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    # A truth box can have no area: one under a pixel wide rounds to x1 == x2, and one clamped to
    # the image edge collapses onto it. Its exact copy is a perfect answer (IoU 1), or a reference
    # answer could never score 100; any other box still scores 0 against it.
    degenerate = (union <= 0) & np.all(p[:, None, :] == g[None, :, :], axis=2)
    out[degenerate] = 1.0
    return out


def iou_one(p, g):
    """iou_matrix([p], [g])[0, 0] in plain floats, the same operations in the same order (so the
    same IEEE result; tests/test_score_fast_paths.py), without numpy's per-call cost: one predicted
    and one truth box is the most common case (refer single, count of one)."""
    p0, p1, p2, p3 = float(p[0]), float(p[1]), float(p[2]), float(p[3])
    g0, g1, g2, g3 = float(g[0]), float(g[1]), float(g[2]), float(g[3])
    if not math.isfinite(p0 + p1 + p2 + p3 + g0 + g1 + g2 + g3):  # inf / NaN: numpy's rules
        return float(iou_matrix([p], [g])[0, 0])
    ix = min(p2, g2) - max(p0, g0)
    iy = min(p3, g3) - max(p1, g1)
    inter = ix * iy if (ix > 0 and iy > 0) else 0.0
    union = (p2 - p0) * (p3 - p1) + (g2 - g0) * (g3 - g1) - inter
    if union > 0:
        return inter / union
    return 1.0 if (p0, p1, p2, p3) == (g0, g1, g2, g3) else 0.0


def match_boxes(pred, gt):
    """Hungarian matching maximising total IoU -> [(pred index, gt index, iou), ...] by gt index."""
    if not len(pred) or not len(gt):
        return []
    if len(pred) == 1 and len(gt) == 1:
        return [(0, 0, iou_one(pred[0], gt[0]))]
    from scipy.optimize import linear_sum_assignment  # about 1 s to import: not at every command's start

    m = iou_matrix(pred, gt)
    rows, cols = linear_sum_assignment(m, maximize=True)
    pairs = sorted(zip(rows.tolist(), cols.tolist()), key=lambda rc: rc[1])
    return [(r, c, float(m[r, c])) for r, c in pairs]


def box_counts(n_pred, n_gt, matches, t):
    """(TP, FP, FN) at IoU threshold t from the matched pairs."""
    tp = sum(1 for _, _, v in matches if v >= t)
    return tp, n_pred - tp, n_gt - tp


def ious_per_gt(matches, n_gt):
    """IoU of each truth box with its matched prediction (0.0 when unmatched), in truth order."""
    out = [0.0] * n_gt
    for _, c, v in matches:
        out[c] = v
    return out


def set_counts(pred, gt):
    """(TP, FP, FN) of two sets."""
    p, g = set(pred), set(gt)
    tp = len(p & g)
    return tp, len(p) - tp, len(g) - tp


def multiset_counts(pred, gt):
    """(TP, FP, FN) of two multisets (repeated items count as many times as they occur)."""
    p, g = Counter(pred), Counter(gt)
    tp = sum((p & g).values())
    return tp, sum(p.values()) - tp, sum(g.values()) - tp


def box_hits(pred, gt, pred_cats=None, gt_cats=None, t=0.5):
    """(IoU with its matched truth box or None, per predicted box; whether it reached t, per truth
    box). With gt_cats (grounding) boxes are matched within a category only."""
    pred_iou: list = [None] * len(pred)
    gt_hit = [False] * len(gt)
    groups = [(list(range(len(pred))), list(range(len(gt))))]
    if gt_cats is not None:
        pcats = pred_cats or [None] * len(pred)
        groups = [([i for i, c in enumerate(pcats) if c == cat], [i for i, c in enumerate(gt_cats) if c == cat])
                  for cat in sorted(set(gt_cats), key=lambda c: CATEGORY_INDEX.get(c, 99))]
    for pi, gi in groups:
        for r, c, v in match_boxes([pred[i] for i in pi], [gt[i] for i in gi]):
            pred_iou[pi[r]] = v
            gt_hit[gi[c]] = v >= t
    return pred_iou, gt_hit


def box_marks(pred, gt, pred_cats=None, gt_cats=None, t=0.5):
    """The report's marks of predicted boxes: (label, 'ok' | 'bad') per predicted box with its IoU
    against its matched truth box ('ok' from t), then ('N truth boxes', 'miss') for the truth boxes
    no prediction reached (box_hits). With gt_cats a predicted box's label starts with its category."""
    pred_iou, gt_hit = box_hits(pred, gt, pred_cats, gt_cats, t)
    marks, pcats = [], pred_cats or []
    for i, (b, v) in enumerate(zip(pred, pred_iou)):
        named = gt_cats is not None and i < len(pcats) and pcats[i]
        label = (f"{pcats[i]} " if named else "") + "[" + ", ".join(f"{x:.0f}" for x in b) + "]"
        label += f" IoU {v:.2f}" if v is not None else " unmatched"
        marks.append((label, "ok" if v is not None and v >= t else "bad"))
    missed = sum(1 for h in gt_hit if not h)
    if missed:
        marks.append((f"{missed} truth box{'es' if missed > 1 else ''}", "miss"))
    return marks
