"""The scorer's fast paths give what the reference paths give: the parse memo (ParseMemo) equals
parse_answer, iou_one equals iou_matrix, the shared line encoder equals json.dumps, on real answer
forms, generated answers and malformed ones. Scores themselves are pinned by tests/test_golden.py."""
import gc
import json
import math
import random

import pytest

from sarchat.inference.baselines import BlindPrior
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms import box_match as BM
from sarchat.transforms.score import metrics as M
from sarchat.transforms.score import parsing
from sarchat.transforms.runtime import gc_paused
from tests import score_reference
from tests.test_real_forms import REAL
from tests.test_score_pipeline import generated_table

FORMATS = ("canonical", "qwen2-vl", "internvl", "json-bbox2d")


def _mangled(text, rng):
    """A malformed variant: cut, a span deleted, characters swapped in, case changed."""
    kind = rng.randrange(5)
    if not text:
        return "}{<>[]"
    i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
    if kind == 0:
        return text[:i]
    if kind == 1:
        return text[:i] + text[j:]
    if kind == 2:
        return text[:i] + rng.choice(["<", ">", "{", "}", "[", ",", "0", "99999", " no ", "\u00e9", "\n"]) + text[i:]
    if kind == 3:
        return text.upper()
    return text[i:j] * 3


@pytest.fixture(scope="module")
def answer_cases():
    """(task, text, width, height): the real forms, every reference answer and blind answer of a
    generated split, and a few thousand malformed variants of them."""
    rows = generated_table("test", n_images=120, n_boxes=300, seed=11).to_pylist()
    blind = BlindPrior().fit(generated_table("train", n_images=60, n_boxes=140, seed=4, with_known=False).to_pylist())
    cases = [(task, answer, 800, 800) for task, _, answer in REAL]
    cases += [(r["task"], r["answer"], r["width"], r["height"]) for r in rows]
    cases += [(r["task"], blind.predict(r), r["width"], r["height"]) for r in rows]
    rng = random.Random(7)
    cases += [(t, _mangled(a, rng), w, h) for t, a, w, h in rng.choices(cases, k=3000)]
    cases += [(t, "", w, h) for t in M.TASKS for w, h in ((800, 800),)]
    assert len(cases) > 5000 and len({c[1] for c in cases}) > 2000
    return cases


@pytest.mark.parametrize("spec", FORMATS)
def test_parse_memo_equals_parse_answer(answer_cases, spec):
    fmt = get_box_format(spec)
    memo = parsing.ParseMemo(max_entries=1500)  # small: the memo also starts afresh along the way
    for _ in range(2):  # the second pass is answered from the memo where it still holds the text
        for task, text, w, h in answer_cases:
            assert memo(task, text, fmt, w, h) == parsing.parse_answer(task, text, fmt, w, h), (task, text)
    assert memo.hits > len(answer_cases) // 2


def test_parse_memo_keys_box_tasks_by_format_and_image_size():
    memo = parsing.ParseMemo()
    qwen, canonical = get_box_format("qwen2-vl"), get_box_format("canonical")  # qwen2-vl: 0-1000 of the image
    text = "There are 2 instances. " + qwen.render_one([10, 10, 50, 50], 1000, 1000) + canonical.render_one(
        [100, 100, 200, 200], 1000, 1000)
    calls = ((qwen, 1000, 1000), (qwen, 500, 500), (canonical, 500, 500))
    got = [memo("count", text, f, w, h) for f, w, h in calls]
    assert got == [parsing.parse_answer("count", text, f, w, h) for f, w, h in calls]
    assert len({json.dumps(g["boxes"]) for g in got}) == 3  # three different readings, none shared
    assert memo.hits == 0


