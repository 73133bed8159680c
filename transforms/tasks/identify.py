"""Cross-modal identification: the attributes of the box a question names (docs/rules.md sections 6, 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, identify_attributes
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("identify", "[identify]", "Cross-modal identification", subsets=("single", "multi"),
                columns=(("identify.multi", "ID Multi"), ("identify.single", "ID Single")),
                question_has_box=True, min_templates=20, by_category=True, by_size=True)


def parse(text, box_format=None, width=None, height=None):
    """{'status', 'categories', 'sizes', 'shapes', 'cells'}: distinct values named, in order;
    unparseable when none of them (category word, size word, grid cell / position phrase, shape word)."""
    cats, sizes, shapes, cells = identify_attributes(text)
    status = OK if (cats or sizes or shapes or cells) else UNPARSEABLE
    return {"status": status, "categories": cats, "sizes": sizes, "shapes": shapes, "cells": cells}
