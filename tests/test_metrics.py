"""Per-sample scoring and aggregation, pinned by hand-computed fixtures (docs/rules.md section 12)."""
import numpy as np
import pytest

from sarchat.transforms import box_match as BM
from sarchat.transforms import tasks
from sarchat.transforms.score import metrics as M
from sarchat.transforms.box_formats import get_box_format

CANON = get_box_format("canonical")


def row(task, subset=None, W=512, H=512, **gt):
    r = {"id": gt.pop("id", "x"), "task": task, "subset": subset, "width": W, "height": H, "gt_boxes": [],
         "gt_categories": [], "gt_cells": [], "gt_sizes": [], "gt_shapes": [], "gt_relations": [], "gt_count": 0}
    r.update(gt)
    return r


def score(r, text, fmt=CANON):
    return M.score_sample(r, text, fmt)


def approx(v):
    return pytest.approx(v, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Matching


def test_hungarian_maximises_total_iou_not_greedy():
    gt = [[0, 0, 10, 10], [10, 0, 20, 10]]
    # p0 overlaps both truths by 1/3; p1 overlaps the first by 0.9. Greedy p0->gt0 would leave
    # p1 with IoU 0; the assignment maximising the total gives p1->gt0 (0.9), p0->gt1 (1/3).
    pred = [[5, 0, 15, 10], [0, 0, 9, 10]]
    m = BM.match_boxes(pred, gt)
    assert [(p, g) for p, g, _ in m] == [(1, 0), (0, 1)]
    assert m[0][2] == approx(0.9) and m[1][2] == approx(1 / 3)
    assert BM.box_counts(2, 2, m, 0.25) == (2, 0, 0)
    assert BM.box_counts(2, 2, m, 0.5) == (1, 1, 1)


def test_iou_is_continuous_without_plus_one():
    assert BM.iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == approx(50 / 150)
    assert BM.iou_matrix([[0, 0, 10, 10]], [[10, 0, 20, 10]])[0, 0] == 0.0  # touching edges


def test_set_and_multiset_counts():
    assert BM.set_counts({"a", "b"}, {"b", "c", "d"}) == (1, 1, 2)
    assert BM.multiset_counts(["a", "a", "b"], ["a", "b", "b"]) == (2, 1, 1)


# ---------------------------------------------------------------------------------------------
# count

COUNT = row("count", gt_boxes=[[0, 0, 10, 10], [20, 20, 40, 40]], gt_categories=["ship", "ship"], gt_count=2)


def test_count_partial_and_extra_boxes_and_wrong_number():
    # 3 stated (wrong); box 1 exact, box 2 IoU 100/400 = 0.25, box 3 matches nothing
    r = score(COUNT, "There are 3 instances. {<0><0><10><10>}{<20><20><30><30>}{<100><100><110><110>}")
    assert r["status"] == "ok"
    assert r["scores"] == {"count.only_count": (0, 1, 0), "count.iou25": (2, 1, 0), "count.iou50": (1, 2, 1)}
    assert r["ious"] == [approx(1.0), approx(0.25)]


def test_count_wrong_number_right_boxes():
    r = score(COUNT, "There are five instances. {<0><0><10><10>}{<20><20><40><40>}")
    assert r["scores"] == {"count.only_count": (0, 1, 0), "count.iou25": (2, 0, 0), "count.iou50": (2, 0, 0)}


def test_count_right_number_missing_box():
    r = score(COUNT, "There are 2 instances. {<20><20><40><40>}")
    assert r["scores"] == {"count.only_count": (1, 0, 0), "count.iou25": (1, 0, 1), "count.iou50": (1, 0, 1)}
    assert r["ious"] == [0.0, approx(1.0)]


def test_count_unparseable_is_a_full_miss():
    r = score(COUNT, "{<0><0><10><10>}{<20><20><40><40>}")  # boxes but no number
    assert r["status"] == "unparseable"
    assert r["scores"] == {"count.only_count": (0, 0, 1), "count.iou25": (0, 0, 2), "count.iou50": (0, 0, 2)}


# ---------------------------------------------------------------------------------------------
# refer


def test_refer_single_extra_box_and_thresholds():
    r1 = row("refer", "single", gt_boxes=[[10, 10, 50, 50]], gt_categories=["car"])
    r = score(r1, "{<10><10><50><50>} (top left){<60><60><70><70>} (top left)")
    assert r["scores"] == {"refer.single.iou25": (1, 1, 0), "refer.single.iou50": (1, 1, 0)}
    # [10,10,50,40] against [10,10,50,50]: IoU 1200/1600 = 0.75; [0,0,40,40] against it: 900/2300
    r = score(r1, "{<0><0><40><40>}")
    assert r["ious"] == [approx(900 / 2300)]
    assert r["scores"] == {"refer.single.iou25": (1, 0, 0), "refer.single.iou50": (0, 1, 1)}


def test_refer_multi_missing_box():
    r2 = row("refer", "multi", gt_boxes=[[10, 10, 50, 50], [100, 100, 150, 150]], gt_categories=["car", "car"])
    r = score(r2, "{<100><100><150><150>} (top left)")
    assert r["scores"] == {"refer.multi.iou25": (1, 0, 1), "refer.multi.iou50": (1, 0, 1)}
    r = score(r2, "in the top left")
    assert r["status"] == "unparseable"
    assert r["scores"] == {"refer.multi.iou25": (0, 0, 2), "refer.multi.iou50": (0, 0, 2)}


# ---------------------------------------------------------------------------------------------
# grounding

GROUND = row("grounding", "multi", gt_boxes=[[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 200, 200]],
             gt_categories=["ship", "ship", "harbor"], gt_relations=["ship|far from|harbor|to the upper left of"],
             gt_count=3)


def test_grounding_boxes_matched_within_category_and_relations():
    text = ("In this SAR image, I can identify several objects and their locations: There are 2 ships: one in the "
            "top left portion {<0><0><10><10>}, one in the bottom right portion {<100><100><200><200>}. "
            "The harbor is far from the ship.")
    r = score(GROUND, text)
    # ship box 1 exact; the second "ship" box sits on the harbor: wrong category, no credit
    assert r["scores"] == {"grounding.abstract_position": (1, 0, 0), "grounding.multi": (1, 1, 2)}
    assert r["ious"] == [approx(1.0), 0.0, 0.0]


def test_grounding_wrong_relation_and_right_categories():
    text = ("There are 2 ships: one {<50><50><60><60>}, one {<0><0><10><10>}. There is a harbor {<100><100><200><200>}."
            " The ship is near the harbor.")
    r = score(GROUND, text)
    assert r["scores"] == {"grounding.abstract_position": (0, 1, 1), "grounding.multi": (3, 0, 0)}


def test_grounding_single_has_no_abstract_position_column():
    g1 = row("grounding", "single", gt_boxes=[[0, 0, 10, 10]], gt_categories=["tank"], gt_count=1)
    r = score(g1, "There is a tank in the top left portion {<0><0><10><10>}.")
    assert r["scores"] == {"grounding.single": (1, 0, 0)}
    r = score(g1, "Nothing.")
    assert r["status"] == "unparseable" and r["scores"] == {"grounding.single": (0, 0, 1)}


# ---------------------------------------------------------------------------------------------
# identify


def test_identify_shape_only_when_the_truth_states_it():
    with_shape = row("identify", "single", gt_boxes=[[0, 0, 30, 10]], gt_categories=["ship"], gt_cells=["top left"],
                     gt_sizes=["small"], gt_shapes=["wide"], gt_count=1)
    text = "This is a small ship located in the top right portion of the image. It is tall."
    # pred {ship, small, top right, tall} vs truth {ship, small, top left, wide}
    assert score(with_shape, text)["scores"] == {"identify.single": (2, 2, 2)}
    no_shape = dict(with_shape, gt_shapes=[], subset="multi")
    # the stated shape is ignored when the truth has none
    assert score(no_shape, text)["scores"] == {"identify.multi": (2, 1, 1)}


def test_identify_hedging_costs_false_positives():
    r1 = row("identify", "single", gt_categories=["car"], gt_cells=["middle center"], gt_sizes=["very small"],
             gt_boxes=[[0, 0, 5, 5]])
    r = score(r1, "A very small car or a small tank in the central region of the image.")
    assert r["scores"] == {"identify.single": (3, 2, 0)}


# ---------------------------------------------------------------------------------------------
# describe and classify


def test_describe_multisets():
    d = row("describe", gt_boxes=[[0, 0, 1, 1]] * 3, gt_categories=["ship", "ship", "harbor"],
            gt_cells=["bottom left", "bottom left", "top center"], gt_sizes=["small", "small", "large"])
    text = ("A small ship is visible in the bottom left portion of the image. There is one more small ship at the "
            "top of the image.")
    assert score(d, text)["scores"] == {"describe": (1, 1, 2)}
    text = ("A small ship is visible in the bottom left portion of the image. There is one more small ship in the "
            "bottom left portion of the image. A large harbor at the top of the image, a large harbor at the top of "
            "the image.")
    assert score(d, text)["scores"] == {"describe": (3, 1, 0)}


def test_classify_sets():
    c = row("classify", gt_categories=["ship", "car"], gt_count=2)
    assert score(c, "The ship and tank targets can be identified in the figure.")["scores"] == {"classify": (1, 1, 1)}
    assert score(c, "Ships, ships and cars.")["scores"] == {"classify": (2, 0, 0)}
    assert score(c, "Nothing I know.")["scores"] == {"classify": (0, 0, 2)}


def test_missing_prediction_is_a_miss():
    r = M.score_sample(COUNT, None, CANON, missing=True)
    assert r["status"] == "missing"
    assert r["scores"] == {"count.only_count": (0, 0, 1), "count.iou25": (0, 0, 2), "count.iou50": (0, 0, 2)}


# ---------------------------------------------------------------------------------------------
# Every box format scores the same boxes the same way


@pytest.mark.parametrize("spec", ["canonical", "qwen2-vl", "internvl", "json-bbox2d", "json-bbox2d:1000"])
def test_every_box_format(spec):
    fmt = get_box_format(spec)
    W, H = 500, 250
    r = row("refer", "multi", W=W, H=H, gt_boxes=[[50, 25, 250, 125], [300, 150, 400, 200]],
            gt_categories=["tank", "tank"])
    text = fmt.render([[50, 25, 250, 125], [300, 150, 400, 200]], W, H)
    assert M.score_sample(r, text, fmt)["scores"] == {"refer.multi.iou25": (2, 0, 0), "refer.multi.iou50": (2, 0, 0)}
    # read with the wrong adapter, the same text yields no box (qwen/internvl/json vs canonical)
    other = get_box_format("canonical" if spec != "canonical" else "qwen2-vl")
    assert M.score_sample(r, text, other)["status"] == "unparseable"


def test_grounding_with_qwen_boxes():
    fmt = get_box_format("qwen2-vl")
    g = row("grounding", "multi", W=1000, H=500, gt_boxes=[[0, 0, 100, 50], [500, 250, 600, 300]],
            gt_categories=["ship", "car"], gt_relations=["ship|far from|car|to the upper left of"])
    text = ("There is a ship in the top left portion <|box_start|>(0,0),(100,100)<|box_end|>. There is a car "
            "<|box_start|>(500,500),(600,600)<|box_end|>. The ship is far from the car.")
    assert M.score_sample(g, text, fmt)["scores"] == {"grounding.abstract_position": (1, 0, 0),
                                                     "grounding.multi": (2, 0, 0)}


# ---------------------------------------------------------------------------------------------
# Aggregation


def _arrays(task, rows_and_texts):
    res = []
    for i, (r, text) in enumerate(rows_and_texts):
        res.append((f"id{i:03d}", M.score_sample(r, text, CANON, missing=text is None),
                    M.sample_category(r), M.sample_size(r)))
    return M.arrays_from_results(task, res)


def test_column_task_and_overall_math():
    assert M.column_accuracy(1, 1, 2, 3) == approx(25.0)
    assert M.column_accuracy(0, 0, 0, 0) is None
    assert M.task_score([50.0, None, 100.0]) == approx(75.0)
    assert M.task_score([None, None]) is None
    assert M.overall_score({"a": 50.0, "b": 100.0, "c": None}, {"a": 3, "b": 1, "c": 10}) == approx(62.5)
    assert M.macro_score({"a": 50.0, "b": 100.0, "c": None}) == approx(75.0)


def test_build_metrics_by_hand():
    count = _arrays("count", [
        (COUNT, "There are 3 instances. {<0><0><10><10>}{<20><20><30><30>}{<100><100><110><110>}"),
        (COUNT, "There are 2 instances. {<0><0><10><10>}{<20><20><40><40>}"),
        (COUNT, None),
    ])
    classify = _arrays("classify", [(row("classify", gt_categories=["ship", "car"]), "ship and tank")])
    m = M.build_metrics("toy", {"count": count, "classify": classify}, missing_predictions=1, n_boot=200, seed=3)
    assert list(m) == ["model", "columns", "tasks", "overall", "overall_macro", "overall_ci95", "n",
                       "parse_failures", "inference_errors", "missing_predictions", "dataset_version",
                       "predictions_dataset_version", "dataset_version_mismatch"]
    assert m["dataset_version"] is None and m["dataset_version_mismatch"] is False
    c = m["columns"]
    # only_count: 1 right of 3; iou25: TP 2+2+0, FP 1, FN 0+0+2 -> 4/7; iou50: TP 1+2, FP 2, FN 1+0+2 -> 3/8
    assert c["count.only_count"] == approx(round(100 / 3, 4))
    assert c["count.iou25"] == approx(round(400 / 7, 4))
    assert c["count.iou50"] == approx(round(300 / 8, 4))
    assert c["classify"] == approx(round(100 / 3, 4))
    assert c["describe"] is None and c["grounding.abstract_position"] is None
    count_score = (100 / 3 + 400 / 7 + 300 / 8) / 3
    assert m["tasks"]["count"] == approx(round(count_score, 4))
    assert m["tasks"]["identify"] is None
    assert m["overall"] == approx(round((count_score * 3 + 100 / 3) / 4, 4))
    assert m["overall_macro"] == approx(round((count_score + 100 / 3) / 2, 4))
    assert m["n"]["tasks"] == {"classify": 1, "describe": 0, "count": 3, "grounding": 0, "identify": 0, "refer": 0}
    assert m["n"]["columns"]["count.iou50"] == 3
    assert m["missing_predictions"] == 1
    assert m["parse_failures"]["count"] == {"count": 0, "rate": 0.0}
    lo, hi = m["overall_ci95"]
    assert lo <= hi
    assert list(m["columns"]) == list(M.COLUMNS)


def test_bootstrap_is_seeded_and_matches_naive_resampling():
    rng = np.random.default_rng(0)
    n = 400
    tp = rng.integers(0, 3, size=(n, 2))
    fp = rng.integers(0, 2, size=(n, 2))
    fn = rng.integers(0, 2, size=(n, 2))
    mask = np.zeros((n, 2), dtype=bool)
    mask[np.arange(n), rng.integers(0, 2, size=n)] = True
    tp, fp, fn = tp * mask, fp * mask, fn * mask
    arr = M.TaskArrays("identify", [f"{i:04d}" for i in range(n)], [0] * n, [""] * n, [""] * n, tp, fp, fn, mask)
    a, _ = M.bootstrap_overall({"identify": arr}, 2000, seed=7)
    b, _ = M.bootstrap_overall({"identify": arr}, 2000, seed=7)
    assert np.array_equal(a, b)
    # the naive bootstrap (resample rows, recompute) has the same distribution
    naive = []
    for _ in range(2000):
        idx = rng.integers(0, n, size=n)
        naive.append(arr.select(idx).score())
    assert np.mean(a) == pytest.approx(np.mean(naive), abs=0.3)
    assert np.std(a) == pytest.approx(np.std(naive), rel=0.15)
    assert np.mean(a) == pytest.approx(arr.score(), abs=0.3)


def test_breakdown_by_category_and_size():
    ident = lambda cat, size: row("identify", "single", gt_categories=[cat], gt_sizes=[size],  # noqa: E731
                                  gt_cells=["top left"], gt_boxes=[[0, 0, 5, 5]])
    arr = _arrays("identify", [
        (ident("ship", "small"), "a small ship in the top left"),
        (ident("car", "small"), "a small ship in the top left"),
        (ident("car", "large"), None),
    ])
    b = M.build_breakdown({"identify": arr})
    assert b["by_category"]["identify"] == {"ship": 100.0, "car": approx(round(100 * 2 / 7, 4))}  # (2,1,1) + missing (0,0,3)
    assert b["by_size"]["identify"] == {"small": approx(round(100 * 5 / 7, 4)), "large": 0.0}
    assert b["missing"]["identify"] == 1


# ---------------------------------------------------------------------------------------------
# Per-task tables and inference errors


def test_miss_rules_give_the_truth_size_per_column():
    g = row("grounding", "multi", gt_boxes=[[0, 0, 5, 5], [9, 9, 20, 20]], gt_categories=["ship", "car"],
            gt_relations=["ship|far from|car|to the upper left of"])
    assert tasks.task("grounding").miss(g) == {"grounding.abstract_position": (0, 0, 1), "grounding.multi": (0, 0, 2)}
    c = row("count", gt_boxes=[[0, 0, 5, 5]] * 3, gt_count=3)
    assert tasks.task("count").miss(c) == {"count.only_count": (0, 0, 1), "count.iou25": (0, 0, 3),
                                        "count.iou50": (0, 0, 3)}
    i = row("identify", "single", gt_categories=["tank"], gt_sizes=["small"], gt_cells=["top left"])
    assert tasks.task("identify").miss(i) == {"identify.single": (0, 0, 3)}
    assert tasks.task("classify").miss(row("classify", gt_categories=["ship", "ship", "car"])) == {"classify": (0, 0, 2)}
    # a miss covers exactly the columns a sample counts in
    for r in (g, c, i, row("refer", "multi", gt_boxes=[[0, 0, 5, 5]] * 2)):
        assert list(tasks.task(r["task"]).miss(r)) == M.sample_columns(r)


def test_an_inference_error_is_a_miss_not_a_parse_failure():
    c = row("count", gt_boxes=[[0, 0, 10, 10]], gt_count=1, gt_categories=["ship"])
    right = "There is 1 instance. {<0><0><10><10>}"
    res = M.score_sample(c, right, CANON, error="TimeoutError: no answer in 60 s")
    assert res["status"] == M.STATUS_INFERENCE_ERROR  # the text of a failed request is never scored
    assert res["scores"] == tasks.task("count").miss(c) and res["ious"] == [0.0]
    arr = M.arrays_from_results("count", [("a", res, "ship", None), ("b", M.score_sample(c, right, CANON), "ship", None),
                                          ("c", M.score_sample(c, "no idea", CANON), "ship", None)])
    m = M.build_metrics("toy", {"count": arr}, n_boot=0, dataset_version="v1", predictions_dataset_version="v1")
    assert m["inference_errors"]["count"] == {"count": 1, "rate": approx(round(100 / 3, 4))}
    assert m["parse_failures"]["count"] == {"count": 1, "rate": approx(round(100 / 3, 4))}
    assert m["inference_errors"]["refer"] == {"count": 0, "rate": None}
    assert m["columns"]["count.only_count"] == approx(round(100 / 3, 4))
    assert m["dataset_version"] == m["predictions_dataset_version"] == "v1"


def test_a_zero_width_truth_box_matches_its_exact_copy_only():
    """A truth box clamped onto the image edge ({<511><5><511><10>}) has no area; the reference
    answer must still score 100, and any other box 0."""
    from sarchat.transforms.box_match import iou_matrix

    edge = [511, 5, 511, 10]
    assert iou_matrix([edge], [edge])[0, 0] == 1.0
    assert iou_matrix([[510, 5, 512, 10]], [edge])[0, 0] == 0.0
    assert iou_matrix([[511, 5, 511, 11]], [edge])[0, 0] == 0.0
    assert iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10]])[0, 0] == 1.0
