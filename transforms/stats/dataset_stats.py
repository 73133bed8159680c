"""Dataset statistics (the paper's section 3.2 and appendix A.2-A.3). Pure functions, no Beam.

Two levels:

* box level, from COCO annotations (or from the generated grounding rows' integer boxes): category
  distribution (Table 1), aspect ratio AR = h/w (Eq. 2) per split and per category with the three AR
  buckets (Tables 2 and 4), shape words by the identify rule on w/h (Figure 7), area-ratio and size
  words, grid cells, image sizes, boxes per image;
* dialogue level, from the generated Parquet: dialogues per task and subset (Table 5, Figures 8/9),
  attribute words stated in the answers, answer lengths, template use, grounding relations.

Every statistic is an accumulator with `add_*` and `merge` whose result does not depend on how the
input was split or in which order parts were merged, so a Beam CombineFn can wrap it and the output
is identical on any runner and worker count:

* counts are integers;
* sums (for means and standard deviations) are exact: `ExactSum` keeps the sum of float64 values as
  one big integer in units of 2**-1126, so adding and merging never round, and the mean/SD are
  computed once at the end with fractions;
* medians and quartiles come from `QuantileSketch`: the values themselves while a key holds at most
  `exact_cap` values (exact, numpy's 'linear' quantile), else a sparse histogram of log-spaced bins
  of relative width 1e-4 that is always maintained. A histogram quantile is the geometric centre of
  the bin of each order statistic, interpolated like numpy's 'linear' method, so its relative error
  is at most sqrt(1 + 1e-4) - 1 < 5.0e-5 (AR 1.062 is reported within +-0.00006). The histogram is
  sparse (only non-empty bins), so its size is bounded by the number of distinct values and by
  ln(max/min)/1e-4: about 30,000 entries for SARDet-100K's aspect ratios.

The standard deviation is the population SD (ddof = 0, numpy's default); the paper does not say
which it used, and at its sample sizes the two agree to 5 significant digits.
"""
import collections
import json
import math
import re
from fractions import Fraction
from importlib import resources

import numpy as np

from sarchat.transforms import geometry
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX
from sarchat.transforms.schema import split_relation
from sarchat.transforms.tasks import SUBSET_TASKS, TASKS

# --- constants ------------------------------------------------------------------------------------

AR_BUCKETS = ("AR<=0.67", "0.67<AR<=1.5", "AR>1.5")          # paper Eq. 2 buckets on AR = h/w
AR_LOW, AR_HIGH = 0.67, 1.5
SHAPE_ORDER = ("wide", "roughly square", "tall")              # identify rule on w/h (docs/rules.md section 2)
IDENTIFY_SIZE_ORDER = ("very small", "small", "medium-sized", "large", "very large")
DESCRIBE_SIZE_ORDER = ("small", "medium-sized", "large")
CELL_ORDER = geometry.CELLS                                   # top left .. bottom right, row-major
RELATION_ORDER = geometry.RELATIONS
SPLIT_ORDER = ("train", "val", "test")

# Fixed plotting histograms (counts are exact; bin i is [edges[i], edges[i+1]), plus under/overflow).
AR_EDGES = tuple(float(v) for v in np.round(10.0 ** np.linspace(-1.25, 1.25, 51), 6))
AREA_EDGES = tuple(float(v) for v in np.round(10.0 ** np.linspace(-5.0, 0.0, 51), 9))

SKETCH_REL_WIDTH = 1e-4
SKETCH_LOG_STEP = math.log1p(SKETCH_REL_WIDTH)
SKETCH_MAX_REL_ERROR = math.sqrt(1.0 + SKETCH_REL_WIDTH) - 1.0
DEFAULT_EXACT_CAP = 20000

_SUM_SHIFT = 1126           # float64 values are m * 2**(e - 53) with e - 53 >= -1126
_HALF = 1 << 26


def split_sort_key(split):
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def percent(part, whole, nd=4):
    return round(100.0 * part / whole, nd) if whole else 0.0


def _r(v, nd=6):
    return None if v is None else round(float(v), nd)


# --- exact sums -----------------------------------------------------------------------------------

