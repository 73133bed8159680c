"""The columnar scorer (sarchat.transforms.score.score_columns) gives what the per-sample reference gives:
metrics.score_sample's status, TP / FP / FN per column and IoUs, the samples row and jsonl line of
tests/score_reference.py, for every (model, test row), on generated
splits answered rightly, with boxes moved, wrongly, in other box formats, malformed, missing and
with inference errors; and its pieces (group matching, JSON strings, the bucket join) equal the
functions they stand for on random inputs. Scores of whole runs are pinned by tests/test_golden.py."""
import json
import math
import random
import re

import numpy as np
import pyarrow as pa
import pytest

from sarchat.inference.baselines import BlindPrior
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms import box_match as BM
from sarchat.transforms.score import score_columns as C
from sarchat.transforms import tasks
from sarchat.transforms.tasks import column_scoring as CS
from sarchat.transforms.score import metrics as M
from sarchat.transforms.score import parsing
from sarchat.transforms.score.box_format_choice import FormatChooser
from sarchat.transforms.score.prediction_files import PREDICTION_WIRE_SCHEMA
from tests.score_reference import sample_line, sample_record
from tests.test_score_fast_paths import _mangled, _random_box
from tests.test_score_pipeline import generated_table

_BOX = re.compile(r"<(\d+)>")


def _moved(text, rng):
    return _BOX.sub(lambda m: f"<{max(0, int(m.group(1)) + rng.randrange(-6, 7))}>", text)


def _answers(rows, rng, blind):
    """A prediction text (or None: no prediction row) per test row, of every kind."""
    out = []
    for r in rows:
        k = rng.randrange(10)
        if k == 0:
            out.append(None)
        elif k == 1:
            out.append(rng.choice(rows)["answer"])  # another sample's answer
        elif k == 2:
            out.append(_mangled(r["answer"], rng))
        elif k == 3:
            out.append(blind.predict(r))
        elif k == 4:
            out.append(_moved(r["answer"], rng))
        elif k == 5:
            out.append(rng.choice(["", "I cannot tell.", "There are no ships.", "\u00e9\n\t\"q\" \\ \x01"]))
        else:
            out.append(r["answer"])
    return out


@pytest.fixture(scope="module")
def split():
    rows = generated_table("test", n_images=90, n_boxes=260, seed=23).to_pylist()
    blind = BlindPrior().fit(generated_table("train", n_images=40, n_boxes=100, seed=4, with_known=False).to_pylist())
    return rows, blind


def _pred_table(rows, texts, model, rng, file="preds.parquet"):
    preds = []
    for i, (r, t) in enumerate(zip(rows, texts)):
        if t is None:
            continue
        error = rng.choice([None] * 8 + ["", "TimeoutError: no answer"])
        latency = rng.choice([None, 0.25, 1e-9, float("nan"), 3.0])
        preds.append({"id": r["id"], "prediction": t, "model": model, "error": error, "latency_s": latency,
                      "_file": file, "_row": i})
    return pa.Table.from_pylist(preds, schema=PREDICTION_WIRE_SCHEMA)


def _reference(row, pred, fmt, model):
    if pred is None:
        result = M.score_sample(row, None, fmt, missing=True)
    else:
        result = M.score_sample(row, pred.get("prediction"), fmt, error=pred.get("error"))
    record = sample_record(row, model, pred, result)
    return result, record, sample_line(row, record, pred)


