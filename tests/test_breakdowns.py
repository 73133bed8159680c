"""Grounding and classification breakdowns (transforms/score/breakdowns.py; docs/scoring.md,
"Breakdowns"): the pure functions on hand-built units, and `sarchat score` end to end on a
hand-built test set whose every number below is worked by hand."""
import glob
import hashlib
import json
import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sarchat.beam_pipelines import cli
from sarchat.inference.baselines import BlindPrior, oracle_prediction
from sarchat.transforms.geometry import identify_size
from sarchat.transforms.categories import CATEGORIES
from sarchat.transforms.schema import DIALOGUE_SCHEMA
from sarchat.transforms.score import breakdowns as B
from sarchat.transforms.box_match import set_counts
from sarchat.transforms.score import metrics as M
from tests.test_score_pipeline import generated_table, write_dataset, write_predictions

NONE = B.NONE
LABELS = list(CATEGORIES) + [NONE]


def onehot(*cats):
    return [1 if c in cats else 0 for c in CATEGORIES]


def classify_units(samples):
    """[(truth labels, predicted labels)] -> the classify units matrix."""
    return np.array([onehot(*t) + onehot(*p) for t, p in samples], dtype=np.int64)


# The classify samples of the end-to-end test too: (truth, predicted) label sets.
CLASSIFY = [({"ship"}, {"ship"}),                          # right
            ({"ship", "harbor"}, {"ship", "aircraft"}),    # harbor missed, aircraft extra: (harbor, aircraft)
            ({"car"}, {"tank"}),                           # (car, tank)
            ({"tank"}, {"tank", "bridge"}),                # bridge extra, nothing missed: (none, bridge)
            ({"bridge"}, set())]                           # nothing named: (bridge, none)


def cell(conf, truth, pred):
    return conf["counts"][LABELS.index(truth)][LABELS.index(pred)]


def test_classify_confusion_matrix_by_hand():
    conf = B.classify_confusion(classify_units(CLASSIFY))
    assert conf["truth"] == LABELS and conf["predicted"] == LABELS
    expected = {("ship", "ship"): 2, ("tank", "tank"): 1, ("harbor", "aircraft"): 1, ("car", "tank"): 1,
                (NONE, "bridge"): 1, ("bridge", NONE): 1}
    for t in LABELS:
        for p in LABELS:
            assert cell(conf, t, p) == expected.get((t, p), 0), (t, p)
    # a sample with two missed and two extra labels adds every (missed, extra) pair
    two = B.classify_confusion(classify_units([({"ship", "car"}, {"tank", "bridge"})]))
    assert [cell(two, t, p) for t in ("ship", "car") for p in ("tank", "bridge")] == [1, 1, 1, 1]
    assert sum(map(sum, two["counts"])) == 4


def test_classify_per_class_by_hand():
    got = B.classify_classes(classify_units(CLASSIFY))
    assert list(got) == ["ship", "aircraft", "car", "tank", "bridge", "harbor"]
    assert got["ship"] == {"support": 2, "predicted": 2, "tp": 2, "fp": 0, "fn": 0, "precision": 100.0,
                           "recall": 100.0, "f1": 100.0, "score": 100.0}
    # tank: right once (sample 4), named once wrongly (sample 3)
    assert got["tank"] == {"support": 1, "predicted": 2, "tp": 1, "fp": 1, "fn": 0, "precision": 50.0,
                           "recall": 100.0, "f1": 66.6667, "score": 50.0}
    # aircraft: named once, never true: no recall
    assert got["aircraft"]["precision"] == 0.0 and got["aircraft"]["recall"] is None
    # car: true once, never named: no precision
    assert got["car"]["precision"] is None and got["car"]["recall"] == 0.0 and got["car"]["f1"] == 0.0
    assert (got["bridge"]["tp"], got["bridge"]["fp"], got["bridge"]["fn"]) == (0, 1, 1)
    # a category neither true nor named is left out
    assert "harbor" not in B.classify_classes(classify_units([({"ship"}, {"ship"})]))


