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
import functools
import json
import math
from fractions import Fraction
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms import geometry
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX
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
        self.total += sum(((h << 26) + l) << (ex - 53 + _SUM_SHIFT)
                          for ex, h, l in zip(e[starts].tolist(), hi_sums.tolist(), lo_sums.tolist()))
        return self

    def merge(self, other):
        self.total += other.total
        return self

    def fraction(self) -> Fraction:
        return Fraction(self.total, 1 << _SUM_SHIFT)


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
        self.bins = collections.Counter()   # log-bin index -> count

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
        self.bins.update(dict(zip(keys.tolist(), counts.tolist())))
        if self.values is not None and self.n <= self.exact_cap:
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
        self.bins.update(other.bins)
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

    def quantiles(self, qs):
        """numpy 'linear' quantiles: exact values, or log-bin centres of the order statistics."""
        if not self.n:
            return [None for _ in qs]
        if self.values is not None:  # exact
            return [float(x) for x in np.quantile(np.concatenate(self.values), qs)]
        keys = sorted(self.bins)
        cum = np.cumsum([self.bins[k] for k in keys])
        centres = np.array([math.exp((k + 0.5) * SKETCH_LOG_STEP) for k in keys])
        pos = np.asarray(qs, np.float64) * (self.n - 1)
        lo = np.floor(pos)
        # the values of the order statistics on either side (0-based ranks), clamped to [min, max]
        a, b = (np.clip(centres[np.searchsorted(cum, rank, side="right")], self.min, self.max)
                for rank in (lo, np.minimum(lo + 1, self.n - 1)))
        return (a + (pos - lo) * (b - a)).tolist()

    def summary(self, nd=6):
        p25, med, p75 = self.quantiles([0.25, 0.5, 0.75])
        return {
            "count": self.n, "mean": _r(self.mean(), nd), "median": _r(med, nd), "std": _r(self.std(), nd),
            "p25": _r(p25, nd), "p75": _r(p75, nd),
            "min": _r(self.min, nd) if self.n else None, "max": _r(self.max, nd) if self.n else None,
            "quantile_method": "exact" if self.exact else f"log-histogram (relative error <= {SKETCH_MAX_REL_ERROR:.1e})",
        }


# --- per-box features -----------------------------------------------------------------------------

# geometry's word indices (its thresholds, written once there) -> this module's *_ORDER indices
_SHAPE_FROM_GEOMETRY = np.array([SHAPE_ORDER.index(w) for w in geometry.SHAPES], np.int64)
_IDENTIFY_SIZE_FROM_GEOMETRY = np.array([IDENTIFY_SIZE_ORDER.index(w) for w in geometry.IDENTIFY_SIZES], np.int64)
_DESCRIBE_SIZE_FROM_GEOMETRY = np.array([DESCRIBE_SIZE_ORDER.index(w) for w in geometry.DESCRIBE_SIZES], np.int64)


def box_feature_arrays(w, h, img_w, img_h, xyxy):
    """Every per-box statistic of arrays of boxes: the ratios, and index arrays into the *_ORDER tuples.

    w, h: box sizes (floats); img_w, img_h: the image size of each box; xyxy: the integer clamped
    boxes (n, 4) the dialogues use (for the grid cell).
    """
    w, h, W, H = (np.asarray(v, np.float64) for v in (w, h, img_w, img_h))
    ar, r = h / w, (w * h) / (W * H)
    return {
        "aspect_ratio": ar, "area_ratio": r,
        "shape": _SHAPE_FROM_GEOMETRY[geometry.shape_index(w / h)],                       # SHAPE_ORDER
        "ar_bucket": np.where(ar <= AR_LOW, 0, np.where(ar <= AR_HIGH, 1, 2)),            # AR_BUCKETS
        "identify_size": _IDENTIFY_SIZE_FROM_GEOMETRY[geometry.identify_size_index(r)],   # IDENTIFY_SIZE_ORDER
        "describe_size": _DESCRIBE_SIZE_FROM_GEOMETRY[geometry.describe_size_index(r)],   # DESCRIBE_SIZE_ORDER
        "cell": geometry.cell_index_array(np.asarray(xyxy, np.float64).reshape(-1, 4), W, H),
        "ar_hist": np.searchsorted(np.asarray(AR_EDGES), ar, side="right"),
        "area_hist": np.searchsorted(np.asarray(AREA_EDGES), r, side="right"),
    }


