import math

import pytest

from sarchat.transforms import geometry as g
from sarchat.transforms.box_match import iou_one


def test_xyxy_rounds_half_up_and_clamps():
    assert g.xyxy([10.5, 2.4, 20.0, 7.5], 100, 100) == [11, 2, 31, 10]
    assert g.xyxy([-3.0, -1.0, 50.0, 50.0], 40, 30) == [0, 0, 39, 29]


def test_box_text():
    assert g.boxes_text([[12, 40, 57, 90], [300, 8, 341, 77]]) == "{<12><40><57><90>}{<300><8><341><77>}"


@pytest.mark.parametrize("bbox,reason", [
    ([1, 2, float("nan"), 3], "non_finite"),
    ([1, 2, float("inf"), 3], "non_finite"),
    ([1, 2, 0, 3], "non_positive_size"),
    ([1, 2, 3, -1], "non_positive_size"),
    ([100, 2, 3, 3], "outside_image"),
    ([-10, 2, 10, 3], "outside_image"),
    ([1, 2, 3], "malformed_bbox"),
    (["a", 2, 3, 4], "malformed_bbox"),
    ([1, 2, 3, 4], None),
])
def test_invalid_box_reason(bbox, reason):
    assert g.invalid_box_reason(bbox, 100, 100) == reason


def test_grid_cells_cover_the_image():
    assert g.grid_cell([0, 0, 10, 10], 300, 300) == "top left"
    assert g.grid_cell([140, 140, 160, 160], 300, 300) == "middle center"
    assert g.grid_cell([290, 290, 299, 299], 300, 300) == "bottom right"
    assert g.grid_cell([200, 0, 220, 10], 300, 300) == "top right"   # cx = 210 -> column 2
    assert g.grid_cell([199, 0, 200, 10], 300, 300) == "top center"  # cx = 199.5 -> column 1


def test_size_and_shape_words_at_thresholds():
    assert [g.identify_size(r) for r in (0.40, 0.39, 0.25, 0.10, 0.03, 0.0299)] == [
        "very large", "large", "large", "medium-sized", "small", "very small"]
    assert [g.describe_size(r) for r in (0.049, 0.05, 0.30, 0.31)] == ["small", "medium-sized", "medium-sized", "large"]
    assert [g.shape_word(a) for a in (1.51, 1.5, 0.67, 0.669)] == ["wide", "roughly square", "roughly square", "tall"]


def test_describe_filters():
    assert not g.describe_image_ok(223, 512) and g.describe_image_ok(224, 224)
    assert g.describe_box_reason([0, 0, 9, 9], 100, 100) == "describe_small_area"   # R = 0.0081
    assert g.describe_box_reason([0, 0, 330, 30], 1000, 100) == "describe_extreme_aspect"  # 11:1
    assert g.describe_box_reason([95, 0, 10, 20], 100, 100) == "describe_out_of_bounds"
    assert g.describe_box_reason([10, 10, 20, 20], 100, 100) is None


def test_direction_and_relation():
    assert g.direction(-10, 1) == "to the left of"
    assert g.direction(0, 10) == "below"
    assert g.direction(5, -5) == "to the upper right of"
    assert g.direction(0, 0) == ""
    near = g.relation([[0, 0, 10, 10]], [[20, 0, 30, 10]], 100, 100)  # d = 20 < 200/8 = 25
    far = g.relation([[0, 0, 10, 10]], [[30, 0, 40, 10]], 100, 100)   # d = 30
    assert near == ("near", "to the left of") and far == ("far from", "to the left of")


def test_closest_pair_is_used():
    # second instance of A is the close one
    assert g.relation([[90, 90, 99, 99], [0, 0, 10, 10]], [[12, 0, 22, 10]], 100, 100)[0] == "near"


def test_iou_continuous():
    assert iou_one([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert math.isclose(iou_one([0, 0, 10, 10], [5, 0, 15, 10]), 50 / 150)
    assert iou_one([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0