def test_per_class_counts_add_up_to_the_classify_column():
    """Summed over the classes, TP / FP / FN are the classify column's (the scorer's set counts)."""
    units = classify_units(CLASSIFY)
    got = B.classify_classes(units)
    tp, fp, fn = (sum(v[k] for v in got.values()) for k in ("tp", "fp", "fn"))
    per_sample = [set_counts(p, t) for t, p in CLASSIFY]
    assert (tp, fp, fn) == tuple(sum(c[i] for c in per_sample) for i in range(3))


def grounding_units():
    """Three grounding samples on 100 x 100 images (size word: box area / 10000).
    0 single: ship (0,0,10,10) r=.01 very small, found; one extra ship box predicted.
    1 multi:  ship (0,0,60,60) r=.36 large, found; aircraft (70,70,90,90) r=.04 small, not found;
              predicted an aircraft box elsewhere and a car box.
    2 multi:  tank (0,0,70,70) r=.49 very large and tank (80,80,100,100) r=.04 small, none found
              (unparseable answer)."""
    boxes = [[0, 0, 10, 10], [0, 0, 60, 60], [70, 70, 90, 90], [0, 0, 70, 70], [80, 80, 100, 100]]
    rows = [0, 1, 1, 2, 2]
    cats = B.category_codes(["ship", "ship", "aircraft", "tank", "tank"])
    sizes = B.size_codes(boxes, [100] * 5, [100] * 5)
    found = [True, True, False, False, False]
    pred_rows, pred_cats = [0, 0, 1, 1, 1], B.category_codes(["ship", "ship", "ship", "aircraft", "car"])
    return B.grounding_units(3, rows, cats, sizes, found, pred_rows, pred_cats)


def test_size_codes_follow_the_identify_floors():
    sizes = B.size_codes([[0, 0, 10, 10], [0, 0, 60, 60], [70, 70, 90, 90], [0, 0, 70, 70], [0, 0, 40, 40]],
                         [100] * 5, [100] * 5)
    assert [B.IDENTIFY_SIZES[s] for s in sizes] == ["very small", "large", "small", "very large", "medium-sized"]


def test_grounding_boxes_by_hand():
    got = B.grounding_boxes(grounding_units())
    assert got["by_category"] == {
        "ship": {"truth_boxes": 2, "predicted_boxes": 3, "tp": 2, "fp": 1, "fn": 0, "precision": 66.6667,
                 "recall": 100.0},
        "aircraft": {"truth_boxes": 1, "predicted_boxes": 1, "tp": 0, "fp": 1, "fn": 1, "precision": 0.0,
                     "recall": 0.0},
        "car": {"truth_boxes": 0, "predicted_boxes": 1, "tp": 0, "fp": 1, "fn": 0, "precision": 0.0, "recall": None},
        "tank": {"truth_boxes": 2, "predicted_boxes": 0, "tp": 0, "fp": 0, "fn": 2, "precision": None,
                 "recall": 0.0}}
    assert got["by_size"] == {"very small": {"truth_boxes": 1, "found": 1, "recall": 100.0},
                              "small": {"truth_boxes": 2, "found": 0, "recall": 0.0},
                              "large": {"truth_boxes": 1, "found": 1, "recall": 100.0},
                              "very large": {"truth_boxes": 1, "found": 0, "recall": 0.0}}
    assert list(got["by_size"]) == ["very small", "small", "large", "very large"]  # smallest first


def test_grounding_category_scores_average_the_box_columns():
    mask = np.array([[False, False, True], [False, True, False], [False, True, False]])  # (abstract, multi, single)
    got = B.grounding_category_scores(grounding_units(), mask, [1, 2])
    # ship: single 1 / (1 + 2 - 1) = 50, multi 1 / (1 + 1 - 1) = 100 -> 75; the others only in multi
    assert got == {"ship": 75.0, "aircraft": 0.0, "car": 0.0, "tank": 0.0}