def _same(a, b):
    """Equal, NaN equal to NaN (latency_s)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.parametrize("spec,seed,columnar", [("canonical", 1, True), ("qwen2-vl", 2, True), ("internvl", 3, True),
                                              ("json-bbox2d", 4, True), ("canonical", 5, False)])
def test_columnar_bucket_equals_the_per_sample_reference(split, spec, seed, columnar, monkeypatch):
    """columnar=False: with no columnar scorer at all, as for a new task, every task goes through
    its module's score and miss row by row (column_scoring.score_rows), to the same results."""
    rows, blind = split
    if not columnar:
        for module in tasks.MODULES:
            monkeypatch.setattr(module, "score_columns", lambda truth, parses, uok, ok, out, m=module:
                                CS.score_rows(m.score, m.miss, truth, parses, uok, out))
    rng = random.Random(seed)
    fmt = get_box_format(spec)
    texts = _answers(rows, rng, blind)
    if spec != "canonical":  # answers in the model's own format too
        texts = [t if t is None or rng.random() < 0.5 else
                 re.sub(r"\{<(\d+)><(\d+)><(\d+)><(\d+)>\}",
                        lambda m: fmt.render_one([int(v) for v in m.groups()], 800, 800), t) for t in texts]
    tests = pa.Table.from_pylist(rows)
    preds = _pred_table(rows, texts, "m", rng)
    join = C.BucketJoin([tests.slice(0, len(rows) // 2), tests.slice(len(rows) // 2)], [preds])
    memo = parsing.ParseMemo()
    scored = C.score_bucket(join, ["m", "absent"], FormatChooser(default=spec), lambda m: memo)
    assert [m for m, _ in scored] == ["absent", "m"]
    by_id = {r["id"]: r for r in rows}
    pred_by_id = {p["id"]: p for p in preds.to_pylist()}
    seen = {"ok": 0, "unparseable": 0, "missing": 0, "inference_error": 0}
    for model, parts in scored:
        table = C.model_sample_table(parts).to_pylist()
        assert [r["id"] for r in table] == sorted(by_id)
        got_rows = {r["id"]: r for r in table}
        for part in parts:
            arrays = part.scores.task_arrays()
            lines = part.lines().to_pylist()
            for i, sid in enumerate(arrays.ids.tolist()):
                row = by_id[sid]
                pred = pred_by_id.get(sid) if model == "m" else None
                result, record, line = _reference(row, pred, fmt, model)
                seen[result["status"]] += 1
                assert C.STATUS_NAMES[arrays.status[i]] == result["status"]
                cols = M.TASK_COLUMNS[row["task"]]
                got_scores = {c: (int(arrays.tp[i, j]), int(arrays.fp[i, j]), int(arrays.fn[i, j]))
                              for j, c in enumerate(cols) if arrays.mask[i, j]}
                assert got_scores == result["scores"], (sid, row["task"], pred)
                assert list(got_scores) == list(result["scores"])
                assert arrays.category[i] == (M.sample_category(row) or "")
                assert arrays.size[i] == (M.sample_size(row) or "")
                got = got_rows[sid]
                assert set(got) == set(record)
                assert all(_same(got[k], record[k]) for k in record), (sid, got, record)
                assert lines[i] == line, (sid, lines[i], line)
    assert all(seen.values()), seen  # every status was met


def test_group_matching_equals_match_boxes():
    rng = random.Random(9)
    groups, preds, gts, want = [], [], [], []
    pg, gg = [], []
    for g in range(3000):
        n_p, n_g = rng.choice([0, 1, 1, 2, 3, 5]), rng.choice([0, 1, 1, 2, 4])
        gt = [_random_box(rng) for _ in range(n_g)]
        if gt and rng.random() < 0.3:  # ties: a truth box twice, or one predicted box on two
            gt.append(list(gt[0]))
        pr = [_random_box(rng) for _ in range(n_p)]
        if gt and pr and rng.random() < 0.5:
            pr[0] = list(gt[rng.randrange(len(gt))])
        if pr and rng.random() < 0.2:
            pr.append(list(pr[0]))
        ious = BM.ious_per_gt(BM.match_boxes(pr, gt), len(gt))
        want += ious
        preds += pr
        gts += gt
        pg += [g] * len(pr)
        gg += [g] * len(gt)
        groups.append((len(pr), len(gt)))
    # groups given out of order: the matcher sorts them itself
    perm = list(range(len(pg)))
    rng.shuffle(perm)
    by_group = sorted(perm, key=lambda i: (pg[i] % 7, i))  # interleaved groups, each group's boxes in order
    got = CS.match_groups([pg[i] for i in by_group], [preds[i] for i in by_group], gg, gts, len(groups))
    assert got.tolist() == want
    assert sum(1 for p, g in groups if p > 1 and g > 1) > 300 and sum(1 for p, g in groups if p == 1 and g > 1) > 100


def test_json_strings_equal_json_dumps():
    rng = random.Random(4)
    alphabet = ["a", " ", '"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f", "\u00e9",
                "\u2028", "\u8239", "\U0001f6a2", "/", "<", "{"]
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(8))) for _ in range(3000)] + [None, ""]
    got = C.json_strings(pa.array(values, pa.string())).to_pylist()
    assert got == [json.dumps(v, ensure_ascii=False) for v in values]
    assert C.json_strings_distinct(pa.array(values, pa.string())).to_pylist() == got
    plain = ["plain", "words only", None]
    assert C.json_strings(pa.array(plain, pa.string())).to_pylist() == [json.dumps(v) for v in plain]
    floats = [0.0, 1.0, 0.1, 1e-9, 123456789.125, 1 / 3, 5e-324]
    assert C.json_floats(floats).to_pylist() == [json.dumps(v) for v in floats]


