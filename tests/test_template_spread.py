"""Prompt sensitivity (sarchat.transforms.score.template_spread): a task's score per question
template, worked out by hand, and its spread; the report's table of it."""
import math

from sarchat.report import score_report
from sarchat.transforms.score import metrics as M
from sarchat.transforms.score import template_spread as T
from sarchat.transforms.tasks import TASK_COLUMNS


def _acc(samples):
    """The accumulator of (task, template id, {column: (TP, FP, FN)}) samples, counted as the scorer
    counts them: one TaskArrays per task, a sample in the columns it has."""
    acc = T.new()
    for task in dict.fromkeys(t for t, _, _ in samples):
        mine = [(tid, scores) for t, tid, scores in samples if t == task]
        cols = TASK_COLUMNS[task]
        cell = [[scores.get(c, (0, 0, 0))[k] for c in cols] for _, scores in mine for k in range(3)]
        arrays = M.TaskArrays(task, [f"s{i}" for i in range(len(mine))], [0] * len(mine), [None] * len(mine),
                              [None] * len(mine), cell[0::3], cell[1::3], cell[2::3],
                              [[c in scores for c in cols] for _, scores in mine])
        T.add_arrays(acc, arrays, [tid for tid, _ in mine])
    return acc


SAMPLES = [
    # classify: template a right twice (100), template b half right (TP 1, FP 1, FN 0 -> 50)
    ("classify", "classify-01", {"classify": (2, 0, 0)}),
    ("classify", "classify-01", {"classify": (1, 0, 0)}),
    ("classify", "classify-02", {"classify": (1, 1, 0)}),
    # count: one template, three columns: only_count 100, iou25 1/(1+0+1) = 50, iou50 0/(0+1+1) = 0 -> 50
    ("count", "count-07", {"count.only_count": (1, 0, 0), "count.iou25": (1, 0, 1), "count.iou50": (0, 1, 1)}),
    # refer: a sample counts only in its own subset's columns; null columns are left out of Eq. 5
    ("refer", "refer-01", {"refer.single.iou25": (1, 0, 0), "refer.single.iou50": (0, 1, 1)}),
    ("refer", None, {"refer.multi.iou25": (0, 0, 2), "refer.multi.iou50": (0, 0, 2)}),
]


def test_per_template_scores_and_their_spread_by_hand():
    got = T.spread(_acc(SAMPLES))
    c = got["classify"]
    assert c["by_template"] == {"classify-01": {"n": 2, "score": 100.0}, "classify-02": {"n": 1, "score": 50.0}}
    assert (c["templates"], c["min"], c["max"], c["range"], c["mean"]) == (2, 50.0, 100.0, 50.0, 75.0)
    assert c["stdev"] == 25.0   # population standard deviation of (100, 50)
    k = got["count"]
    assert k["by_template"] == {"count-07": {"n": 1, "score": 50.0}} and (k["templates"], k["stdev"], k["range"]) == (1, 0.0, 0.0)
    r = got["refer"]
    # refer-01: single iou25 100, iou50 0 -> 50; the row without a template id counts under "": 0
    assert r["by_template"] == {"": {"n": 1, "score": 0.0}, "refer-01": {"n": 1, "score": 50.0}}
    assert (r["min"], r["max"], r["stdev"]) == (0.0, 50.0, 25.0)
    assert got["describe"] is None and got["grounding"] is None and got["identify"] is None


def test_merging_bucket_accumulators_is_the_same_as_one_accumulator():
    whole = T.spread(_acc(SAMPLES))
    parts = [_acc(SAMPLES[i::3]) for i in range(3)]
    assert T.spread(T.merge(parts)) == whole
    assert T.spread(T.merge([T.new(), _acc(SAMPLES)])) == whole
    # merging does not alter its inputs
    before = T.spread(parts[0])
    T.merge([parts[0], parts[1]])
    assert T.spread(parts[0]) == before


def test_stdev_over_three_templates():
    acc = _acc([("describe", f"describe-0{i}", {"describe": (tp, 4 - tp, 0)}) for i, tp in enumerate((4, 2, 1))])
    d = T.spread(acc)["describe"]
    scores = [100.0, 50.0, 25.0]
    mean = sum(scores) / 3
    assert d["mean"] == round(mean, 4)
    assert d["stdev"] == round(math.sqrt(sum((s - mean) ** 2 for s in scores) / 3), 4)


def test_the_report_shows_the_spread_per_model_and_task():
    m = {"model": "tiny", "tasks": {"classify": 83.3333}, "template_spread": T.spread(_acc(SAMPLES))}
    rows = score_report.template_spread_rows([m])
    assert rows[0] == ["tiny", score_report.TASK_LABELS["classify"], "2", "50.00", "100.00", "50.00", "25.00", "83.33"]
    assert [r[1] for r in rows] == [score_report.TASK_LABELS[t] for t in score_report.TASKS
                                    if t in ("classify", "count", "refer")]
    assert score_report.template_spread_rows([{"model": "old", "tasks": {}}]) == []   # metrics.json before the key