def test_units_travel_through_select_concat_and_sort():
    units = grounding_units()
    k = len(M.TASK_COLUMNS["grounding"])
    z = np.zeros((3, k), dtype=np.int64)
    arr = M.TaskArrays("grounding", ["c", "a", "b"], [0] * 3, [""] * 3, [""] * 3, z, z, z, z.astype(bool), units)
    both = M.TaskArrays.concat("grounding", [arr.select(np.array([0])), arr.select(np.array([1, 2]))]).sorted()
    assert both.units.tolist() == units[[1, 2, 0]].tolist()
    assert M.TaskArrays.empty("grounding").units.shape == (0, 0)
    # arrays without units (the per-sample reference path) give no grounding / classify extras
    plain = M.TaskArrays("grounding", ["a"], [0], [""], [""], z[:1], z[:1], z[:1], z[:1].astype(bool))
    assert "grounding_boxes" not in M.build_breakdown({"grounding": plain})


# ---------------------------------------------------------------------------------------------
# `sarchat score` end to end


def _row(id_, task, subset, boxes=(), cats=(), answer="", question=""):
    return {"id": id_, "split": "test", "task": task, "subset": subset, "image_path": f"JPEGImages/test/{id_}.png",
            "image_id": abs(hash(id_)) % 1000, "width": 100, "height": 100, "question": question, "answer": answer,
            "gt_boxes": [list(b) for b in boxes], "gt_categories": list(cats), "gt_cells": [], "gt_sizes": [],
            "gt_shapes": [], "gt_relations": [], "gt_count": len(boxes) or len(cats)}


def hand_built():
    """The test rows and one model's answers: CLASSIFY and the grounding samples of grounding_units()."""
    rows, answers = [], {}
    texts = ["The image contains ship.", "Targets: ship and aircraft.", "I see a tank.", "Tank and bridge.",
             "I cannot tell."]
    for i, ((truth, _), text) in enumerate(zip(CLASSIFY, texts)):
        cats = [c for c in CATEGORIES if c in truth]
        rows.append(_row(f"c{i}", "classify", None, cats=cats, answer="x",
                         question="Which of these categories appear: aircraft, bridge, car, harbor, ship, tank?"))
        answers[f"c{i}"] = text
    q = "[grounding] Identify all targets and their locations in this SAR image."
    rows.append(_row("g0", "grounding", "single", [[0, 0, 10, 10]], ["ship"], question=q))
    answers["g0"] = "There is a ship {<0><0><10><10>} and a ship {<50><50><60><60>}."
    rows.append(_row("g1", "grounding", "multi", [[0, 0, 60, 60], [70, 70, 90, 90]], ["ship", "aircraft"], question=q))
    answers["g1"] = "There is a ship {<0><0><60><60>}, an aircraft {<0><0><5><5>} and a car {<70><70><90><90>}."
    rows.append(_row("g2", "grounding", "multi", [[0, 0, 70, 70], [80, 80, 100, 100]], ["tank", "tank"], question=q))
    answers["g2"] = "No idea."
    return rows, answers


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("breakdowns")
    rows, answers = hand_built()
    root = write_dataset(pa.Table.from_pylist(rows, schema=DIALOGUE_SCHEMA), str(tmp / "data"), shards=2)
    preds = write_predictions([{"id": k, "prediction": v, "model": "hand"} for k, v in answers.items()],
                              str(tmp / "hand.jsonl"))
    out = tmp / "scores"
    assert cli.main(["score", "--dataset", root, "--predictions", preds, "--output", str(out), "--bootstrap", "0",
                     "--samples", "0", "--no-progress"]) in (0, None)
    with open(out / "hand" / "breakdown.json") as f:
        return str(out), json.load(f)


