"""The six SARChat-Bench tasks, each declared once (the task table).

A `TaskSpec` holds everything about a task that is data: its id, the tag its questions start with,
its subsets, the Table 3 columns it is scored on (with their report labels), whether its answers or
questions carry boxes, the smallest template bank the specification allows and the breakdowns the
report shows. Behaviour that differs per task (answer parsers, per-sample scorers, miss rules,
report marks, baseline answers) lives in small tables keyed by task id beside the code that uses
it; tests/test_task_table.py checks that every such table covers exactly the tasks declared here.

Like seqio's TaskRegistry, but static: the benchmark's tasks are fixed by the paper, so the table
is a tuple rather than a mutable registry. Vocabulary layer: imports nothing of the project.
"""
from dataclasses import dataclass


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

    @property
    def column_ids(self):
        return tuple(c for c, _ in self.columns)

    @property
    def has_boxes(self):
        """Boxes appear in the question or the answer, so the adapter's box-format hint applies."""
        return self.answer_has_boxes or self.question_has_box


TASK_SPECS = (
    TaskSpec("classify", "", "Classification", columns=(("classify", "Class"),), min_templates=20),
    TaskSpec("describe", "", "Fine-grained description", columns=(("describe", "Descript"),), min_templates=40),
    TaskSpec("count", "[count]", "Instance counting",
             columns=(("count.only_count", "Only count"), ("count.iou25", "Count IoU=.25"),
                      ("count.iou50", "Count IoU=.5")),
             answer_has_boxes=True, min_templates=15, by_category=True),
    TaskSpec("grounding", "[grounding]", "Spatial grounding", subsets=("single", "multi"),
             columns=(("grounding.abstract_position", "Abstract position"), ("grounding.multi", "Ground Multi"),
                      ("grounding.single", "Ground Single")),
             answer_has_boxes=True, min_templates=15),
    TaskSpec("identify", "[identify]", "Cross-modal identification", subsets=("single", "multi"),
             columns=(("identify.multi", "ID Multi"), ("identify.single", "ID Single")),
             question_has_box=True, min_templates=20, by_category=True, by_size=True),
    TaskSpec("refer", "[refer]", "Referring", subsets=("single", "multi"),
             columns=(("refer.multi.iou25", "Multi Ref IoU=.25"), ("refer.multi.iou50", "Multi Ref IoU=.5"),
                      ("refer.single.iou25", "Single Ref IoU=.25"), ("refer.single.iou50", "Single Ref IoU=.5")),
             answer_has_boxes=True, min_templates=30, by_category=True),
)

SPECS = {s.id: s for s in TASK_SPECS}
TASKS = tuple(s.id for s in TASK_SPECS)          # the report's and metrics.json's task order
SUBSETS = ("single", "multi")
SUBSET_TASKS = tuple(s.id for s in TASK_SPECS if s.subsets)
TASK_TAGS = {s.id: s.tag for s in TASK_SPECS}
TASK_LABELS = {s.id: s.label for s in TASK_SPECS}
TASK_COLUMNS = {s.id: s.column_ids for s in TASK_SPECS}
COLUMN_LABELS = {c: label for s in TASK_SPECS for c, label in s.columns}
COLUMN_TASK = {c: s.id for s in TASK_SPECS for c in s.column_ids}
# The paper's Table 3 orders its columns count, grounding, identify, refer, describe, classify.
TABLE3_TASK_ORDER = ("count", "grounding", "identify", "refer", "describe", "classify")
COLUMNS = tuple(c for t in TABLE3_TASK_ORDER for c in TASK_COLUMNS[t])
ANSWER_BOX_TASKS = tuple(s.id for s in TASK_SPECS if s.answer_has_boxes)
BOX_TASKS = tuple(s.id for s in TASK_SPECS if s.has_boxes)
BREAKDOWN_TASKS = tuple(s.id for s in TASK_SPECS if s.by_category)
MIN_TEMPLATES = {s.id: s.min_templates for s in TASK_SPECS}


def spec(task_id: str) -> TaskSpec:
    try:
        return SPECS[task_id]
    except KeyError:
        raise KeyError(f"unknown task {task_id!r}; the tasks are {', '.join(TASKS)}") from None
