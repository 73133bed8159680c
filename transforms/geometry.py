"""Box geometry and the attribute words of docs/rules.md section 2. Pure functions, no Beam.

W, H are the image width and height in pixels; COCO boxes are [x, y, w, h] floats.
"""
import math

import numpy as np

ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
CELLS = tuple(f"{r} {c}" for r in ROWS for c in COLUMNS)

POSITION_PHRASES = {
    "top left": "in the top left portion of the image",
    "top center": "at the top of the image",
    "top right": "in the top right portion of the image",
    "middle left": "on the left side of the image",
    "middle center": "in the central region of the image",
    "middle right": "on the right side of the image",
    "bottom left": "in the bottom left portion of the image",
    "bottom center": "at the bottom of the image",
    "bottom right": "in the bottom right portion of the image",
}

IDENTIFY_SIZES = ("very large", "large", "medium-sized", "small", "very small")
DESCRIBE_SIZES = ("small", "medium-sized", "large")
SHAPES = ("wide", "tall", "roughly square")
RELATIONS = ("near", "far from")


def invalid_box_reason(bbox, width, height):
    """Why a COCO box cannot be used for any task, or None when it is usable.

    Covers the geometric reasons of docs/rules.md section 2; unknown category and unknown image are
    decided by the reader, which knows the category and image tables.
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return "malformed_bbox"
    # numbers only (docs/rules.md section 1): a string or boolean is not a coordinate
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return "malformed_bbox"
    try:
        x, y, w, h = (float(v) for v in bbox)
    except OverflowError:  # an integer beyond float
        return "non_finite"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return "non_finite"
    if w <= 0 or h <= 0:
        return "non_positive_size"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return "outside_image"
    return None


def xyxy(bbox, width, height):
    """COCO [x,y,w,h] -> integer [x1,y1,x2,y2], round half up, clamped to the image."""
    x, y, w, h = bbox
    corners = ((x, width), (y, height), (x + w, width), (y + h, height))
    return [min(max(math.floor(v + 0.5), 0), size - 1) for v, size in corners]


def xyxy_array(x, y, w, h, width, height):
    """`xyxy` of many boxes at once (float arrays; width, height per box) -> int64 array (n, 4)."""
    with np.errstate(invalid="ignore", over="ignore"):
        corners = np.stack([x, y, x + w, y + h], axis=1)
        hi = np.stack([width - 1, height - 1, width - 1, height - 1], axis=1)
        return np.clip(np.floor(corners + 0.5), 0, hi).astype(np.int64)


def cell_index_array(box, width, height):
    """`grid_cell` of many xyxy boxes (array (n, 4), float arrays width, height) as CELLS indices."""
    cx = (box[:, 0] + box[:, 2]) / 2.0
    cy = (box[:, 1] + box[:, 3]) / 2.0
    col = np.minimum(np.floor(3 * cx / width), 2).astype(np.int64)
    row = np.minimum(np.floor(3 * cy / height), 2).astype(np.int64)
    return 3 * row + col


def box_text(box) -> str:
    """[x1,y1,x2,y2] -> '{<x1><y1><x2><y2>}'."""
    return "{<%d><%d><%d><%d>}" % tuple(box)


def boxes_text(boxes) -> str:
    return "".join(box_text(b) for b in boxes)


def area_ratio(bbox, width, height) -> float:
    return (float(bbox[2]) * float(bbox[3])) / (float(width) * float(height))


def aspect_ratio(bbox) -> float:
    """w / h, the ratio the shape words use."""
    return float(bbox[2]) / float(bbox[3])


def centre(box):
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def grid_cell(box, width, height) -> str:
    cx, cy = centre(box)
    col = min(int(math.floor(3 * cx / width)), 2)
    row = min(int(math.floor(3 * cy / height)), 2)
    return f"{ROWS[row]} {COLUMNS[col]}"


# The size and shape thresholds, written once: each *_index function takes a float or a numpy
# array (element-wise; the builder classifies a whole shard's boxes at once) and returns the index
# of the word in IDENTIFY_SIZES, DESCRIBE_SIZES or SHAPES. `(cond) * 1` is 0/1 for both kinds.
IDENTIFY_SIZE_FLOORS = (0.40, 0.25, 0.10, 0.03)  # area ratio >= floor i: IDENTIFY_SIZES[i]; below all: the last
DESCRIBE_SMALL_BELOW, DESCRIBE_LARGE_ABOVE = 0.05, 0.30  # area ratio
WIDE_ABOVE, TALL_BELOW = 1.5, 0.67  # aspect ratio w / h


def identify_size_index(r):
    return len(IDENTIFY_SIZE_FLOORS) - sum((r >= floor) * 1 for floor in IDENTIFY_SIZE_FLOORS)


def describe_size_index(r):
    return 1 - (r < DESCRIBE_SMALL_BELOW) * 1 + (r > DESCRIBE_LARGE_ABOVE) * 1


def shape_index(aspect):
    return 2 - (aspect > WIDE_ABOVE) * 2 - (aspect < TALL_BELOW) * 1


def identify_size(r: float) -> str:
    return IDENTIFY_SIZES[identify_size_index(r)]


def shape_word(aspect: float) -> str:
    return SHAPES[shape_index(aspect)]


def describe_size(r: float) -> str:
    return DESCRIBE_SIZES[describe_size_index(r)]


def describe_image_ok(width, height) -> bool:
    return width >= 224 and height >= 224


def describe_box_reason(bbox, width, height):
    """Why the description task drops a (valid) box, or None when it keeps it."""
    x, y, w, h = (float(v) for v in bbox)
    if area_ratio(bbox, width, height) < 0.01:
        return "describe_small_area"
    if w / h > 10 or h / w > 10:
        return "describe_extreme_aspect"
    if x < 0 or y < 0 or x + w > width or y + h > height:
        return "describe_out_of_bounds"
    return None


def direction(dx: float, dy: float) -> str:
    """Direction of A relative to B from the centre offset (dx, dy) = centre(A) - centre(B).

    Image y grows downwards, so dy < 0 means A is above B. Returns '' when the centres coincide.
    """
    if dx == 0 and dy == 0:
        return ""
    if abs(dx) > 2 * abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    if abs(dy) > 2 * abs(dx):
        return "above" if dy < 0 else "below"
    vertical = "upper" if dy < 0 else "lower"
    horizontal = "left" if dx < 0 else "right"
    return f"to the {vertical} {horizontal} of"


def relation(boxes_a, boxes_b, width, height):
    """(relation, direction) of category A to category B: 'near' / 'far from' and a direction, from
    the closest pair of centres (ties go to the first in order)."""
    offsets = [(ax - bx, ay - by) for ax, ay in map(centre, boxes_a) for bx, by in map(centre, boxes_b)]
    dx, dy = min(offsets, key=lambda o: math.hypot(*o))
    rel = "near" if math.hypot(dx, dy) < (width + height) / 8.0 else "far from"
    return rel, direction(dx, dy)
