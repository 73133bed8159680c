"""Classification: which categories an image holds (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("classify", "", "Classification", columns=(("classify", "Class"),), min_templates=20)