def test_score_writes_the_new_breakdowns(scored):
    out, b = scored
    # the keys that were there keep their place; the new ones follow
    assert list(b)[:4] == ["by_category", "by_size", "missing", "samples"]
    assert set(b) == {"by_category", "by_size", "missing", "samples", "rejected", "grounding_boxes",
                      "classify_classes", "classify_confusion"}
    assert b["samples"]["classify"] == 5 and b["samples"]["grounding"] == 3
    assert b["by_category"]["grounding"] == {"ship": 75.0, "aircraft": 0.0, "car": 0.0, "tank": 0.0}
    assert b["by_category"]["classify"] == {"ship": 100.0, "aircraft": 0.0, "car": 0.0, "tank": 50.0,
                                            "bridge": 0.0, "harbor": 0.0}
    assert b["grounding_boxes"] == B.grounding_boxes(grounding_units())
    assert b["grounding_boxes"]["by_size"]["small"] == {"truth_boxes": 2, "found": 0, "recall": 0.0}
    assert b["classify_classes"] == B.classify_classes(classify_units(CLASSIFY))
    assert b["classify_classes"]["tank"]["f1"] == 66.6667
    conf = b["classify_confusion"]
    assert conf["counts"] == B.classify_confusion(classify_units(CLASSIFY))["counts"]
    assert cell(conf, "harbor", "aircraft") == 1 and cell(conf, "bridge", NONE) == 1 and cell(conf, NONE, "bridge") == 1
    # the per-category numbers agree with the task's own columns: grounding.single is ship's single column
    with open(os.path.join(out, "hand", "metrics.json")) as f:
        m = json.load(f)
    assert m["columns"]["grounding.single"] == 50.0
    assert m["parse_failures"]["classify"]["count"] == 1 and m["parse_failures"]["grounding"]["count"] == 1


def test_reports_show_the_new_breakdowns(scored):
    out, _ = scored
    md = open(os.path.join(out, "report.md")).read()
    assert "## Classification per class and confusion matrix (this run)" in md
    assert "## Spatial grounding per category and per object size (this run)" in md
    assert "| truth ↓, predicted → | ship | aircraft | car | tank | bridge | harbor | none |" in md
    assert "| harbor | 0 | 1 | 0 | 0 | 0 | 0 | 0 |" in md   # the confusion row of harbor: 1 under aircraft
    assert "| tank | 1 | 2 | 1 | 1 | 0 | 50.00 | 100.00 | 66.67 | 50.00 |" in md   # per class
    assert "| small | 2 | 0 | 0.00 |" in md   # grounding by size
    assert "| Spatial grounding | 75.00 | 0.00 | 0.00 | 0.00 | – | – |" in md   # by category
    page = open(os.path.join(out, "report.html")).read()
    assert "<table class='confusion' data-model='hand'>" in page
    assert "Spatial grounding: truth boxes found by object size" in page
    assert "Classification: task score by category" in page and "Spatial grounding: task score by category" in page


# ---------------------------------------------------------------------------------------------
# The columnar breakdowns against a per-sample reference written here in plain Python, on the
# generator's own dialogues answered by a model that is right, wrong and unparseable in turn


def _swap_words(text):
    swap = {"ship": "car", "car": "ship", "aircraft": "tank", "tank": "aircraft"}
    return " ".join(swap.get(w, w) for w in text.split(" "))


def noisy_answer(row, blind):
    k = int(hashlib.sha256(row["id"].encode()).hexdigest(), 16) % 4
    if k == 0:
        return oracle_prediction(row)
    if k == 1:
        return blind.predict(row)
    if k == 2:
        return "Nothing to say."
    return _swap_words(oracle_prediction(row))


