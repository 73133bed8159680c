"""Instance counting: how many of a category, with their boxes (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("count", "[count]", "Instance counting",
                columns=(("count.only_count", "Only count"), ("count.iou25", "Count IoU=.25"),
                         ("count.iou50", "Count IoU=.5")),
                answer_has_boxes=True, min_templates=15, by_category=True)
