"""Spatial grounding: every box by category, and the relations between categories (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("grounding", "[grounding]", "Spatial grounding", subsets=("single", "multi"),
                columns=(("grounding.abstract_position", "Abstract position"), ("grounding.multi", "Ground Multi"),
                         ("grounding.single", "Ground Single")),
                answer_has_boxes=True, min_templates=15)