# --- box chunks: the unit a reader hands to the box accumulator -----------------------------------

def chunk_from_images(images):
    """parse_coco image records -> a box chunk (numpy arrays; each box carries its image's size W, H)."""
    boxes = np.asarray([(*b["bbox"], im["width"], im["height"], CATEGORY_INDEX[b["category"]])
                        for im in images for b in im["boxes"]], np.float64).reshape(-1, 7)
    x, y, w, h, W, H, cat = boxes.T
    return {"img_w": np.asarray([im["width"] for im in images], np.int64),
            "img_h": np.asarray([im["height"] for im in images], np.int64),
            "img_boxes": np.asarray([len(im["boxes"]) for im in images], np.int64), "cat": cat.astype(np.int64),
            "w": w, "h": h, "W": W, "H": H, "xyxy": geometry.xyxy_array(x, y, w, h, W, H)}


def chunk_from_grounding(widths, heights, gt_boxes, gt_categories):
    """Grounding rows (one per image, every valid box, integer xyxy) -> a box chunk.

    w = x2 - x1 and h = y2 - y1 of the rounded, clamped boxes: an approximation of the source boxes
    (used when the source annotations are not available).
    """
    img_boxes = np.asarray([len(b) for b in gt_boxes], np.int64)
    boxes = np.asarray([c for row in gt_boxes for c in row], np.float64).reshape(-1, 4)
    widths, heights = np.asarray(widths, np.int64), np.asarray(heights, np.int64)
    return {"img_w": widths, "img_h": heights, "img_boxes": img_boxes,
            "cat": np.asarray([CATEGORY_INDEX[c] for row in gt_categories for c in row], np.int64),
            "w": boxes[:, 2] - boxes[:, 0], "h": boxes[:, 3] - boxes[:, 1],
            "W": np.repeat(widths, img_boxes), "H": np.repeat(heights, img_boxes), "xyxy": boxes}


# --- box-level accumulator ------------------------------------------------------------------------

# what BoxStats counts per category: the feature (box_feature_arrays) -> how many values it takes
_COUNTED = {"ar_bucket": len(AR_BUCKETS), "shape": len(SHAPE_ORDER), "identify_size": len(IDENTIFY_SIZE_ORDER),
            "describe_size": len(DESCRIBE_SIZE_ORDER), "cell": len(CELL_ORDER), "ar_hist": len(AR_EDGES) + 1,
            "area_hist": len(AREA_EDGES) + 1}