class ExactSum:
    """Exact, order-independent sum of float64 values: an integer in units of 2**-1126."""

    __slots__ = ("total",)

    def __init__(self, total=0):
        self.total = total

    def add_array(self, values):
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return self
        if not np.all(np.isfinite(v)):
            raise ValueError("ExactSum takes finite values only")
        mant, exp = np.frexp(v)                        # v = mant * 2**exp, 0.5 <= |mant| < 1
        m = (mant * 9007199254740992.0).astype(np.int64)  # * 2**53: exact 53-bit integers
        hi, lo = m >> 26, m & (_HALF - 1)              # m = hi * 2**26 + lo; sums fit int64
        order = np.argsort(exp, kind="stable")
        e = exp[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(e)) + 1))
        hi_sums = np.add.reduceat(hi[order], starts)
        lo_sums = np.add.reduceat(lo[order], starts)
        total = self.total
        for ex, h, l in zip(e[starts].tolist(), hi_sums.tolist(), lo_sums.tolist()):
            total += ((h << 26) + l) << (ex - 53 + _SUM_SHIFT)
        self.total = total
        return self

    def merge(self, other):
        self.total += other.total
        return self

    def fraction(self) -> Fraction:
        return Fraction(self.total, 1 << _SUM_SHIFT)

    def value(self) -> float:
        return float(self.fraction())


# --- quantile sketch ------------------------------------------------------------------------------

class QuantileSketch:
    """Mergeable count / exact mean and SD / min / max / quantiles of positive finite values.

    Quantiles are exact while the key holds at most `exact_cap` values, else from the log-bin
    histogram (relative error <= SKETCH_MAX_REL_ERROR). The choice depends only on the final count,
    so the result does not depend on merge order.
    """

    def __init__(self, exact_cap=DEFAULT_EXACT_CAP):
        self.exact_cap = exact_cap
        self.n = 0
        self.sum = ExactSum()
        self.sumsq = ExactSum()
        self.min = math.inf
        self.max = -math.inf
        self.values = []          # list of arrays while n <= exact_cap, else None
        self.bins = {}            # log-bin index -> count

    def add_array(self, values):
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return self
        if not (np.all(np.isfinite(v)) and np.all(v > 0)):
            raise ValueError("QuantileSketch takes positive finite values only")
        self.n += int(v.size)
        self.sum.add_array(v)
        self.sumsq.add_array(v * v)
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        idx = np.floor(np.log(v) / SKETCH_LOG_STEP).astype(np.int64)
        keys, counts = np.unique(idx, return_counts=True)
        bins = self.bins
        for k, c in zip(keys.tolist(), counts.tolist()):
            bins[k] = bins.get(k, 0) + c
        if self.values is not None:
            if self.n <= self.exact_cap:
                self.values.append(v.copy())
            else:
                self.values = None
        return self

    def merge(self, other):
        self.n += other.n
        self.sum.merge(other.sum)
        self.sumsq.merge(other.sumsq)
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        bins = self.bins
        for k, c in other.bins.items():
            bins[k] = bins.get(k, 0) + c
        if self.values is not None and other.values is not None and self.n <= self.exact_cap:
            self.values = self.values + other.values
        else:
            self.values = None
        return self

    @property
    def exact(self) -> bool:
        return self.values is not None

    def mean(self):
        return float(self.sum.fraction() / self.n) if self.n else None

    def std(self):
        """Population SD (ddof=0) from the exact sums."""
        if not self.n:
            return None
        s1, s2 = self.sum.fraction(), self.sumsq.fraction()
        var = (self.n * s2 - s1 * s1) / (self.n * self.n)
        return math.sqrt(max(float(var), 0.0))

    def _sorted_values(self):
        return np.sort(np.concatenate(self.values)) if self.values else np.empty(0)

    def quantiles(self, qs):
        """numpy 'linear' quantiles: exact values, or log-bin centres of the order statistics."""
        if not self.n:
            return [None for _ in qs]
        if self.exact:
            return [float(x) for x in np.quantile(self._sorted_values(), qs)]
        keys = sorted(self.bins)
        cum = np.cumsum([self.bins[k] for k in keys])
        centres = [math.exp((k + 0.5) * SKETCH_LOG_STEP) for k in keys]

        def order_stat(rank):     # value of the rank-th smallest (0-based), clamped to [min, max]
            i = int(np.searchsorted(cum, rank, side="right"))
            return min(max(centres[i], self.min), self.max)

        out = []
        for q in qs:
            pos = q * (self.n - 1)
            lo = int(math.floor(pos))
            hi = min(lo + 1, self.n - 1)
            a, b = order_stat(lo), order_stat(hi)
            out.append(a + (pos - lo) * (b - a))
        return out

    def median(self):
        return self.quantiles([0.5])[0]

    def summary(self, nd=6):
        p25, med, p75 = self.quantiles([0.25, 0.5, 0.75])
        return {
            "count": self.n, "mean": _r(self.mean(), nd), "median": _r(med, nd), "std": _r(self.std(), nd),
            "p25": _r(p25, nd), "p75": _r(p75, nd),
            "min": _r(self.min, nd) if self.n else None, "max": _r(self.max, nd) if self.n else None,
            "quantile_method": "exact" if self.exact else f"log-histogram (relative error <= {SKETCH_MAX_REL_ERROR:.1e})",
        }


