"""Cross-modal identification: the attributes of the box a question names (docs/rules.md sections 6, 7 and 12)."""
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("identify", "[identify]", "Cross-modal identification", subsets=("single", "multi"),
                columns=(("identify.multi", "ID Multi"), ("identify.single", "ID Single")),
                question_has_box=True, min_templates=20, by_category=True, by_size=True)
