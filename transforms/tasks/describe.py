"""Fine-grained description: a '<size> <category> <position>' phrase per kept box (docs/rules.md sections 5, 7 and 12)."""
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("describe", "", "Fine-grained description", columns=(("describe", "Descript"),), min_templates=40)