def _random_box(rng):
    kind = rng.randrange(4)
    if kind == 0:  # integer pixels
        x, y = rng.randrange(0, 500), rng.randrange(0, 500)
        return [x, y, x + rng.randrange(0, 80), y + rng.randrange(0, 80)]
    if kind == 1:  # floats, possibly inverted
        return [rng.uniform(0, 300) for _ in range(4)]
    if kind == 2:  # zero-area
        x, y = rng.uniform(0, 100), rng.uniform(0, 100)
        return [x, y, x, y + rng.choice([0.0, 5.0])]
    return [rng.randrange(0, 40) for _ in range(4)]


def test_iou_one_equals_iou_matrix():
    rng = random.Random(3)
    pairs = [(_random_box(rng), _random_box(rng)) for _ in range(20000)]
    pairs += [(b, list(b)) for b, _ in pairs[:2000]]  # identical boxes, degenerate ones included
    pairs += [(b, [v + rng.choice([0, 1, -2, 0.5, rng.uniform(-9, 9)]) for v in b]) for b, _ in pairs[:8000]]  # overlaps
    pairs += [([0, 0, 10, 10], [10, 0, 20, 10]), ([0, 0, 0, 0], [0, 0, 0, 0]), ([5, 5, 5, 9], [5, 5, 5, 9]),
              ([0, 0, float("inf"), 10], [0, 0, 10, 10]), ([0, 0, float("nan"), 10], [0, 0, float("nan"), 10])]
    for p, g in pairs:
        want = float(BM.iou_matrix([p], [g])[0, 0])
        got = BM.iou_one(p, g)
        assert got == want or (math.isnan(got) and math.isnan(want)), (p, g, got, want)
    assert sum(1 for p, g in pairs if 0 < BM.iou_one(p, g) < 1) > 1000  # the cases are not all trivial
    # match_boxes uses it for one box against one
    assert BM.match_boxes([[0, 0, 10, 10]], [[0, 0, 10, 20]]) == [(0, 0, float(BM.iou_matrix([[0, 0, 10, 10]],
                                                                                             [[0, 0, 10, 20]])[0, 0]))]


def test_sample_line_equals_json_dumps():
    rng = random.Random(5)
    texts = ["plain", "", "caf\u00e9 \u2014 \u8239", 'quote " back\\slash', "tab\tnew\nline", "\x00\x1f", None]
    for i in range(3000):
        n_cols = rng.randrange(0, 3)
        record = {"id": f"id{i}", "task": rng.choice(M.TASKS), "subset": rng.choice(["single", "multi", None]),
                  "model": rng.choice(["m", "m\u00e9"]), "status": rng.choice(list(M.STATUS_CODES)),
                  "error": rng.choice(texts), "latency_s": rng.choice([None, 0.1, 1e-9, 12345.678, float("nan")]),
                  "category": rng.choice(["ship", None]), "size": rng.choice(["very small", None]),
                  "pred_count": rng.choice([None, 0, 3]),
                  "pred_boxes": [[rng.uniform(0, 900) for _ in range(4)] for _ in range(rng.randrange(3))],
                  "pred_box_categories": rng.choice([None, ["ship"], [None, "car"]]),
                  "pred_labels": rng.sample(["category=ship", "size=small", "a|b|c"], rng.randrange(3)),
                  "ious": [rng.random() for _ in range(rng.randrange(3))],
                  "columns": [f"c{j}" for j in range(n_cols)], "tp": [1] * n_cols, "fp": [0] * n_cols,
                  "fn": [rng.randrange(5) for _ in range(n_cols)]}
        row = {"question": rng.choice(texts), "answer": rng.choice(texts)}
        pred = rng.choice([None, {"prediction": rng.choice(texts)}])
        record_json = score_reference.sample_line_record(row, record, pred)
        want = json.dumps(record_json, ensure_ascii=False, allow_nan=False) + "\n"
        assert score_reference.sample_line(row, record, pred) == want


def test_gc_paused_restores_the_collector_state():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError):
        with gc_paused():
            raise RuntimeError("boom")
    assert gc.isenabled()
