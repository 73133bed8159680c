"""Referring: the boxes of a named category, with their cells (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, find_cells, parse_boxes
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("refer", "[refer]", "Referring", subsets=("single", "multi"),
                columns=(("refer.multi.iou25", "Multi Ref IoU=.25"), ("refer.multi.iou50", "Multi Ref IoU=.5"),
                         ("refer.single.iou25", "Single Ref IoU=.25"), ("refer.single.iou50", "Single Ref IoU=.5")),
                answer_has_boxes=True, min_templates=30, by_category=True)


def parse(text, box_format, width, height):
    """{'status', 'boxes', 'cells'}: every box in the declared format and the cells named;
    unparseable when no box in the declared format."""
    boxes = parse_boxes(text, box_format, width, height)
    return {"status": OK if boxes else UNPARSEABLE, "boxes": boxes, "cells": find_cells(text)}
