"""Spatial grounding: every box by category, and the relations between categories (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, parse_boxes_by_category, parse_relations
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("grounding", "[grounding]", "Spatial grounding", subsets=("single", "multi"),
                columns=(("grounding.abstract_position", "Abstract position"), ("grounding.multi", "Ground Multi"),
                         ("grounding.single", "Ground Single")),
                answer_has_boxes=True, min_templates=15)


def parse(text, box_format, width, height):
    """{'status', 'boxes', 'box_categories', 'relations'} (answer_words.parse_boxes_by_category);
    unparseable when neither a box (in the declared format) nor a relation sentence."""
    boxes, cats = parse_boxes_by_category(text, box_format, width, height)
    relations = parse_relations(text)
    status = OK if (boxes or relations) else UNPARSEABLE
    return {"status": status, "boxes": boxes, "box_categories": cats, "relations": relations}