# --- per-box features -----------------------------------------------------------------------------

def ar_bucket(ar: float) -> int:
    """Index into AR_BUCKETS of an aspect ratio AR = h/w."""
    return 0 if ar <= AR_LOW else 1 if ar <= AR_HIGH else 2


def hist_index(value: float, edges) -> int:
    """0 = underflow, i + 1 = bin [edges[i], edges[i+1]), len(edges) = overflow."""
    return int(np.searchsorted(np.asarray(edges), value, side="right"))


def box_features(bbox, width, height):
    """Scalar reference of every per-box statistic for one COCO [x, y, w, h] box in a W x H image."""
    x, y, w, h = (float(v) for v in bbox)
    ar = h / w
    r = geometry.area_ratio(bbox, width, height)
    return {
        "aspect_ratio": ar,                                   # paper Eq. 2: h / w
        "ar_bucket": AR_BUCKETS[ar_bucket(ar)],
        "shape": geometry.shape_word(geometry.aspect_ratio(bbox)),   # identify rule: w / h
        "area_ratio": r,
        "identify_size": geometry.identify_size(r),
        "describe_size": geometry.describe_size(r),
        "cell": geometry.grid_cell(geometry.xyxy(bbox, width, height), width, height),
    }


# geometry's word indices (its thresholds, written once there) -> this module's *_ORDER indices
_SHAPE_FROM_GEOMETRY = np.array([SHAPE_ORDER.index(w) for w in geometry.SHAPES])
_IDENTIFY_SIZE_FROM_GEOMETRY = np.array([IDENTIFY_SIZE_ORDER.index(w) for w in geometry.IDENTIFY_SIZES])
_DESCRIBE_SIZE_FROM_GEOMETRY = np.array([DESCRIBE_SIZE_ORDER.index(w) for w in geometry.DESCRIBE_SIZES])


