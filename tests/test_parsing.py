"""Answer parsers: vocabulary, numbers, boxes per format, per-task status, linear-time behaviour."""
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sarchat.transforms import answer_words as W
from sarchat.transforms import tasks as T
from sarchat.transforms.score import parsing as P
from sarchat.transforms.box_formats import get_box_format

CANON = get_box_format("canonical")
FORMATS = ["canonical", "qwen2-vl", "internvl", "json-bbox2d", "json-bbox2d:1000"]
TASKS = ["classify", "describe", "count", "grounding", "identify", "refer"]


# ---------------------------------------------------------------------------------------------
# Numbers and counts


@pytest.mark.parametrize("text,expected", [
    ("There are 3 instances. {<1><2><3><4>}", 3),
    ("There is 1 instance.", 1),
    ("I can see three ships.", 3),
    ("Twenty-one cars are visible", 21),
    ("forty two tanks", 42),
    ("There are twelve targets", 12),
    ("There are no ships in the image.", 0),
    ("None.", 0),
    ("No, but 4 are there", 4),
    ("ratio 2.5 and then 7 ships", 7),
    ("no number here", None),
    ("", None),
])
def test_parse_number(text, expected):
    assert W.parse_number(text) == expected


def test_count_reads_the_number_outside_the_boxes():
    r = T.count.parse("{<12><40><57><90>} There are 2 instances. {<300><8><341><77>}", CANON, 512, 512)
    assert r["status"] == W.OK and r["count"] == 2
    assert r["boxes"] == [[12, 40, 57, 90], [300, 8, 341, 77]]


def test_count_without_a_number_is_unparseable_even_with_boxes():
    r = T.count.parse("{<12><40><57><90>}{<300><8><341><77>}", CANON, 512, 512)
    assert r["status"] == W.UNPARSEABLE and r["count"] is None and len(r["boxes"]) == 2


# ---------------------------------------------------------------------------------------------
# Vocabulary


def test_categories_plurals_and_variants():
    text = "Ships, an aircraft, two aircrafts, a car, TANKS, bridges and harbours; a harbor."
    assert W.find_categories(text) == ["ship", "aircraft", "aircraft", "car", "tank", "bridge", "harbor", "harbor"]
    assert T.classify.parse(text)["categories"] == ["ship", "aircraft", "car", "tank", "bridge", "harbor"]
    assert W.find_categories("shipyard cartoon tanker") == []


@pytest.mark.parametrize("text,cell", [
    ("in the top left portion of the image", "top left"),
    ("at the top of the image", "top center"),
    ("in the top right portion of the image", "top right"),
    ("on the left side of the image", "middle left"),
    ("in the central region of the image", "middle center"),
    ("on the right side of the image", "middle right"),
    ("in the bottom left portion of the image", "bottom left"),
    ("at the bottom of the image", "bottom center"),
    ("in the bottom right portion of the image", "bottom right"),
    ("Examining the bottom center area", "bottom center"),
    ("the top right area", "top right"),
    ("middle center", "middle center"),
    ("Top-Right", "top right"),
    ("upper left", "top left"),
])
def test_cells(text, cell):
    assert W.find_cells(text) == [cell]


def test_sizes_and_shapes():
    sizes = W.identify_attributes("a very small ship, a small car, a Very Large harbor, a medium-sized tank, a large bridge")[1]
    assert sizes == ["very small", "small", "very large", "medium-sized", "large"]
    assert W.identify_attributes("medium sized")[1] == ["medium-sized"]
    assert W.identify_attributes("It appears to be wide in shape. tall. roughly square")[2] == [
        "wide", "tall", "roughly square"]
    assert W.identify_attributes("approximately square")[2] == ["roughly square"]


# ---------------------------------------------------------------------------------------------
# Boxes in every declared format


@pytest.mark.parametrize("spec,text", [
    ("canonical", "{<50><25><250><125>}"),
    ("qwen2-vl", "<|box_start|>(100,100),(500,500)<|box_end|>"),
    ("internvl", "<box>[[100, 100, 500, 500]]</box>"),
    ("json-bbox2d", '[{"bbox_2d": [50, 25, 250, 125], "label": "ship"}]'),
    ("json-bbox2d:1000", '{"bbox_2d": [100, 100, 500, 500]}'),
])
def test_boxes_every_format_to_pixels(spec, text):
    boxes = W.parse_boxes(text, get_box_format(spec), 500, 250)
    assert boxes == [[50.0, 25.0, 250.0, 125.0]]


