"""The six SARChat-Bench tasks: the registry of the task modules.

Each task is one module of this package holding all that differs per task: its `TaskSpec` (data:
id, question tag, subsets, Table 3 columns and labels, whether its answers or questions carry
boxes, the smallest template bank, the report's breakdowns) and the functions of
task_spec.PROTOCOL. MODULES below lists them; everything else derives from it, and
tests/test_task_table.py checks that every module implements the whole protocol. A seventh task is
one new module and one line in MODULES (docs/architecture.md, "Adding a task").

Like seqio's TaskRegistry, but static: the benchmark's tasks are fixed by the paper, so the registry
is a tuple rather than a mutable registry. Tasks layer: imports only the vocabulary below it.
"""
from sarchat.transforms.tasks import classify, count, describe, grounding, identify, refer
from sarchat.transforms.tasks.task_spec import PROTOCOL, TaskSpec, subset_of  # noqa: F401 (the protocol's names)

# The registry: one line per task, in the report's and metrics.json's task order.
MODULES = (classify, describe, count, grounding, identify, refer)
TASK_SPECS = tuple(m.SPEC for m in MODULES)
SPECS = {s.id: s for s in TASK_SPECS}
TASKS = tuple(s.id for s in TASK_SPECS)          # the report's and metrics.json's task order
SUBSET_TASKS = tuple(s.id for s in TASK_SPECS if s.subsets)
TASK_LABELS = {s.id: s.label for s in TASK_SPECS}
TASK_COLUMNS = {s.id: s.column_ids for s in TASK_SPECS}
COLUMN_LABELS = {c: label for s in TASK_SPECS for c, label in s.columns}
# The paper's Table 3 orders its columns count, grounding, identify, refer, describe, classify.
TABLE3_TASK_ORDER = ("count", "grounding", "identify", "refer", "describe", "classify")
COLUMNS = tuple(c for t in TABLE3_TASK_ORDER for c in TASK_COLUMNS[t])
ANSWER_BOX_TASKS = tuple(s.id for s in TASK_SPECS if s.answer_has_boxes)
BOX_TASKS = tuple(s.id for s in TASK_SPECS if s.has_boxes)
BREAKDOWN_TASKS = tuple(s.id for s in TASK_SPECS if s.by_category)
MIN_TEMPLATES = {s.id: s.min_templates for s in TASK_SPECS}


BY_ID = {m.SPEC.id: m for m in MODULES}


def task(task_id: str):
    """The module of a task (KeyError naming the tasks for an unknown id)."""
    try:
        return BY_ID[task_id]
    except KeyError:
        raise KeyError(f"unknown task {task_id!r}; the tasks are {', '.join(TASKS)}") from None