class BoxStats:
    """Mergeable box-level statistics of one split (per category; split totals are merges)."""

    K = len(CATEGORIES)

    def __init__(self, exact_cap=DEFAULT_EXACT_CAP):
        self.exact_cap = exact_cap
        self.images = 0
        self.degenerate = 0                                  # boxes with w or h = 0 after rounding, or ratios beyond float
        self.image_sizes = collections.Counter()             # (W, H) -> images
        self.boxes_per_image = collections.Counter()         # n -> images
        self.counts = np.zeros(self.K, np.int64)
        self.counted = {name: np.zeros((self.K, n), np.int64) for name, n in _COUNTED.items()}  # [category, value]
        self.ar = [QuantileSketch(exact_cap) for _ in range(self.K)]
        self.area = [QuantileSketch(exact_cap) for _ in range(self.K)]

    def add_chunk(self, chunk):
        self.images += int(chunk["img_w"].size)
        self.image_sizes.update(zip(chunk["img_w"].tolist(), chunk["img_h"].tolist()))
        self.boxes_per_image.update(chunk["img_boxes"].tolist())
        cat = np.asarray(chunk["cat"], np.int64)
        if cat.size == 0:
            return self
        w, h, W, H = (np.asarray(chunk[k], np.float64) for k in ("w", "h", "W", "H"))
        with np.errstate(all="ignore"):  # a box of 1e300 is a valid COCO box, but its ratios do not square in a float
            ok = np.logical_and.reduce([np.isfinite(r * r) & (r * r > 0) for r in (w / h, h / w, w * h / (W * H))])
            ok &= (w > 0) & (h > 0)
        self.degenerate += int((~ok).sum())
        cat = cat[ok]
        f = box_feature_arrays(w[ok], h[ok], W[ok], H[ok], chunk["xyxy"][ok])
        self.counts += np.bincount(cat, minlength=self.K)
        for name, table in self.counted.items():
            table += np.bincount(cat * table.shape[1] + f[name], minlength=table.size).reshape(table.shape)
        for k in np.unique(cat).tolist():
            sel = cat == k
            self.ar[k].add_array(f["aspect_ratio"][sel])
            self.area[k].add_array(f["area_ratio"][sel])
        return self

    def merge(self, other):
        self.images += other.images
        self.degenerate += other.degenerate
        self.image_sizes.update(other.image_sizes)
        self.boxes_per_image.update(other.boxes_per_image)
        self.counts += other.counts
        for name, table in self.counted.items():
            table += other.counted[name]
        for mine, theirs in zip(self.ar + self.area, other.ar + other.area):
            mine.merge(theirs)
        return self

    def _merged(self, sketches):
        return functools.reduce(QuantileSketch.merge, sketches, QuantileSketch(self.exact_cap))

    def summary(self):
        """JSON-ready dict; the keys are described in docs/stats.md."""
        present = [k for k in range(self.K) if self.counts[k]]
        c = self.counted

        def counts_of(words, row):
            total = int(row.sum())
            return {w: {"count": int(c), "percent": percent(int(c), total)} for w, c in zip(words, row.tolist())}

        def all_and_by_category(block):
            """{"all": block(every category's index), "by_category": {each present category: block([its index])}}."""
            return {"all": block(range(self.K)), "by_category": {CATEGORIES[k]: block([k]) for k in present}}

        def ar_block(ks):
            buckets = counts_of(AR_BUCKETS, c["ar_bucket"][ks].sum(0))
            return dict(self._merged(self.ar[k] for k in ks).summary(), buckets=buckets)

        def histogram(edges, counts):
            return {"edges": list(edges), **all_and_by_category(lambda ks: counts[ks].sum(0).tolist())}

        return {
            "images": self.images,
            "boxes": int(self.counts.sum()),
            "degenerate_boxes": self.degenerate,
            "boxes_per_image": {str(k): v for k, v in sorted(self.boxes_per_image.items())},
            "image_sizes": {f"{w}x{h}": c for (w, h), c in sorted(self.image_sizes.items(), key=lambda kv: (-kv[1], kv[0]))},
            "categories": counts_of(CATEGORIES, self.counts),
            "aspect_ratio": all_and_by_category(ar_block),
            "ar_histogram": histogram(AR_EDGES, c["ar_hist"]),
            "shapes": all_and_by_category(lambda ks: counts_of(SHAPE_ORDER, c["shape"][ks].sum(0))),
            "area_ratio": self._merged(self.area).summary(nd=8),
            "area_histogram": histogram(AREA_EDGES, c["area_hist"]),
            "identify_sizes": counts_of(IDENTIFY_SIZE_ORDER, c["identify_size"].sum(0)),
            "describe_sizes": counts_of(DESCRIBE_SIZE_ORDER, c["describe_size"].sum(0)),
            "cells": counts_of(CELL_ORDER, c["cell"].sum(0)),
        }


# --- the dialogue-level accumulator ---------------------------------------------------------------

WORD_PATTERN = r"[^ \t\n\r\f\v]+"                              # a word: a run of non-(ASCII)space
DIALOGUE_COLUMNS = ("split", "task", "subset", "width", "height", "question", "answer", "template_id",
                    "gt_boxes", "gt_categories", "gt_cells", "gt_sizes", "gt_shapes", "gt_relations")
_SUMS = ("answer_words", "answer_chars", "question_words", "boxes")   # totals per (task, subset)
# the words counted: (field, list column, the tasks whose rows count or None for all, the part of a relation)
_WORDS = (("shapes", "gt_shapes", ["identify"], None), ("sizes", "gt_sizes", None, None),
          ("cells", "gt_cells", ["identify"], None), ("relations", "gt_relations", None, 1),
          ("directions", "gt_relations", None, 3))