def test_scale_is_declared_never_guessed():
    # the same digits read as pixels by a pixel format and as 0..1000 by a scaled one
    assert W.parse_boxes('{"bbox_2d": [100, 100, 500, 500]}', get_box_format("json-bbox2d"), 500, 250) == [
        [100.0, 100.0, 500.0, 500.0]]
    # a canonical box is not read when the adapter declares qwen2-vl
    assert W.parse_boxes("{<50><25><250><125>}", get_box_format("qwen2-vl"), 500, 250) == []


def test_grounding_boxes_take_the_last_category_before_them():
    text = ("In this SAR image, I can identify several objects and their locations: There are 2 ships: one in the "
            "top left portion {<1><2><30><40>}, one in the bottom right portion {<400><400><450><450>}. There is a "
            "harbor in the middle center portion {<200><200><300><300>}. The ship is far from the harbor, to the "
            "upper left of it.")
    r = T.grounding.parse(text, CANON, 512, 512)
    assert r["status"] == W.OK
    assert r["box_categories"] == ["ship", "ship", "harbor"]
    assert r["relations"] == [("ship", "far from", "harbor")]


def test_grounding_boxes_before_any_category_have_none():
    r = T.grounding.parse("{<1><2><3><4>} then a car {<5><6><7><8>}", CANON, 100, 100)
    assert r["box_categories"] == [None, "car"]


def test_grounding_qwen_object_refs_and_json_labels():
    q = get_box_format("qwen2-vl")
    text = ("<|object_ref_start|>tank<|object_ref_end|><|box_start|>(0,0),(500,500)<|box_end|>"
            "<|object_ref_start|>bridges<|object_ref_end|><|box_start|>(500,500),(1000,1000)<|box_end|>")
    r = T.grounding.parse(text, q, 200, 100)
    assert r["boxes"] == [[0.0, 0.0, 100.0, 50.0], [100.0, 50.0, 200.0, 100.0]]
    assert r["box_categories"] == ["tank", "bridge"]
    j = get_box_format("json-bbox2d:1000")
    text = '[{"bbox_2d": [0, 0, 500, 500], "label": "harbour"}, {"bbox_2d": [500, 500, 1000, 1000], "label": "Ships"}]'
    r = T.grounding.parse(text, j, 200, 100)
    assert r["box_categories"] == ["harbor", "ship"]


@pytest.mark.parametrize("text,triples", [
    ("The ship is far from the harbor.", [("ship", "far from", "harbor")]),
    ("The ship is near the harbor, to the upper left of it.", [("ship", "near", "harbor")]),
    ("The harbor is near the ship.", [("ship", "near", "harbor")]),  # symmetric: canonical order
    ("The aircrafts are close to the car. The tank is far away from the bridge.",
     [("aircraft", "near", "car"), ("tank", "far from", "bridge")]),
    ("The ship is big.", []),
])
def test_relations(text, triples):
    assert W.parse_relations(text) == triples


# ---------------------------------------------------------------------------------------------
# Describe and identify


def test_description_phrases():
    text = ("In the figure, a small ship can be seen in the bottom left portion of the image, and there is also a "
            "large harbor at the top of the image; a medium-sized car on the left side of the image. A very small "
            "tank is somewhere.")
    assert T.describe.parse(text)["triples"] == [
        ("small", "ship", "bottom left"), ("large", "harbor", "top center"),
        ("medium-sized", "car", "middle left"), ("small", "tank", None)]


def test_identify_attributes():
    r = T.identify.parse("Examining the bottom center area reveals a very small ship. It appears to be roughly "
                         "square in shape.")
    assert r == {"status": W.OK, "categories": ["ship"], "sizes": ["very small"], "shapes": ["roughly square"],
                 "cells": ["bottom center"]}
    r = T.identify.parse("Category: aircraft; size: medium-sized; position: top right portion of the image.")
    assert (r["categories"], r["sizes"], r["cells"], r["shapes"]) == (["aircraft"], ["medium-sized"], ["top right"], [])


# ---------------------------------------------------------------------------------------------
# What "unparseable" means per task


@pytest.mark.parametrize("task,text", [
    ("classify", "I cannot tell."),
    ("describe", "There is a ship at the top."),       # no "<size> <category>" phrase
    ("count", "I see several ships {<1><2><3><4>}"),  # no number
    ("grounding", "Nothing to report."),
    ("identify", "I do not know."),
    ("refer", "It is in the top left (top left)."),     # no box
])
def test_unparseable_per_task(task, text):
    assert P.parse_answer(task, text, CANON, 512, 512)["status"] == W.UNPARSEABLE