def reference_breakdown(rows, samples):
    """grounding_boxes, classify_classes and classify_confusion from the test rows and the samples
    Parquet, one sample at a time (the rules of docs/scoring.md, "Breakdowns")."""
    by_id = {r["id"]: r for r in rows}
    truth, found, pred = Counter(), Counter(), Counter()
    size_truth, size_found = Counter(), Counter()
    tp, fp, fn = Counter(), Counter(), Counter()
    conf = Counter()
    for s in samples:
        r = by_id[s["id"]]
        if r["task"] == "grounding":
            for box, cat, iou in zip(r["gt_boxes"], r["gt_categories"], s["ious"]):
                size = identify_size((box[2] - box[0]) * (box[3] - box[1]) / (r["width"] * r["height"]))
                truth[cat] += 1
                size_truth[size] += 1
                found[cat] += iou >= M.GROUNDING_IOU
                size_found[size] += iou >= M.GROUNDING_IOU
            for c in s["pred_box_categories"] or []:
                pred[c] += c in CATEGORIES
        elif r["task"] == "classify":
            t = set(r["gt_categories"])
            p = set(s["pred_labels"] or []) if s["status"] == "ok" else set()
            for c in t & p:
                tp[c] += 1
                conf[c, c] += 1
            for c in p - t:
                fp[c] += 1
            for c in t - p:
                fn[c] += 1
            missed, extra = t - p, p - t
            for a in missed:
                for b in extra or [NONE]:
                    conf[a, b] += 1
            if not missed:
                for b in extra:
                    conf[NONE, b] += 1
    pct = lambda a, b: round(100.0 * a / b, 4) if b else None  # noqa: E731
    boxes = {"by_category": {c: {"truth_boxes": truth[c], "predicted_boxes": pred[c], "tp": found[c],
                                 "fp": pred[c] - found[c], "fn": truth[c] - found[c],
                                 "precision": pct(found[c], pred[c]), "recall": pct(found[c], truth[c])}
                             for c in CATEGORIES if truth[c] or pred[c]},
             "by_size": {s: {"truth_boxes": size_truth[s], "found": size_found[s],
                             "recall": pct(size_found[s], size_truth[s])}
                         for s in reversed(B.IDENTIFY_SIZES) if size_truth[s]}}
    classes = {c: {"support": tp[c] + fn[c], "predicted": tp[c] + fp[c], "tp": tp[c], "fp": fp[c], "fn": fn[c],
                   "precision": pct(tp[c], tp[c] + fp[c]), "recall": pct(tp[c], tp[c] + fn[c]),
                   "f1": pct(2 * tp[c], 2 * tp[c] + fp[c] + fn[c]), "score": pct(tp[c], tp[c] + fp[c] + fn[c])}
               for c in CATEGORIES if tp[c] + fp[c] + fn[c]}
    counts = [[conf[a, b] for b in LABELS] for a in LABELS]
    return boxes, classes, {"truth": LABELS, "predicted": LABELS, "counts": counts}


def test_columnar_breakdowns_match_a_per_sample_reference(tmp_path):
    table = generated_table(n_images=60, n_boxes=150, seed=11)
    rows = table.to_pylist()
    root = write_dataset(table, str(tmp_path / "data"), shards=3)
    blind = BlindPrior().fit(rows)
    preds = write_predictions([{"id": r["id"], "prediction": noisy_answer(r, blind), "model": "noisy"} for r in rows],
                              str(tmp_path / "noisy.jsonl"))
    out = tmp_path / "scores"
    assert cli.main(["score", "--dataset", root, "--predictions", preds, "--output", str(out), "--bootstrap", "0",
                     "--samples", "0", "--num-buckets", "4", "--plots", "none", "--no-progress"]) in (0, None)
    with open(out / "noisy" / "breakdown.json") as f:
        b = json.load(f)
    files = sorted(glob.glob(str(out / "noisy" / "samples" / "*.parquet")))
    samples = pq.read_table(files).to_pylist()
    boxes, classes, conf = reference_breakdown(rows, samples)
    assert b["grounding_boxes"] == boxes
    assert b["classify_classes"] == classes
    assert b["classify_confusion"] == conf
    # the answers are varied enough for the comparison to mean something
    assert len(boxes["by_size"]) >= 3 and len(classes) >= 4
    assert any(v["tp"] for v in classes.values()) and any(v["fp"] for v in classes.values())
    assert any(conf["counts"][i][j] for i in range(6) for j in range(6) if i != j)
    assert sum(conf["counts"][i][6] for i in range(6)) and any(v["fp"] for v in boxes["by_category"].values())
    # summed over the classes / categories, the counts are the columns' own
    col = Counter()
    for s in samples:
        for name, a, c, d in zip(s["columns"], s["tp"], s["fp"], s["fn"]):
            col[name, "tp"] += a
            col[name, "fp"] += c
            col[name, "fn"] += d
    assert [sum(v[k] for v in classes.values()) for k in ("tp", "fp", "fn")] == [col["classify", k]
                                                                                 for k in ("tp", "fp", "fn")]
    for k in ("tp", "fn"):
        assert sum(v[k] for v in boxes["by_category"].values()) == col["grounding.single", k] + col["grounding.multi", k]