class DialogueStats:
    """Mergeable dialogue-level statistics of one split; every field is an integer counter."""

    def __init__(self):
        self.tasks = collections.Counter()          # (task, subset or "") -> dialogues
        self.sums = {name: collections.Counter() for name in _SUMS}  # name -> (task, subset) -> total
        self.templates = collections.Counter()      # (task, template_id) -> dialogues
        self.words = collections.Counter()          # (field, task, word) -> occurrences

    def add_table(self, table):
        """A pyarrow Table with DIALOGUE_COLUMNS (any extra columns ignored), counted at once."""
        if table.num_rows == 0:
            return self
        answer, task = table.column("answer"), table.column("task")
        t = pa.table({
            "task": task, "subset": pc.fill_null(table.column("subset"), ""),
            "answer_words": pc.count_substring_regex(answer, WORD_PATTERN), "answer_chars": pc.utf8_length(answer),
            "question_words": pc.count_substring_regex(table.column("question"), WORD_PATTERN),
            "boxes": pc.fill_null(pc.list_value_length(table.column("gt_boxes")), 0),
        })
        aggregates = [(n, "sum") for n in _SUMS] + [("task", "count")]
        for r in t.group_by(["task", "subset"]).aggregate(aggregates).to_pylist():
            self.tasks[(r["task"], r["subset"])] += r["task_count"]
            for n in _SUMS:
                self.sums[n][(r["task"], r["subset"])] += r[f"{n}_sum"]
        g = pa.table({"task": task, "template_id": table.column("template_id")})
        for r in g.group_by(["task", "template_id"]).aggregate([("task", "count")]).to_pylist():
            self.templates[(r["task"], r["template_id"])] += r["task_count"]
        for field, column, tasks, part in _WORDS:
            col, of = table.column(column), task
            if tasks is not None:
                mask = pc.is_in(task, value_set=pa.array(tasks))
                col, of = pc.filter(col, mask), pc.filter(task, mask)
            values = pc.list_flatten(col)
            if len(values) == 0:
                continue
            lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
            if part is not None:  # "subject|relation|object|direction"
                values = pc.list_element(pc.split_pattern(values, "|"), part)
            if field == "directions":
                values = pc.if_else(pc.equal(values, ""), "(same centre)", values)
            g = pa.table({"task": pc.take(of, pa.array(np.repeat(np.arange(len(of)), lengths))), "w": values})
            for r in g.group_by(["task", "w"]).aggregate([("w", "count")]).to_pylist():
                self.words[(field, r["task"], r["w"])] += r["w_count"]
        return self

    def merge(self, other):
        for mine, theirs in zip(self._counters(), other._counters()):
            mine.update(theirs)
        return self

    def _counters(self):
        return [self.tasks, self.templates, self.words, *self.sums.values()]

    def summary(self):
        total = sum(self.tasks.values())
        seen = {t for t, _ in self.tasks}
        order = [t for t in TASKS if t in seen] + sorted(seen - set(TASKS))   # the known tasks first, in their order
        tasks = {task: self._task_entry(task, total) for task in order}
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

    def _task_entry(self, task, total):
        """One task's figures over its (task, subset) keys, and its subsets' where it has them."""
        keys = sorted(k for k in self.tasks if k[0] == task)
        n = sum(self.tasks[k] for k in keys)
        entry = {"count": n, "percent": percent(n, total),
                 **{f"{name}_mean": _r(sum(self.sums[name][k] for k in keys) / n, 4 if name == "boxes" else 3)
                    for name in _SUMS},
                 "templates_used": sum(1 for (t, _) in self.templates if t == task)}
        subsets = [k for k in keys if k[1]]
        if subsets or task in SUBSET_TASKS:
            order = {"single": 0, "multi": 1}
            entry["subsets"] = {
                s: {"count": self.tasks[(task, s)], "percent_of_task": percent(self.tasks[(task, s)], n),
                    "percent": percent(self.tasks[(task, s)], total),
                    "boxes_mean": _r(self.sums["boxes"][(task, s)] / self.tasks[(task, s)], 4)}
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
