"""Referring: the boxes of a named category, with their cells (docs/rules.md sections 7 and 12)."""
from sarchat.transforms import geometry
from sarchat.transforms.answer_words import OK, UNPARSEABLE, asked_category, find_cells, parse_boxes
from sarchat.transforms.box_match import box_marks
from sarchat.transforms.categories import plural
from sarchat.transforms.tasks.column_scoring import box_scores, subset_column
from sarchat.transforms.tasks.task_spec import TaskSpec, detected_boxes, iou_columns, most_common, row_dicts, subset_of

SPEC = TaskSpec("refer", "[refer]", "Referring", subsets=("single", "multi"),
                columns=(("refer.multi.iou25", "Multi Ref IoU=.25"), ("refer.multi.iou50", "Multi Ref IoU=.5"),
                         ("refer.single.iou25", "Single Ref IoU=.25"), ("refer.single.iou50", "Single Ref IoU=.5")),
                answer_has_boxes=True, min_templates=30, by_category=True, prior_columns=("gt_categories",))
# The placeholders each kind of template text may use and must use (templates/__init__.py).
TEMPLATE_FIELDS: dict[str, tuple[set, set]] = {"question": ({"category", "category_plural", "n", "category_n", "be"}, {"n", "category_n"})}


def parse(text, box_format, width, height):
    """{'status', 'boxes', 'cells'}: every box in the declared format and the cells named;
    unparseable when no box in the declared format."""
    boxes = parse_boxes(text, box_format, width, height)
    return {"status": OK if boxes else UNPARSEABLE, "boxes": boxes, "cells": find_cells(text)}


def columns(row):
    """The columns a test row counts in: its subset's, at IoU 0.25 and 0.5."""
    s = subset_of(row)
    return [f"refer.{s}.iou25", f"refer.{s}.iou50"]


def score(row, parsed):
    """({column: (TP, FP, FN)}, IoUs per truth box) of a parsed answer: boxes at IoU 0.25 and 0.5."""
    return iou_columns(f"refer.{subset_of(row)}", parsed["boxes"], row.get("gt_boxes") or [])


def miss(row):
    """{column: (0, 0, FN)} of an answer that scores nothing."""
    return {c: (0, 0, len(row.get("gt_boxes") or [])) for c in columns(row)}


def score_columns(truth, parses, uok, ok, out):
    """score and miss for all rows at once (column_scoring)."""
    box_scores(truth, parses, uok, out, [(subset_column(truth, "refer", suffix), t)
                                         for suffix, t in ((".iou25", 0.25), (".iou50", 0.5))])


def pred_labels(parsed):
    """The samples' `pred_labels` column: the cells named."""
    return list(parsed["cells"])


def marks(row, res):
    """The report's marks of a scored answer (res: its sample record): [(text, 'ok' | 'bad' | 'miss' | 'na')]."""
    gt_cells = list(row.get("gt_cells") or [])
    return box_marks(res.get("pred_boxes") or [], row.get("gt_boxes") or []) + [
        (c, "ok" if c in gt_cells else "bad") for c in res.get("pred_labels") or []]


# ---- baselines: a blind prior's answer (inference/baselines.py) and a detector's (inference/cfar.py)


def fit_prior(tally, rows):
    """The blind prior's counts of train rows: per category, each number of instances."""
    by_cat = tally.counters("refer")
    for row in row_dicts(rows, SPEC.prior_columns):
        cats = row.get("gt_categories") or []
        if cats:
            by_cat[cats[0]][len(cats)] += 1


def prior(tally, top_category):
    """The blind prior's entry: per category its most common number of instances."""
    return {"refer": {c: most_common(v, 1) for c, v in tally.counters("refer").items()}}


def blind_answer(prior, row, fmt, W, H):
    """The blind prior's answer: the most common number of the asked category, at its prior boxes."""
    cat = prior.question_category(row.get("question"))
    n = int(prior.priors["refer"].get(cat, 1))
    return "".join(f"{fmt.render_one(b, W, H)} ({cell})" for b, cell in prior.prior_boxes(cat, n, W, H))


def detector_answer(row, W, H, detections, region_category):
    """A detector's answer: its detections of the asked category (detected_boxes) with their cells."""
    category = asked_category(row["question"]) or "ship"
    boxes = detected_boxes(detections(), category)
    if not boxes:
        return f"There is no {category} in the image."
    return "".join(f"{geometry.box_text(b)} ({geometry.grid_cell(b, W, H)})" for b in boxes)


# ---- building its dialogues from a shard's boxes (transforms/generate/dialogues.py gives ctx)


def build(ctx):
    """One row per (image, category present): its boxes with their cells."""
    rows, cells, texts = ctx.rows("refer"), ctx.shard.cell, ctx.shard.text
    for i, image, lo, cats, by_cat in ctx.per_image:
        for cat in cats:
            group = by_cat[cat]
            n = len(group)
            subset = "single" if n == 1 else "multi"
            did, t = ctx.pick("refer", image, subset, cat)
            q = ctx.format(t["question"], category=cat, category_plural=plural(cat), n=n, category_n=plural(cat, n),
                           be="is" if n == 1 else "are")
            answer = "".join([f"{texts[b]} ({cells[b]})" for b in group])
            rows.add(did, i, subset, q, answer, t["id"], group, n)
    return rows.columns(ctx.shard)
