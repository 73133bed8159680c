"""Cross-modal identification: the attributes of the box a question names (docs/rules.md sections 6, 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, identify_attributes
from sarchat.transforms import geometry
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms.box_match import set_counts
from sarchat.transforms.categories import article
from sarchat.transforms.tasks.task_spec import TaskSpec, subset_of

SPEC = TaskSpec("identify", "[identify]", "Cross-modal identification", subsets=("single", "multi"),
                columns=(("identify.multi", "ID Multi"), ("identify.single", "ID Single")),
                question_has_box=True, min_templates=20, by_category=True, by_size=True)


def parse(text, box_format=None, width=None, height=None):
    """{'status', 'categories', 'sizes', 'shapes', 'cells'}: distinct values named, in order;
    unparseable when none of them (category word, size word, grid cell / position phrase, shape word)."""
    cats, sizes, shapes, cells = identify_attributes(text)
    status = OK if (cats or sizes or shapes or cells) else UNPARSEABLE
    return {"status": status, "categories": cats, "sizes": sizes, "shapes": shapes, "cells": cells}


def _truth(row):
    attrs = {("category", c) for c in row.get("gt_categories") or []}
    attrs |= {("size", s) for s in row.get("gt_sizes") or []}
    attrs |= {("cell", c) for c in row.get("gt_cells") or []}
    attrs |= {("shape", s) for s in row.get("gt_shapes") or []}
    return attrs


def columns(row):
    """The columns a test row counts in: its subset's."""
    return [f"identify.{subset_of(row)}"]


def score(row, parsed):
    """({column: (TP, FP, FN)}, IoUs per truth box) of a parsed answer: attribute sets (category,
    size, cell, and shape when the truth states one)."""
    pred = {("category", c) for c in parsed["categories"]}
    pred |= {("size", s) for s in parsed["sizes"]}
    pred |= {("cell", c) for c in parsed["cells"]}
    if row.get("gt_shapes"):  # shape is scored only when the truth states one
        pred |= {("shape", s) for s in parsed["shapes"]}
    return {f"identify.{subset_of(row)}": set_counts(pred, _truth(row))}, []


def miss(row):
    """{column: (0, 0, FN)} of an answer that scores nothing."""
    return {f"identify.{subset_of(row)}": (0, 0, len(_truth(row)))}


def pred_labels(parsed):
    """The samples' `pred_labels` column: attribute=value per attribute named."""
    return ([f"category={c}" for c in parsed["categories"]] + [f"size={s}" for s in parsed["sizes"]]
            + [f"cell={c}" for c in parsed["cells"]] + [f"shape={s}" for s in parsed["shapes"]])


def marks(row, res):
    """The report's marks of a scored answer (res: its sample record): [(text, 'ok' | 'bad' | 'miss' | 'na')]."""
    gt = _truth(row)
    said, out = set(), []
    for lab in res.get("pred_labels") or []:
        k, _, v = lab.partition("=")
        said.add((k, v))
        if k == "shape" and not row.get("gt_shapes"):
            out.append((f"{k}: {v} (not scored)", "na"))
        else:
            out.append((f"{k}: {v}", "ok" if (k, v) in gt else "bad"))
    return out + [(f"{k}: {v}", "miss") for k, v in sorted(gt - said)]


# ---- baselines: a blind prior's answer (inference/baselines.py) and a detector's (inference/cfar.py)


_CANONICAL = get_box_format("canonical")


def _sentence(size, cat, cell, shape):
    return (f"This is {article(size)} {size} {cat} located in the {cell} portion of the image. "
            f"It appears to be {shape} in shape.")


def blind_answer(prior, row, fmt, W, H):
    """The blind prior's answer: the most common attributes; with use_question_box, the cell, size
    and shape of the box the question names and the category most common for that size."""
    ident = prior.priors["identify"]
    size, cell, shape, cat = ident["size"], ident["cell"], ident["shape"], ident["category"]
    if prior.use_question_box:
        boxes = _CANONICAL.parse(row.get("question") or "", W, H)
        if boxes:
            x1, y1, x2, y2 = boxes[0]
            w, h = max(x2 - x1, 1e-9), max(y2 - y1, 1e-9)
            cell = geometry.grid_cell([x1, y1, x2, y2], W, H)
            size = geometry.identify_size(w * h / (W * H))
            shape = geometry.shape_word(w / h)
            cat = ident["category_by_size"].get(size) or cat
    return _sentence(size, cat, cell, shape)


def detector_answer(row, W, H, detections, region_category):
    """A detector's answer: region_category of the box the question names, and the cell, size and
    shape of that box (no detection pass over the whole scene)."""
    boxes = _CANONICAL.parse(row["question"] or "", W, H)
    if not boxes:
        return "I cannot find the region in the question."
    box = [int(round(v)) for v in boxes[0]]
    cat = region_category(box)
    xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    if xywh[2] <= 0 or xywh[3] <= 0:
        xywh = [box[0], box[1], max(1, xywh[2]), max(1, xywh[3])]
    size = geometry.identify_size(geometry.area_ratio(xywh, W, H))
    cell = geometry.grid_cell(box, W, H)
    shape = geometry.shape_word(geometry.aspect_ratio(xywh))
    return _sentence(size, cat, cell, shape)
