"""Instance counting: how many of a category, with their boxes (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, parse_boxes, parse_number, strip_boxes
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("count", "[count]", "Instance counting",
                columns=(("count.only_count", "Only count"), ("count.iou25", "Count IoU=.25"),
                         ("count.iou50", "Count IoU=.5")),
                answer_has_boxes=True, min_templates=15, by_category=True)


def parse(text, box_format, width, height):
    """{'status', 'count', 'boxes'}: the first number stated outside the boxes and all boxes;
    unparseable when no number is stated outside the boxes (digits "3" or words "three",
    "twenty-one", "no ships" = 0): boxes alone do not make a count answer parseable."""
    text = text or ""
    count = parse_number(strip_boxes(text))
    boxes = parse_boxes(text, box_format, width, height)
    return {"status": OK if count is not None else UNPARSEABLE, "count": count, "boxes": boxes}