def box_feature_arrays(w, h, img_w, img_h, x1, y1, x2, y2):
    """Vectorised `box_features` for arrays of boxes: index arrays into the *_ORDER tuples.

    w, h: box sizes (floats); img_w, img_h: the image size of each box; x1..y2: the integer
    clamped xyxy box the dialogues use (for the grid cell).
    """
    w = np.asarray(w, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    W = np.asarray(img_w, dtype=np.float64)
    H = np.asarray(img_h, dtype=np.float64)
    ar = h / w
    wh = w / h
    r = (w * h) / (W * H)
    shape = _SHAPE_FROM_GEOMETRY[geometry.shape_index(wh)]                           # SHAPE_ORDER
    bucket = np.where(ar <= AR_LOW, 0, np.where(ar <= AR_HIGH, 1, 2))               # AR_BUCKETS
    isize = _IDENTIFY_SIZE_FROM_GEOMETRY[geometry.identify_size_index(r)]           # IDENTIFY_SIZE_ORDER
    dsize = _DESCRIBE_SIZE_FROM_GEOMETRY[geometry.describe_size_index(r)]           # DESCRIBE_SIZE_ORDER
    box = np.stack([np.asarray(v, dtype=np.float64).reshape(-1) for v in (x1, y1, x2, y2)], axis=1)
    return {
        "aspect_ratio": ar, "area_ratio": r, "shape": shape.astype(np.int64), "ar_bucket": bucket.astype(np.int64),
        "identify_size": np.asarray(isize, dtype=np.int64), "describe_size": dsize.astype(np.int64),
        "cell": geometry.cell_index_array(box, W, H),
        "ar_hist": np.searchsorted(np.asarray(AR_EDGES), ar, side="right"),
        "area_hist": np.searchsorted(np.asarray(AREA_EDGES), r, side="right"),
    }


def xyxy_arrays(x, y, w, h, img_w, img_h):
    """geometry.xyxy_array (round half up, clamp to the image) as four float columns."""
    x, y, w, h, W, H = (np.asarray(a, dtype=np.float64) for a in (x, y, w, h, img_w, img_h))
    return tuple(geometry.xyxy_array(x, y, w, h, W, H).T.astype(np.float64))


# --- box chunks: the unit a reader hands to the box accumulator -----------------------------------

def chunk_from_images(images):
    """parse_coco image records -> a box chunk (numpy arrays; boxes carry their image's size)."""
    img_w, img_h, img_boxes = [], [], []
    cat, x, y, w, h, bw, bh = [], [], [], [], [], [], []
    for im in images:
        W, H = im["width"], im["height"]
        img_w.append(W)
        img_h.append(H)
        img_boxes.append(len(im["boxes"]))
        for b in im["boxes"]:
            bx, by, bww, bhh = b["bbox"]
            cat.append(CATEGORY_INDEX[b["category"]])
            x.append(bx)
            y.append(by)
            w.append(bww)
            h.append(bhh)
            bw.append(W)
            bh.append(H)
    x1, y1, x2, y2 = xyxy_arrays(x, y, w, h, bw, bh) if cat else (np.zeros(0),) * 4
    return {"img_w": np.asarray(img_w, np.int64), "img_h": np.asarray(img_h, np.int64),
            "img_boxes": np.asarray(img_boxes, np.int64), "cat": np.asarray(cat, np.int64),
            "w": np.asarray(w, np.float64), "h": np.asarray(h, np.float64),
            "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def chunk_from_grounding(widths, heights, gt_boxes, gt_categories):
    """Grounding rows (one per image, every valid box, integer xyxy) -> a box chunk.

    w = x2 - x1 and h = y2 - y1 of the rounded, clamped boxes: an approximation of the source boxes
    (used when the source annotations are not available).
    """
    img_boxes = np.asarray([len(b) for b in gt_boxes], np.int64)
    flat = [c for row in gt_boxes for c in row]
    boxes = np.asarray(flat, np.float64).reshape(-1, 4)
    cats = np.asarray([CATEGORY_INDEX[c] for row in gt_categories for c in row], np.int64)
    W = np.repeat(np.asarray(widths, np.int64), img_boxes)
    H = np.repeat(np.asarray(heights, np.int64), img_boxes)
    chunk = {"img_w": np.asarray(widths, np.int64), "img_h": np.asarray(heights, np.int64), "img_boxes": img_boxes,
             "cat": cats, "w": boxes[:, 2] - boxes[:, 0], "h": boxes[:, 3] - boxes[:, 1],
             "x1": boxes[:, 0], "y1": boxes[:, 1], "x2": boxes[:, 2], "y2": boxes[:, 3], "box_img_w": W, "box_img_h": H}
    return chunk


def _box_image_sizes(chunk):
    if "box_img_w" in chunk:
        return chunk["box_img_w"], chunk["box_img_h"]
    return np.repeat(chunk["img_w"], chunk["img_boxes"]), np.repeat(chunk["img_h"], chunk["img_boxes"])


# --- box-level accumulator ------------------------------------------------------------------------

class BoxStats:
    """Mergeable box-level statistics of one split (per category; split totals are merges)."""

    K = len(CATEGORIES)

    def __init__(self, exact_cap=DEFAULT_EXACT_CAP):
        self.exact_cap = exact_cap
        self.images = 0
        self.degenerate = 0                                  # boxes with w or h = 0 after rounding, or ratios beyond float
        self.image_sizes = collections.Counter()             # (W, H) -> images
        self.boxes_per_image = collections.Counter()         # n -> images
        K = self.K
        self.counts = np.zeros(K, np.int64)
        self.ar_buckets = np.zeros((K, len(AR_BUCKETS)), np.int64)
        self.shapes = np.zeros((K, len(SHAPE_ORDER)), np.int64)
        self.identify_sizes = np.zeros((K, len(IDENTIFY_SIZE_ORDER)), np.int64)
        self.describe_sizes = np.zeros((K, len(DESCRIBE_SIZE_ORDER)), np.int64)
        self.cells = np.zeros((K, len(CELL_ORDER)), np.int64)
        self.ar_hist = np.zeros((K, len(AR_EDGES) + 1), np.int64)
        self.area_hist = np.zeros((K, len(AREA_EDGES) + 1), np.int64)
        self.ar = [QuantileSketch(exact_cap) for _ in range(K)]
        self.area = [QuantileSketch(exact_cap) for _ in range(K)]

    @staticmethod
    def _count2d(cat, idx, shape):
        flat = np.bincount(cat * shape[1] + idx, minlength=shape[0] * shape[1])
        return flat.reshape(shape)

    def add_chunk(self, chunk):
        self.images += int(chunk["img_w"].size)
        self.image_sizes.update(zip(chunk["img_w"].tolist(), chunk["img_h"].tolist()))
        self.boxes_per_image.update(chunk["img_boxes"].tolist())
        cat = np.asarray(chunk["cat"], np.int64)
        if cat.size == 0:
            return self
        W, H = _box_image_sizes(chunk)
        ok = (chunk["w"] > 0) & (chunk["h"] > 0)
        with np.errstate(all="ignore"):  # a box of 1e300 is a valid COCO box, but its ratios do not
            w, h = np.asarray(chunk["w"], np.float64), np.asarray(chunk["h"], np.float64)  # square in a float
            ratios = (w / h, h / w, w * h / (np.asarray(W, np.float64) * np.asarray(H, np.float64)))
            ok &= np.logical_and.reduce([np.isfinite(r * r) & (r * r > 0) for r in ratios])
        self.degenerate += int((~ok).sum())
        if not ok.all():
            cat, W, H = cat[ok], W[ok], H[ok]
            chunk = {k: chunk[k][ok] for k in ("w", "h", "x1", "y1", "x2", "y2")}
        f = box_feature_arrays(chunk["w"], chunk["h"], W, H, chunk["x1"], chunk["y1"], chunk["x2"], chunk["y2"])
        self.counts += np.bincount(cat, minlength=self.K)
        self.ar_buckets += self._count2d(cat, f["ar_bucket"], self.ar_buckets.shape)
        self.shapes += self._count2d(cat, f["shape"], self.shapes.shape)
        self.identify_sizes += self._count2d(cat, f["identify_size"], self.identify_sizes.shape)
        self.describe_sizes += self._count2d(cat, f["describe_size"], self.describe_sizes.shape)
        self.cells += self._count2d(cat, f["cell"], self.cells.shape)
        self.ar_hist += self._count2d(cat, f["ar_hist"], self.ar_hist.shape)
        self.area_hist += self._count2d(cat, f["area_hist"], self.area_hist.shape)
        for k in np.unique(cat).tolist():
            sel = cat == k
            self.ar[k].add_array(f["aspect_ratio"][sel])
            self.area[k].add_array(f["area_ratio"][sel])
        return self

    def add_images(self, images):
        return self.add_chunk(chunk_from_images(images))

    def merge(self, other):
        self.images += other.images
        self.degenerate += other.degenerate
        self.image_sizes.update(other.image_sizes)
        self.boxes_per_image.update(other.boxes_per_image)
        for name in ("counts", "ar_buckets", "shapes", "identify_sizes", "describe_sizes", "cells", "ar_hist", "area_hist"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k in range(self.K):
            self.ar[k].merge(other.ar[k])
            self.area[k].merge(other.area[k])
        return self

    def _merged(self, sketches):
        total = QuantileSketch(self.exact_cap)
        for s in sketches:
            total.merge(s)
        return total

    def summary(self):
        """JSON-ready dict; the keys are described in docs/stats.md."""
        n = int(self.counts.sum())

        def counts_of(words, row):
            total = int(row.sum())
            return {w: {"count": int(c), "percent": percent(int(c), total)} for w, c in zip(words, row.tolist())}

        def ar_block(sketch, buckets):
            out = sketch.summary()
            out["buckets"] = counts_of(AR_BUCKETS, buckets)
            return out

        present = [k for k in range(self.K) if self.counts[k]]
        return {
            "images": self.images,
            "boxes": n,
            "degenerate_boxes": self.degenerate,
            "boxes_per_image": {str(k): v for k, v in sorted(self.boxes_per_image.items())},
            "image_sizes": {f"{w}x{h}": c for (w, h), c in sorted(self.image_sizes.items(), key=lambda kv: (-kv[1], kv[0]))},
            "categories": {CATEGORIES[k]: {"count": int(self.counts[k]), "percent": percent(int(self.counts[k]), n)}
                           for k in range(self.K)},
            "aspect_ratio": {
                "all": ar_block(self._merged(self.ar), self.ar_buckets.sum(0)),
                "by_category": {CATEGORIES[k]: ar_block(self.ar[k], self.ar_buckets[k]) for k in present},
            },
            "ar_histogram": {"edges": list(AR_EDGES), "all": self.ar_hist.sum(0).tolist(),
                             "by_category": {CATEGORIES[k]: self.ar_hist[k].tolist() for k in present}},
            "shapes": {"all": counts_of(SHAPE_ORDER, self.shapes.sum(0)),
                       "by_category": {CATEGORIES[k]: counts_of(SHAPE_ORDER, self.shapes[k]) for k in present}},
            "area_ratio": self._merged(self.area).summary(nd=8),
            "area_histogram": {"edges": list(AREA_EDGES), "all": self.area_hist.sum(0).tolist(),
                               "by_category": {CATEGORIES[k]: self.area_hist[k].tolist() for k in present}},
            "identify_sizes": counts_of(IDENTIFY_SIZE_ORDER, self.identify_sizes.sum(0)),
            "describe_sizes": counts_of(DESCRIBE_SIZE_ORDER, self.describe_sizes.sum(0)),
            "cells": counts_of(CELL_ORDER, self.cells.sum(0)),
        }


# --- per-dialogue features and the dialogue-level accumulator -------------------------------------

WORD_PATTERN = r"[^ \t\n\r\f\v]+"                              # a word: a run of non-(ASCII)space


def word_count(text: str) -> int:
    return len(re.findall(WORD_PATTERN, text))


DIALOGUE_COLUMNS = ("split", "task", "subset", "width", "height", "question", "answer", "template_id",
                    "gt_boxes", "gt_categories", "gt_cells", "gt_sizes", "gt_shapes", "gt_relations")


def dialogue_features(row):
    """Scalar reference of the per-dialogue statistics of one Parquet row (a dict)."""
    relations = [split_relation(r) for r in row.get("gt_relations") or []]
    return {
        "task": row["task"],
        "subset": row["subset"] or "",
        "answer_words": word_count(row["answer"]),
        "answer_chars": len(row["answer"]),
        "question_words": word_count(row["question"]),
        "boxes": len(row.get("gt_boxes") or []),
        "template_id": row["template_id"],
        "shapes": list(row.get("gt_shapes") or []) if row["task"] == "identify" else [],
        "sizes": list(row.get("gt_sizes") or []),
        "cells": list(row.get("gt_cells") or []) if row["task"] == "identify" else [],
        "relations": [r[1] for r in relations],
        "directions": [r[3] or "(same centre)" for r in relations],
    }


class DialogueStats:
    """Mergeable dialogue-level statistics of one split; every field is an integer counter."""

    def __init__(self):
        self.tasks = collections.Counter()          # (task, subset or "") -> dialogues
        self.answer_words = collections.Counter()   # (task, subset) -> total words
        self.answer_chars = collections.Counter()
        self.question_words = collections.Counter()
        self.boxes = collections.Counter()          # (task, subset) -> total gt boxes
        self.templates = collections.Counter()      # (task, template_id) -> dialogues
        self.words = collections.Counter()          # (field, task, word) -> occurrences

    def add_row(self, row):
        f = dialogue_features(row)
        key = (f["task"], f["subset"])
        self.tasks[key] += 1
        self.answer_words[key] += f["answer_words"]
        self.answer_chars[key] += f["answer_chars"]
        self.question_words[key] += f["question_words"]
        self.boxes[key] += f["boxes"]
        self.templates[(f["task"], f["template_id"])] += 1
        for field in ("shapes", "sizes", "cells", "relations", "directions"):
            for w in f[field]:
                self.words[(field, f["task"], w)] += 1
        return self

    def add_table(self, table):
        """Vectorised add_row over a pyarrow Table with DIALOGUE_COLUMNS (any extra columns ignored)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if table.num_rows == 0:
            return self
        subset = pc.fill_null(table.column("subset"), "")
        answer = table.column("answer")
        t = pa.table({
            "task": table.column("task"), "subset": subset,
            "aw": pc.count_substring_regex(answer, WORD_PATTERN),
            "ac": pc.utf8_length(answer),
            "qw": pc.count_substring_regex(table.column("question"), WORD_PATTERN),
            "nb": pc.fill_null(pc.list_value_length(table.column("gt_boxes")), 0),
        })
        g = t.group_by(["task", "subset"]).aggregate([("aw", "sum"), ("ac", "sum"), ("qw", "sum"), ("nb", "sum"), ("task", "count")])
        for r in g.to_pylist():
            key = (r["task"], r["subset"])
            self.tasks[key] += r["task_count"]
            self.answer_words[key] += r["aw_sum"]
            self.answer_chars[key] += r["ac_sum"]
            self.question_words[key] += r["qw_sum"]
            self.boxes[key] += r["nb_sum"]
        g = pa.table({"task": table.column("task"), "template_id": table.column("template_id")}) \
            .group_by(["task", "template_id"]).aggregate([("task", "count")])
        for r in g.to_pylist():
            self.templates[(r["task"], r["template_id"])] += r["task_count"]

        def words(field, column, tasks=None):
            col = table.column(column)
            task = table.column("task")
            if tasks is not None:
                mask = pc.is_in(task, value_set=pa.array(tasks))
                col, task = pc.filter(col, mask), pc.filter(task, mask)
            lengths = pc.fill_null(pc.list_value_length(col), 0)
            flat = pc.list_flatten(col)
            if len(flat) == 0:
                return
            tasks_rep = pc.take(task, pa.array(np.repeat(np.arange(len(task)), lengths.to_numpy(zero_copy_only=False))))
            values = flat
            if field in ("relations", "directions"):
                parts = pc.split_pattern(flat, "|")
                values = pc.list_element(parts, 1 if field == "relations" else 3)
                if field == "directions":
                    values = pc.if_else(pc.equal(values, ""), "(same centre)", values)
            g = pa.table({"task": tasks_rep, "w": values}).group_by(["task", "w"]).aggregate([("w", "count")])
            for r in g.to_pylist():
                self.words[(field, r["task"], r["w"])] += r["w_count"]

        words("shapes", "gt_shapes", ["identify"])
        words("sizes", "gt_sizes")
        words("cells", "gt_cells", ["identify"])
        words("relations", "gt_relations")
        words("directions", "gt_relations")
        return self

    def merge(self, other):
        for name in ("tasks", "answer_words", "answer_chars", "question_words", "boxes", "templates", "words"):
            getattr(self, name).update(getattr(other, name))
        return self

    def summary(self):
        total = sum(self.tasks.values())
        tasks = {}
        for task in TASKS + tuple(sorted({t for t, _ in self.tasks} - set(TASKS))):
            keys = sorted(k for k in self.tasks if k[0] == task)
            if keys:
                tasks[task] = self._task_entry(task, keys, total)
        identify = tasks.get("identify", {}).get("count", 0)
        stated = sum(n for (f, t, _), n in self.words.items() if f == "shapes" and t == "identify")
        return {
            "dialogues": total,
            "tasks": tasks,
            "identify_shapes": self._word_counts("shapes", "identify", SHAPE_ORDER),
            "identify_shape_stated_percent": percent(stated, identify),
            "identify_sizes": self._word_counts("sizes", "identify", IDENTIFY_SIZE_ORDER),
            "identify_cells": self._word_counts("cells", "identify", CELL_ORDER),
            "describe_sizes": self._word_counts("sizes", "describe", DESCRIBE_SIZE_ORDER),
            "grounding_relations": self._word_counts("relations", "grounding", RELATION_ORDER),
            "grounding_directions": self._word_counts("directions", "grounding", ()),
        }

    def _task_entry(self, task, keys, total):
        """One task's figures over its (task, subset) keys, and its subsets' where it has them."""
        n = sum(self.tasks[k] for k in keys)

        def mean(counter, nd):
            return _r(sum(counter[k] for k in keys) / n, nd)

        entry = {"count": n, "percent": percent(n, total),
                 "answer_words_mean": mean(self.answer_words, 3), "answer_chars_mean": mean(self.answer_chars, 3),
                 "question_words_mean": mean(self.question_words, 3), "boxes_mean": mean(self.boxes, 4),
                 "templates_used": sum(1 for (t, _) in self.templates if t == task)}
        subsets = [k for k in keys if k[1]]
        if subsets or task in SUBSET_TASKS:
            order = {"single": 0, "multi": 1}
            entry["subsets"] = {
                s: {"count": self.tasks[(task, s)], "percent_of_task": percent(self.tasks[(task, s)], n),
                    "percent": percent(self.tasks[(task, s)], total),
                    "boxes_mean": _r(self.boxes[(task, s)] / self.tasks[(task, s)], 4)}
                for _, s in sorted(subsets, key=lambda k: (order.get(k[1], 2), k[1]))}
        return entry

    def _word_counts(self, field, task, order):
        """{word: count and percent} of one field's words in one task, in `order` then alphabetical."""
        c = {w: n for (f, t, w), n in self.words.items() if f == field and t == task}
        if not c:
            return {}
        total_w = sum(c.values())
        keys = [w for w in order if w in c] + sorted(set(c) - set(order))
        return {w: {"count": c[w], "percent": percent(c[w], total_w)} for w in keys}


# --- assembling the report ------------------------------------------------------------------------

METHODS = {
    "aspect_ratio": "AR = h/w of each valid box (paper Eq. 2, as a ratio, not x100); buckets AR<=0.67, 0.67<AR<=1.5, AR>1.5",
    "shapes": "identify shape words on w/h (docs/rules.md section 2): >1.5 wide, <0.67 tall, else roughly square",
    "std": "population standard deviation (ddof=0) from exact sums",
    "median": (f"exact while a key holds <= {{exact_cap}} values, else the geometric centre of log-bins of relative "
               f"width {SKETCH_REL_WIDTH:g} (relative error <= {SKETCH_MAX_REL_ERROR:.1e}); 'quantile_method' says which"),
    "area_ratio": "R = w*h/(W*H) as a fraction; identify sizes >=0.40/0.25/0.10/0.03, describe sizes <0.05 / >0.30",
    "cells": "3x3 grid cell of the centre of the rounded, clamped xyxy box",
    "boxes": "valid boxes only (docs/rules.md section 1); rejected records are counted under 'rejects'",
}


def assemble_stats(input_info, splits, boxes=None, dialogues=None, rejects=None, exact_cap=DEFAULT_EXACT_CAP):
    """The stats.json document from per-split summaries (dicts keyed by split)."""
    boxes, dialogues, rejects = boxes or {}, dialogues or {}, rejects or {}
    order = sorted(splits, key=split_sort_key)
    methods = dict(METHODS, median=METHODS["median"].format(exact_cap=exact_cap))
    if input_info.get("box_source") == "gt_boxes":
        methods["boxes"] += ("; from the grounding dialogues' integer xyxy boxes (w = x2-x1, h = y2-y1 after "
                             "rounding and clamping), so AR and R are approximate and boxes that round to zero size "
                             "are counted as degenerate_boxes")
    doc = {
        "tool": "sarchat stats",
        "version": 1,
        "input": input_info,
        "splits": order,
        "methods": methods,
        "boxes": {s: boxes[s] for s in order if s in boxes},
        "rejects": {s: dict(sorted(rejects.get(s, {}).items())) for s in order if s in rejects},
    }
    if dialogues:
        doc["dialogues"] = {s: dialogues[s] for s in order if s in dialogues}
    return doc


def load_paper_stats():
    """The paper's published numbers (transforms/stats/paper_stats.json)."""
    text = resources.files("sarchat.transforms.stats").joinpath("paper_stats.json").read_text(encoding="utf-8")
    return json.loads(text)


def dumps(doc) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
