"""Instance counting: how many of a category, with their boxes (docs/rules.md sections 7 and 12)."""
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms import geometry
from sarchat.transforms.answer_words import OK, UNPARSEABLE, asked_category, parse_boxes, parse_number, strip_boxes
from sarchat.transforms.box_match import box_marks
from sarchat.transforms.categories import plural
from sarchat.transforms.tasks.column_scoring import box_scores, per_row, table_column, to_numpy
from sarchat.transforms.tasks.task_spec import TaskSpec, detected_boxes, iou_columns, most_common, row_dicts

SPEC = TaskSpec("count", "[count]", "Instance counting",
                columns=(("count.only_count", "Only count"), ("count.iou25", "Count IoU=.25"),
                         ("count.iou50", "Count IoU=.5")),
                answer_has_boxes=True, min_templates=15, by_category=True, prior_columns=("gt_categories", "gt_count"))
# The placeholders each kind of template text may use and must use (templates/__init__.py).
TEMPLATE_FIELDS: dict[str, tuple[set, set]] = {"question": ({"category", "category_plural"}, set())}


def parse(text, box_format, width, height):
    """{'status', 'count', 'boxes'}: the first number stated outside the boxes and all boxes;
    unparseable when no number is stated outside the boxes (digits "3" or words "three",
    "twenty-one", "no ships" = 0): boxes alone do not make a count answer parseable."""
    text = text or ""
    count = parse_number(strip_boxes(text))
    boxes = parse_boxes(text, box_format, width, height)
    return {"status": OK if count is not None else UNPARSEABLE, "count": count, "boxes": boxes}


def _gt_count(row):
    """The truth's count: gt_count, else the number of truth boxes."""
    return len(row.get("gt_boxes") or []) if row.get("gt_count") is None else row["gt_count"]


def _lead(n):
    return "There is 1 instance. " if n == 1 else f"There are {n} instances. "


def columns(row):
    """The columns a test row counts in."""
    return ["count.only_count", "count.iou25", "count.iou50"]


def score(row, parsed):
    """({column: (TP, FP, FN)}, IoUs per truth box) of a parsed answer: the stated count against
    gt_count (one unit per sample), the boxes at IoU 0.25 and 0.5."""
    out, ious = iou_columns("count", parsed["boxes"], row.get("gt_boxes") or [])
    return {"count.only_count": (1, 0, 0) if parsed["count"] == _gt_count(row) else (0, 1, 0), **out}, ious


def miss(row):
    """{column: (0, 0, FN)} of an answer that scores nothing."""
    n = len(row.get("gt_boxes") or [])
    return {"count.only_count": (0, 0, 1), "count.iou25": (0, 0, n), "count.iou50": (0, 0, n)}


def _gt_counts(truth):
    """score's gt_count per row: the row's gt_count, else its number of truth boxes."""
    c = table_column(truth.table, "gt_count", pa.int64())
    return np.where(to_numpy(pc.is_null(c)), truth.n_boxes, to_numpy(pc.fill_null(c, -1)).astype(np.int64))


def score_columns(truth, parses, uok, ok, out):
    """score and miss for all rows at once (column_scoring)."""
    stated = per_row(uok, [-1 if p["count"] is None else p["count"] for p in parses])
    right = ok & (stated == _gt_counts(truth))
    out.set(slice(None), 0, right.astype(np.int64), (ok & ~right).astype(np.int64), (~ok).astype(np.int64))
    box_scores(truth, parses, uok, out, ((1, 0.25), (2, 0.5)))


def pred_labels(parsed):
    """The samples' `pred_labels` column: nothing: the stated number and the boxes have their own columns."""
    return []


def marks(row, res):
    """The report's marks of a scored answer (res: its sample record): [(text, 'ok' | 'bad' | 'miss' | 'na')]."""
    gt_count = _gt_count(row)
    n = res.get("pred_count")
    return ([(f"count {n}" + ("" if n == gt_count else f" (truth {gt_count})"), "ok" if n == gt_count else "bad")]
            + box_marks(res.get("pred_boxes") or [], row.get("gt_boxes") or []))


# ---- baselines: a blind prior's answer (inference/baselines.py) and a detector's (inference/cfar.py)


def fit_prior(tally, rows):
    """The blind prior's counts of train rows: per category, each count."""
    by_cat = tally.counters("count")
    for row in row_dicts(rows, SPEC.prior_columns):
        cats = row.get("gt_categories") or []
        if cats:
            by_cat[cats[0]][int(row.get("gt_count") or len(cats))] += 1


def prior(tally, top_category):
    """The blind prior's entries: per category its most common count, and the most common count of all."""
    by_cat = tally.counters("count")
    return {"count": {c: most_common(v, 1) for c, v in by_cat.items()},
            "default_count": most_common(Counter(n for v in by_cat.values() for n in v.elements()), 1)}


def blind_answer(prior, row, fmt, W, H):
    """The blind prior's answer: the most common count of the asked category, at its prior boxes."""
    cat = prior.question_category(row.get("question"))
    n = int(prior.priors["count"].get(cat, prior.priors["default_count"]))
    return _lead(n) + "".join(fmt.render_one(b, W, H) for b, _ in prior.prior_boxes(cat, n, W, H))


def detector_answer(row, W, H, detections, region_category):
    """A detector's answer: its detections of the asked category (detected_boxes), top to bottom."""
    boxes = detected_boxes(detections(), asked_category(row["question"]) or "ship")
    return (_lead(len(boxes)) + geometry.boxes_text(boxes)).rstrip()


# ---- building its dialogues from a shard's boxes (transforms/generate/dialogues.py gives ctx)


def build(ctx):
    """One row per (image, category present): its number and boxes."""
    rows, texts = ctx.rows("count"), ctx.shard.text
    for i, image, lo, cats, by_cat in ctx.per_image:
        for cat in cats:
            group = by_cat[cat]
            did, t = ctx.pick("count", image, None, cat)
            n = len(group)
            q = ctx.format(t["question"], category=cat, category_plural=plural(cat))
            rows.add(did, i, None, q, _lead(n) + "".join([texts[b] for b in group]), t["id"], group, n)
    return rows.columns(ctx.shard)