def test_bucket_join_rejects_like_the_rules():
    tests = pa.table({"id": ["b", "a", "c", "a", "x"], "task": ["count", "classify", "refer", "count", "nope"],
                      "width": [10] * 5, "height": [10] * 5})
    rows = [("a", "m", "f2", 1), ("a", "m", "f1", 7), ("a", "m", "f1", 3), ("a", "n", "f1", 9), (None, "m", "f1", 0),
            ("zz", "n", "f3", 2), ("c", "m", None, None), ("b", "n", "f1", 4)]
    preds = pa.Table.from_pylist([{"id": i, "prediction": "p", "model": m, "error": None, "latency_s": None,
                                   "_file": f, "_row": r} for i, m, f, r in rows], schema=PREDICTION_WIRE_SCHEMA)
    join = C.BucketJoin([tests.slice(0, 2), tests.slice(2)], [preds.slice(0, 5), preds.slice(5)])
    assert join.ids.to_pylist() == ["a", "b", "c"]  # sorted, the unknown task and the second "a" dropped
    assert (join.unknown_task, join.duplicate_tests) == (1, 1)
    assert join.tests.column("task").to_pylist() == ["classify", "count", "refer"]  # the first row of "a"
    assert sorted((r["reason"], r["model"], r["id"], r["file"], r["row"]) for r in join.rejects) == [
        ("duplicate_id", "m", "a", "f1", 7), ("duplicate_id", "m", "a", "f2", 1),
        ("missing_id", "m", None, "f1", 0), ("unknown_id", "n", "zz", "f3", 2)]
    assert join.models == ["m", "n"]
    kept = join.preds.to_pylist()
    assert [kept[i]["_row"] if i >= 0 else None for i in join.pred_index("m")] == [3, None, None]
    assert [kept[i]["_file"] if i >= 0 else "-" for i in join.pred_index("m")] == ["f1", "-", None]
    assert [kept[i]["_row"] if i >= 0 else None for i in join.pred_index("n")] == [9, 4, None]
    assert (join.pred_index("absent") == -1).all()


def test_merged_lines_sorts_buckets_by_id():
    parts = [pa.table({"id": ["b", "d"], "line": ["B\n", "D\n"]}), pa.table({"id": ["a", "c"], "line": ["A\n", "C\n"]}),
             pa.table({"id": pa.array([], pa.string()), "line": pa.array([], pa.string())})]
    assert C.merged_lines(parts) == b"A\nB\nC\nD\n"
    assert C.merged_lines([]) == b""
    assert np.array_equal(CS.multiset_counts(2, [0, 0, 1], [1, 1, 2], [0, 1, 1], [1, 2, 3], 4)[0], [1, 1])


@pytest.mark.parametrize("id_type,latency_type", [(pa.string(), pa.float64()), (pa.int64(), pa.int32()),
                                                  (pa.string(), pa.null())])
def test_prediction_tables_equal_the_clean_rows(tmp_path, id_type, latency_type):
    """A prediction Parquet file read column by column gives clean_prediction's rows."""
    import pyarrow.parquet as pq

    from sarchat.transforms.score.prediction_files import iter_prediction_batches, iter_prediction_tables

    rng = random.Random(6)
    n = 700
    ids = [None if rng.random() < 0.05 else (i if id_type == pa.int64() else f"id{i}") for i in range(n)]
    models = [rng.choice([None, "", "  m1 ", "m2", "\u00e9\u2003", " \x1c"]) for _ in range(n)]
    latency = [None] * n if latency_type == pa.null() else [
        rng.choice([None, 1, 7]) if latency_type == pa.int32() else rng.choice([None, 0.5, float("nan")])
        for _ in range(n)]
    table = pa.table({"id": pa.array(ids, id_type), "prediction": [rng.choice([None, "a", ""]) for _ in range(n)],
                      "model": models, "error": [rng.choice([None, "", "boom"]) for _ in range(n)],
                      "latency_s": pa.array(latency, latency_type)})
    path = str(tmp_path / "run 1.parquet")
    pq.write_table(table, path)
    want = [r for rows, _ in iter_prediction_batches(path, batch_size=256) for r in rows]
    got = [r for t, _ in iter_prediction_tables(path, batch_size=256) for r in t.to_pylist()]
    assert len(got) == len(want) == n
    assert all(g.keys() == w.keys() and all(_same(g[k], w[k]) for k in w) for g, w in zip(got, want))
    assert {r["model"] for r in got} >= {"m1", "m2", "run 1"}
