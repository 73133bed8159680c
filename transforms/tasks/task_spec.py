"""What a task module declares: its `TaskSpec` (data) and the protocol of functions it implements;
and the few helpers more than one task module uses.

Every module of sarchat.transforms.tasks holds one task whole: `SPEC` plus each name of PROTOCOL
(tests/test_task_table.py checks that every registered module has them all). Tasks layer: imports
only the vocabulary below it.
"""
from dataclasses import dataclass

import pyarrow as pa

from sarchat.transforms.box_match import box_counts, ious_per_gt, match_boxes

# The functions every task module defines, beside SPEC (docs/architecture.md, "Adding a task").
PROTOCOL = ("parse", "columns", "score", "miss", "score_columns", "pred_labels", "marks", "fit_prior", "prior",
            "blind_answer", "detector_answer", "build")


@dataclass(frozen=True)
class TaskSpec:
    id: str                      # "count"
    tag: str                     # "[count]", "" when the paper's questions have none
    label: str                   # the report's name of the task
    subsets: tuple = ()          # ("single", "multi") or () for a task without subsets
    columns: tuple = ()          # ((column id, report label), ...) in the paper's Table 3 order
    answer_has_boxes: bool = False    # the reference answer lists boxes (count, grounding, refer)
    question_has_box: bool = False    # the question names a box (identify)
    min_templates: int = 0       # the specification's smallest question bank
    by_category: bool = False    # one category per sample: the report breaks scores down by it
    by_size: bool = False        # one object size per sample: broken down by size too
    match_within_category: bool = False  # answer boxes are matched to the truth within their category
    prior_columns: tuple = ()    # the train columns its fit_prior reads (inference/baselines.py)

    @property
    def column_ids(self):
        return tuple(c for c, _ in self.columns)

    @property
    def has_boxes(self):
        """Boxes appear in the question or the answer, so the adapter's box-format hint applies."""
        return self.answer_has_boxes or self.question_has_box


def subset_of(row):
    """A test row's subset: its own when it has one, else by its number of truth boxes."""
    s = row.get("subset")
    if s in ("single", "multi"):
        return s
    return "single" if len(row.get("gt_boxes") or []) == 1 else "multi"


def iou_columns(prefix, boxes, gt_boxes):
    """({<prefix>.iou25, <prefix>.iou50: (TP, FP, FN)}, IoUs per truth box): the answer's boxes matched
    to the truth's, counted at IoU 0.25 and 0.5."""
    matches = match_boxes(boxes, gt_boxes)
    counts = {f"{prefix}.iou{round(t * 100)}": box_counts(len(boxes), len(gt_boxes), matches, t) for t in (0.25, 0.5)}
    return counts, ious_per_gt(matches, len(gt_boxes))


def row_dicts(rows, columns):
    """A fit_prior's rows as dicts: a pyarrow Table's `columns` (those it has), or the dicts given."""
    if isinstance(rows, pa.Table):
        return rows.select([c for c in columns if c in rows.column_names]).to_pylist()
    return rows


def most_common(counter, default=None):
    """The most common value of a Counter (default when empty); ties broken by the value's own
    order, so the result never depends on the order of the rows."""
    if not counter:
        return default
    best = max(counter.values())
    return sorted((k for k, v in counter.items() if v == best), key=repr)[0]


def ranked(counter):
    """A Counter's values, most common first (ties by the value's own order)."""
    return [k for k, _ in sorted(counter.items(), key=lambda kv: (-kv[1], repr(kv[0])))]


def detected_boxes(dets, category):
    """Boxes of the detections of a category, top to bottom; when there are none, the strongest
    detection of any category (the question is only asked about a category that is present, so the
    best guess is that the detector mislabelled it)."""
    boxes = [d.box for d in dets if d.category == category]
    if not boxes and dets:
        boxes = [max(dets, key=lambda d: d.score).box]
    return sorted(boxes, key=lambda b: (b[1], b[0]))