@pytest.mark.parametrize("task,text", [
    ("classify", "ship"),
    ("describe", "a small ship"),
    ("count", "two"),
    ("grounding", "The ship is near the car."),
    ("identify", "top left"),
    ("refer", "{<1><2><3><4>}"),
])
def test_minimal_parseable_per_task(task, text):
    assert P.parse_answer(task, text, CANON, 512, 512)["status"] == W.OK


# ---------------------------------------------------------------------------------------------
# Linear time: 1 MB of adversarial text, and random strings

MB = 1 << 20
ADVERSARIAL = [
    "{<1><2><3>" * (MB // 10),                        # canonical box missing its last number
    "{<" * (MB // 2),
    "<|box_start|>(1,2),(3," * (MB // 22),          # qwen box never closed
    "<box>[[1, 2, 3" * (MB // 14),                  # internvl block never closed
    "<box>" + "[[1, 2, 3, " * (MB // 11),
    '"bbox_2d": [1, 2, 3' * (MB // 19),
    '{"bbox_2d": ' * (MB // 12),
    "1.1." * (MB // 4),                              # digits glued to dots: no number
    "1234567" * (MB // 7),                           # over-long digit runs: no number
    "(" * MB,
    "[" * MB,
    "very " * (MB // 5),
    "mediums-" * (MB // 8),
    "the " * (MB // 4),
    "top-" * (MB // 4),
    "at the top of the " * (MB // 18),
    "a" * MB,
    " \n\t" * (MB // 3),
]


# Every task with the canonical format, and the box tasks also with one other format in turn
# (SARCHAT_SLOW_TESTS=1: every task with every format; about 3x longer).
BOX_TASKS = ("count", "grounding", "refer")


HANG_GUARD_S = 60.0


def _matrix(k):
    if os.environ.get("SARCHAT_SLOW_TESTS"):
        return [(t, f) for t in TASKS for f in FORMATS]
    other = FORMATS[1 + k % (len(FORMATS) - 1)]
    return [(t, "canonical") for t in TASKS] + [(t, other) for t in BOX_TASKS]


@pytest.mark.parametrize("k", range(len(ADVERSARIAL)))
def test_one_megabyte_adversarial_input_is_fast_and_unparseable(k):
    text = ADVERSARIAL[k]
    assert len(text) >= MB - 64
    for task, spec in _matrix(k):
        start = time.perf_counter()
        r = P.parse_answer(task, text, get_box_format(spec), 512, 512)
        elapsed = time.perf_counter() - start
        assert r["status"] == W.UNPARSEABLE, (task, spec, text[:40])
        # A hang guard, not a speed test: linear parsing of 1 MB takes about a second, a
        # backtracking (quadratic or worse) pattern on it takes hours.
        assert elapsed < HANG_GUARD_S, (task, spec, text[:40], elapsed)


def test_one_megabyte_of_real_vocabulary_is_linear():
    # parseable, but still one pass: many category words and boxes
    text = "There are 2 ships: one in the top left portion {<1><2><30><40>}, " * (MB // 66)
    for task in TASKS:
        start = time.perf_counter()
        P.parse_answer(task, text, CANON, 512, 512)
        assert time.perf_counter() - start < HANG_GUARD_S, task


_TRICKY = st.lists(st.sampled_from(list("{}<>[]()|,:.-\" 0123456789\n") + [
    "ship", "ships", "aircrafts", "harbor", " is ", " near ", "far from", "the", "very", "small", "large",
    "medium-sized", "top", "left", "bottom", "center", "right", "of the image", "<|box_start|>", "<|box_end|>",
    "<box>", "</box>", "bbox_2d", "{<", "><", ">}", "twenty", "one", "no ", "wide", "tall", "square"]),
                   max_size=200).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=400), _TRICKY), spec=st.sampled_from(FORMATS), task=st.sampled_from(TASKS))
def test_random_strings_never_crash(text, spec, task):
    r = P.parse_answer(task, text, get_box_format(spec), 640, 480)
    assert r["status"] in (W.OK, W.UNPARSEABLE)
    for b in r.get("boxes") or []:
        assert len(b) == 4 and b[0] <= b[2] and b[1] <= b[3]


def test_every_task_parser_takes_the_same_arguments():
    fmt = get_box_format("canonical")
    # every parser takes (text, box_format, width, height) and says whether it found anything
    for module in T.MODULES:
        task = module.SPEC.id
        assert module.parse("", fmt, 100, 100)["status"] == W.UNPARSEABLE, task
        assert P.parse_answer(task, "", fmt, 100, 100) == module.parse("", fmt, 100, 100)
    with pytest.raises(ValueError, match="unknown task"):
        P.parse_answer("caption", "x", fmt, 100, 100)
